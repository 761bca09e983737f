"""Helpers of the multi-process tests: tiny demo-data training runs under torchrun (gloo, CPU)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny(data_root: Path, out: Path, *extra: str) -> list[str]:
    """Overrides of a nano video run on 32 generated clips of 8 frames of 32 px (4 steps of 8 clips per epoch)."""
    return [
        "experiment=demo",
        f"data.root={data_root}",
        "data.demo.num_train=32",
        "data.demo.num_val=8",
        "data.demo.num_test=8",
        "data.demo.size=32",
        "data.input_size=32",
        "data.short_side_size=32",
        "data.num_frames=8",
        "data.batch_size=4",
        "data.test_num_clips=1",
        "data.test_num_crops=1",
        "optim.lr=0.05",
        "optim.scheduler.warmup_epochs=0",
        "optim.scheduler.min_lr=0.05",
        "train.eval_every=0",
        "seed=3",
        f"output_dir={out}",
        *extra,
    ]


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


def train(
    overrides: list[str], nproc: int = 2, must_succeed: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``tools/train.py`` under torchrun with ``nproc`` processes; asserts success if ``must_succeed``."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--master_port={free_port()}",
        str(ROOT / "tools" / "train.py"),
        *overrides,
    ]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env())
    if must_succeed:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result
