"""Training checkpoints on top of DeepSpeed's, written atomically and resumable exactly.

Layout under ``<output_dir>/checkpoints``::

    step_00000120/      DeepSpeed model/optimizer shards, rng_rank{R}.pt, meta.json
    latest              the tag of the newest complete checkpoint

A checkpoint is written into ``<tag>.tmp`` by all ranks, then rank 0 renames it to ``<tag>`` and
replaces ``latest`` (both atomic renames). A process killed mid-save leaves the previous
checkpoint and ``latest`` untouched; stale ``.tmp`` folders are removed at the next start.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .distributed import barrier

log = logging.getLogger(__name__)

LATEST = "latest"


def step_tag(global_step: int) -> str:
    return f"step_{global_step:08d}"


def rng_state() -> dict[str, Any]:
    """Every RNG state of this process as tensors and plain numbers (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def clean_stale(ckpt_dir: Path, is_main: bool) -> None:
    """Remove half-written ``*.tmp`` checkpoints left by a killed run (rank 0 only)."""
    if is_main and ckpt_dir.is_dir():
        for stale in ckpt_dir.glob("*.tmp"):
            log.warning("removing incomplete checkpoint %s", stale)
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    barrier()


def save_checkpoint(engine, ckpt_dir: str | os.PathLike, global_step: int, client_state: dict[str, Any],
                    rank: int, keep_last: int = 2, exclude_frozen: bool = False) -> Path:
    """Save model, optimizer, scheduler, ``client_state`` and every rank's RNG state atomically.

    Returns:
        The final checkpoint folder.
    """
    ckpt_dir = Path(ckpt_dir)
    tag = step_tag(global_step)
    tmp_tag = tag + ".tmp"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(ckpt_dir / tmp_tag, ignore_errors=True)
    barrier()
    engine.save_checkpoint(str(ckpt_dir), tag=tmp_tag, client_state=client_state, save_latest=False,
                           exclude_frozen_parameters=exclude_frozen)
    torch.save(rng_state(), ckpt_dir / tmp_tag / f"rng_rank{rank}.pt")
    barrier()
    final = ckpt_dir / tag
    if rank == 0:
        (ckpt_dir / tmp_tag / "meta.json").write_text(json.dumps({"global_step": global_step, **{
            k: v for k, v in client_state.items() if isinstance(v, (int, float, str))}}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(ckpt_dir / tmp_tag, final)
        _write_text_atomic(ckpt_dir / LATEST, tag)
        _prune(ckpt_dir, keep_last)
        log.info("saved checkpoint %s", final)
    barrier()
    return final


def _prune(ckpt_dir: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    tags = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in tags[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def find_latest(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest`` points to, or None when there is none."""
    pointer = Path(ckpt_dir) / LATEST
    if not pointer.is_file():
        return None
    folder = Path(ckpt_dir) / pointer.read_text().strip()
    if not folder.is_dir():
        raise FileNotFoundError(f"{pointer} names {folder.name}, which does not exist")
    return folder


def load_checkpoint(engine, folder: str | os.PathLike, rank: int) -> dict[str, Any]:
    """Restore a checkpoint saved by :func:`save_checkpoint`; returns its client state."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    path, client_state = engine.load_checkpoint(str(folder.parent), tag=folder.name, load_module_strict=False,
                                                load_optimizer_states=True, load_lr_scheduler_states=True)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint in {folder}")
    rng_file = folder / f"rng_rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=True))
    else:
        log.warning("%s has no RNG state for rank %d (different world size?); continuing without it", folder, rank)
    return client_state or {}
