"""tools/test.py on the demo data gives identical merged metrics with 1, 2 and 3 processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.adapters import set_trainable
from video_sparse.checkpoint import save_adapter_checkpoint

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = ROOT / "assets" / "demo_backbone_nano.safetensors"
pytestmark = pytest.mark.integration


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test(nproc: int, out: Path, data: Path, adapter: Path) -> dict:
    overrides = [
        "experiment=demo",
        f"data.root={data}",
        "data.demo.num_train=4",
        "data.demo.num_val=4",
        "data.demo.num_test=7",
        "data.test_num_clips=2",
        "data.test_num_crops=1",
        "data.batch_size=4",
        f"checkpoint={adapter}",
        f"pretrained={BACKBONE}",
        f"output_dir={out}",
    ]
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={_port()}"]
    result = subprocess.run(
        [*launcher, str(ROOT / "tools" / "test.py"), *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    return json.loads((out / "results.json").read_text())["test"]


def test_metrics_do_not_depend_on_the_number_of_processes(tmp_path):
    from video_sparse.data.demo import make_demo_dataset

    data = tmp_path / "data"
    make_demo_dataset(data, num_train=4, num_val=4, num_test=7)
    torch.manual_seed(0)
    model = timm.create_model("sparse_videomae_nano_patch16_64", num_classes=4, checkpoint=str(BACKBONE))
    set_trainable(model)  # the backbone frozen as in training: the file holds adapters and head only
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # make adapters and head matter
    adapter = save_adapter_checkpoint(model, tmp_path / "adapter.pth")
    runs = {n: _test(n, tmp_path / f"run{n}", data, adapter) for n in (1, 2, 3)}
    metrics = ("top1", "mean_class_acc", "num_videos", "num_views", "views_per_video", "num_failed")
    assert "top5" not in runs[1]  # 4 classes: top-5 would be 100 % by construction
    for n in (2, 3):
        assert {k: runs[n][k] for k in metrics} == {k: runs[1][k] for k in metrics}, (n, runs[n], runs[1])
    assert runs[1]["num_videos"] == 7 and runs[1]["views_per_video"] == 2
    assert runs[3]["num_duplicates"] == 1  # 14 views padded to 15 over 3 ranks, counted once
    # independent merge of the saved per-view logits: softmax per view, mean per video, argmax
    dump = np.load(tmp_path / "run3" / "view_scores.npz")
    logits = dump["logits"].astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    merged, labels = {}, {}
    for s, v, y, p in zip(dump["sample_index"], dump["view_index"], dump["label"], probs):
        merged.setdefault(int(s), {})[int(v)] = p
        labels[int(s)] = int(y)
    assert all(len(views) == 2 for views in merged.values())
    correct = [np.mean(list(views.values()), axis=0).argmax() == labels[s] for s, views in merged.items()]
    assert runs[1]["top1"] == pytest.approx(100.0 * np.mean(correct))
