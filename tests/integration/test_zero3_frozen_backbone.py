"""ZeRO-3 over a frozen backbone, 2 CPU processes (gloo): parameters partitioned across ranks, training
lowers the loss, frozen weights bit-identical after gathering, and the exported ``adapter.pth`` loaded
into an unpartitioned model gives the partitioned run's test scores."""

import json
import subprocess
import sys

import numpy as np
import pytest
from dist_runs import ROOT, env, free_port, tiny, train

pytestmark = pytest.mark.integration


def test_zero3_partitions_the_frozen_backbone_and_keeps_it_bit_identical(tmp_path):
    out = tmp_path / "ranks.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        str(ROOT / "tools" / "zero_memory.py"),
        "ranks",
        "--model",
        "sparse_videomae_nano_patch16_64",
        "--stage",
        "3",
        "--frames",
        "4",
        "--size",
        "32",
        "--steps",
        "4",
        "--lr",
        "1e-2",
        "--json",
        str(out),
    ]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env())
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads(out.read_text())
    full = 4 * report["counts"]["total"]  # fp32 bytes of every parameter, which ZeRO-2 keeps on each rank
    for rank in report["ranks"]:
        assert full / 2 <= rank["param_bytes"] <= full / 2 + 4 * 2 * 64, rank  # one half each (+ alignment)
        assert rank["frozen_bit_identical"], rank
    losses = report["losses"]
    assert losses[-1] < 0.5 * losses[0], losses


def test_adapter_exported_by_zero3_gives_the_same_scores_unpartitioned(tmp_path):
    data, run = tmp_path / "data", tmp_path / "zero3"
    train(tiny(data, run, "deepspeed=zero3", "epochs=1"))  # trains, then tests with the partitioned model
    assert json.loads((run / "results.json").read_text())["test"]["num_videos"] == 8
    single = tmp_path / "unpartitioned"  # one process, no DeepSpeed: backbone file + adapter.pth
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "test.py"),
        *tiny(data, single)[:-1],
        f"output_dir={single}",
        f"checkpoint={run / 'adapter.pth'}",
    ]
    cmd = [c for c in cmd if not c.startswith(("optim.", "train."))]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    views = {}
    for name, folder in (("partitioned", run), ("plain", single)):
        dump = np.load(folder / "view_scores.npz")  # one row per view, in the order the ranks returned them
        order = np.lexsort((dump["view_index"], dump["sample_index"]))
        views[name] = {key: dump[key][order] for key in ("sample_index", "view_index", "label", "logits")}
    np.testing.assert_array_equal(views["plain"]["sample_index"], np.arange(8))
    for key in ("sample_index", "view_index", "label"):
        np.testing.assert_array_equal(views["plain"][key], views["partitioned"][key], err_msg=key)
    assert np.abs(views["plain"]["logits"]).max() > 0.1  # a trained head, not zeros
    np.testing.assert_allclose(views["plain"]["logits"], views["partitioned"]["logits"], rtol=0, atol=1e-5)
