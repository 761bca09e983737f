"""Tiny in-process fine-tuning runs (nano image ViT on real digit images, one process, DeepSpeed on CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from video_sparse.engine import checkpointing

STEPS_PER_EPOCH = 6  # 24 training images, batch 4


class Killed(BaseException):
    """Stands for SIGKILL: nothing of the save sequence after the kill point runs."""


def tiny_overrides(data_root: Path, out: Path) -> list[str]:
    """A 2-epoch, 12-step run checkpointing every 4 steps (keep 1), validating every epoch."""
    return [
        "experiment=vtab",
        "model=vit_nano",
        "sparsity=nano",
        f"data.root={data_root}",
        "data.task=cifar",
        "data.num_classes=10",
        "data.input_size=32",
        "data.batch_size=4",
        "data.num_workers=0",
        "epochs=2",
        "optim.scheduler.warmup_epochs=0.5",
        "optim.lr=0.01",
        "deepspeed=zero2",
        "train.save_every_steps=4",
        "train.keep_last=1",
        "train.log_every=1",
        "train.eval_every=1",
        "device=cpu",
        "seed=1",
        f"output_dir={out}",
    ]


def subprocess_env() -> dict[str, str]:
    """The environment of a separate run: without the one-process group variables of this process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    return {**env, "OMP_NUM_THREADS": "1"}


def tiny_cfg(data_root: Path, out: Path, *overrides: str):
    """The composed train config of :func:`tiny_overrides` plus ``overrides``."""
    from hydra import compose, initialize_config_dir

    from video_sparse.engine.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("train", overrides=[*tiny_overrides(data_root, out), *overrides])


def die(recipe) -> None:
    """What the kernel does to a killed run: file locks dropped, files kept, nothing else runs.

    (The TensorBoard writer is flushed and closed: the worst case, every point it took is on disk.)
    """
    writer = getattr(recipe, "writer", None)
    if writer is not None:
        writer.close()
    lock = getattr(recipe, "lock", None)
    if lock is not None and lock._fd is not None:
        os.close(lock._fd)
        lock._fd = None


def run(cfg, kill_at: tuple[str, int] | None = None, monkeypatch=None, test: bool = True):
    """Set up, train (and test, export, clean up unless killed); returns the recipe.

    Args:
        kill_at: ``(point, n)``: raise :class:`Killed` the ``n``-th time the save sequence reaches
            ``point`` (one of ``checkpointing.SAVE_POINTS``); needs ``monkeypatch``.
    """
    from video_sparse.engine.finetune import FinetuneRecipe

    if kill_at is not None:
        point, n = kill_at
        seen = {"count": 0}

        def reached(name: str) -> None:
            if name == point:
                seen["count"] += 1
                if seen["count"] == n:
                    raise Killed(f"killed at {point} #{n}")

        monkeypatch.setattr(checkpointing, "_reached", reached)
    recipe = FinetuneRecipe(cfg)
    try:
        recipe.setup()
        recipe.train()
    except Killed:
        die(recipe)
        return recipe
    finally:
        if monkeypatch is not None:
            monkeypatch.setattr(checkpointing, "_reached", lambda name: None)
    if recipe.finished and test:
        recipe.test()
        recipe.export_adapters()
    recipe.cleanup()
    return recipe


def trained_weights(recipe) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in recipe.engine.module.named_parameters() if p.requires_grad}


def scalars(out: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar as TensorBoard shows it (points an interrupted run wrote after its
    last checkpoint are purged by the resumed run's ``purge_step``)."""
    import tempfile

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # TensorBoard reads event files in name order, which puts a process's 10th writer of one second
    # (`...<pid>.10`) before its 9th: name links by (seconds, writer number) so the order is creation's
    files = sorted(
        (out / "tensorboard").glob("events.out.tfevents.*"),
        key=lambda f: (int(f.name.split(".")[3]), int(f.name.rsplit(".", 1)[1])),
    )
    with tempfile.TemporaryDirectory() as ordered:
        for i, f in enumerate(files):
            (Path(ordered) / f"events.out.tfevents.{i:06d}").symlink_to(f.resolve())
        acc = EventAccumulator(ordered, size_guidance={"scalars": 0})
        acc.Reload()
    return {
        tag: [(e.step, e.value) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
        if tag != "train/clips_per_s"
    }


def results(out: Path) -> dict[str, Any]:
    record = json.loads((out / "results.json").read_text())
    record.pop("output_dir", None)
    return record
