"""The image path end to end: VTAB-layout folders of real digit images, the sweep tool, the table."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from video_sparse.data.vtab import make_digits_vtab

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_vtab_sweep_adapts_a_real_backbone_and_tabulates(tmp_path):
    """Sparse-Tuning of the real DINOv2 ViT-S/14 (frozen) on real digit images through the sweep tool."""
    from video_sparse.checkpoint.onnx_vit import write_dinov2_safetensors

    backbone = write_dinov2_safetensors(tmp_path / "dinov2_vits14.safetensors")
    root = tmp_path / "vtab"
    make_digits_vtab(root, task="cifar", n_train=100, n_test=100, size=32, seed=1)
    out = tmp_path / "sweep"
    overrides = [
        "model=vit_small_dinov2",
        f"pretrained={backbone}",
        "data.num_classes=10",
        "data.input_size=112",
        "data.batch_size=20",
        "data.num_workers=0",
        "epochs=12",
        "optim.lr=1e-3",
        "optim.scheduler.min_lr=1e-3",
        "optim.scheduler.warmup_epochs=0",
        "model.drop_path_rate=0.0",
        "seed=0",
    ]
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "vtab_sweep.py"),
        "--root",
        str(root),
        "--out",
        str(out),
        "--tasks",
        "cifar",
        "--",
        *overrides,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    accuracies = {}
    for task in ("cifar",):
        record = json.loads((out / task / "results.json").read_text())
        accuracies[task] = record["test"]["top1"]
        assert record["test"]["num_videos"] == 100
        assert record["trainable_params"] < 0.2 * record["total_params"]
        assert record["gmacs_per_view"] > 0
        assert accuracies[task] > 50.0, (task, accuracies[task])  # chance is 10%
    with open(out / "vtab.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    table = (out / "vtab.md").read_text()
    assert "GMACs per image" in table
    for acc in accuracies.values():
        assert f"{acc:.1f}" in table
    # a second call finds the task done and only rebuilds the table
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and again.stdout.count("done already") == 1
