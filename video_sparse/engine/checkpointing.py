"""Training checkpoints on top of DeepSpeed's: atomic, never replaced in place, resumable exactly.

Layout under ``<output_dir>/checkpoints``::

    step_00000120/      DeepSpeed model/optimizer shards, rng_rank{R}.pt (RNG + per-rank state), meta.json
    latest              the tag of the newest complete checkpoint
    abandoned/          checkpoints of a future that a resume from an older one (or a fresh start) left

The save sequence (:data:`SAVE_POINTS` names its steps) keeps at least one complete checkpoint
reachable at every instant, so a kill at any moment leaves a resumable folder:

1. every rank writes into ``<tag>.tmp`` (an existing ``<tag>`` is an error: a step is never saved twice);
2. rank 0 writes ``meta.json``, fsyncs the files and renames ``<tag>.tmp`` to ``<tag>`` (the commit);
3. rank 0 points ``latest`` at ``<tag>`` (atomic replace);
4. only then are checkpoints beyond ``keep_last`` removed, each first renamed to ``<name>.old.tmp``.

``*.tmp`` entries are never the only complete checkpoint and are removed at the next start.
:func:`find_latest` follows ``latest`` and, when it names no complete folder, takes the newest
complete one. DeepSpeed files are read with ``weights_only=True`` (:mod:`.safe_load`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint.io import atomic_write
from .distributed import barrier
from .safe_load import safe_torch_load, weights_only_loading

log = logging.getLogger(__name__)

LATEST = "latest"
ABANDONED = "abandoned"
META = "meta.json"
SAVE_POINTS = (
    "engine_saved",
    "rank_state_saved",
    "meta_written",
    "committed",
    "pointer_written",
    "old_renamed",
    "pruned",
)
_TAG = re.compile(r"step_(\d{8})")


def step_tag(global_step: int) -> str:
    return f"step_{global_step:08d}"


def rng_state() -> dict[str, Any]:
    """Every RNG state of this process as tensors and plain numbers (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _reached(point: str) -> None:
    """Marks a step of the save sequence (see :data:`SAVE_POINTS`); tests replace it to inject kills."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` to disk before it is committed by a rename."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def checkpoint_step(folder: Path) -> int | None:
    """The optimizer step of a complete checkpoint folder ``step_XXXXXXXX`` holding ``meta.json``, else None."""
    match = _TAG.fullmatch(folder.name)
    if match is None or not (folder / META).is_file():
        return None
    return int(match.group(1))


def complete_checkpoints(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders of ``ckpt_dir``, oldest step first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in ckpt_dir.iterdir() if p.is_dir()]
    return [p for step, p in sorted((s, p) for s, p in found if s is not None)]


def clean_stale(ckpt_dir: Path, is_main: bool) -> None:
    """Remove ``*.tmp`` entries (unfinished saves, unfinished deletions) left by a killed run (rank 0)."""
    if is_main and ckpt_dir.is_dir():
        for stale in ckpt_dir.glob("*.tmp"):
            log.warning("removing incomplete checkpoint %s", stale)
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    barrier()


def abandon_after(ckpt_dir: str | os.PathLike, step: int, keep: Path | None = None) -> list[Path]:
    """Move complete checkpoints later than ``step`` into ``abandoned/`` (rank 0 only).

    Called when a run continues from an older checkpoint (or starts fresh, ``step=-1``) in a folder
    that holds later ones, so that a step is never saved twice and ``resume=auto`` never jumps to
    another run's future. ``latest`` is first pointed at ``keep`` (a folder of ``ckpt_dir``) or, when
    there is none, removed, so a moved folder is never what it names.

    Returns:
        The new places of the moved folders.
    """
    ckpt_dir = Path(ckpt_dir)
    later = [p for p in complete_checkpoints(ckpt_dir) if checkpoint_step(p) > step and p != keep]
    if not later:
        return []
    pointer = ckpt_dir / LATEST
    if keep is not None and keep.parent.resolve() == ckpt_dir.resolve():
        atomic_write(pointer, lambda f: f.write(keep.name.encode()))
    else:
        pointer.unlink(missing_ok=True)
    (ckpt_dir / ABANDONED).mkdir(exist_ok=True)
    moved = []
    for folder in later:
        target = ckpt_dir / ABANDONED / folder.name
        n = 1
        while target.exists():
            target, n = ckpt_dir / ABANDONED / f"{folder.name}.{n}", n + 1
        os.replace(folder, target)
        moved.append(target)
    log.warning(
        "moved %d later checkpoint(s) of %s to %s: %s",
        len(moved),
        ckpt_dir,
        ckpt_dir / ABANDONED,
        ", ".join(p.name for p in moved),
    )
    return moved


def save_checkpoint(
    engine,
    ckpt_dir: str | os.PathLike,
    global_step: int,
    client_state: dict[str, Any],
    rank: int,
    keep_last: int = 2,
    exclude_frozen: bool = False,
    rank_state: dict[str, Any] | None = None,
) -> Path:
    """Save model, optimizer, scheduler, ``client_state`` and every rank's RNG state atomically.

    Args:
        client_state: plain values saved once (by DeepSpeed, rank 0's copy).
        rank_state: plain values of this rank, saved beside its RNG state in ``rng_rank{R}.pt``.

    Returns:
        The final checkpoint folder.

    Raises:
        FileExistsError: the folder of this step exists already (a step is never saved twice).
    """
    ckpt_dir = Path(ckpt_dir)
    tag = step_tag(global_step)
    tmp_tag = tag + ".tmp"
    final = ckpt_dir / tag
    if final.exists():
        raise FileExistsError(
            f"checkpoint {final} exists already; a step is never saved twice "
            f"(another run writing to {ckpt_dir.parent}?)"
        )
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(ckpt_dir / tmp_tag, ignore_errors=True)
    barrier()
    engine.save_checkpoint(
        str(ckpt_dir),
        tag=tmp_tag,
        client_state=client_state,
        save_latest=False,
        exclude_frozen_parameters=exclude_frozen,
    )
    _reached("engine_saved")
    torch.save({**rng_state(), "rank_state": dict(rank_state or {})}, ckpt_dir / tmp_tag / f"rng_rank{rank}.pt")
    _reached("rank_state_saved")
    barrier()
    if rank == 0:
        (ckpt_dir / tmp_tag / META).write_text(
            json.dumps(
                {
                    "global_step": global_step,
                    **{k: v for k, v in client_state.items() if isinstance(v, (int, float, str))},
                },
                indent=1,
            )
        )
        _reached("meta_written")
        _fsync_tree(ckpt_dir / tmp_tag)
        os.rename(ckpt_dir / tmp_tag, final)  # the commit; `final` does not exist (checked above)
        _fsync_dir(ckpt_dir)
        _reached("committed")
        atomic_write(ckpt_dir / LATEST, lambda f: f.write(tag.encode()))
        _reached("pointer_written")
        _prune(ckpt_dir, keep_last, final)
        _reached("pruned")
        log.info("saved checkpoint %s", final)
    barrier()
    return final


def _prune(ckpt_dir: Path, keep_last: int, current: Path) -> None:
    """Delete complete checkpoints beyond the newest ``keep_last`` (never ``current``), rename first."""
    if keep_last <= 0:
        return
    for old in complete_checkpoints(ckpt_dir)[:-keep_last]:
        if old == current:
            continue
        doomed = old.with_name(old.name + ".old.tmp")
        os.replace(old, doomed)
        _reached("old_renamed")
        shutil.rmtree(doomed, ignore_errors=True)


def find_latest(ckpt_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint ``latest`` names or, if it names none, the newest complete one.

    Returns:
        The folder, or None when ``ckpt_dir`` holds no checkpoint.

    Raises:
        FileNotFoundError: ``latest`` names a folder that is gone and no complete checkpoint is left.
    """
    ckpt_dir = Path(ckpt_dir)
    pointer = ckpt_dir / LATEST
    named = pointer.read_text().strip() if pointer.is_file() else None
    if named and _TAG.fullmatch(named) and checkpoint_step(ckpt_dir / named) is not None:  # a name, not a path
        return ckpt_dir / named
    complete = complete_checkpoints(ckpt_dir)
    if not complete:
        if named:
            raise FileNotFoundError(
                f"{pointer} names {named}, which does not exist, and {ckpt_dir} holds no other complete checkpoint"
            )
        return None
    if named:
        log.warning(
            "%s names %s, which is not a complete checkpoint; using the newest complete one, %s",
            pointer,
            named,
            complete[-1].name,
        )
    return complete[-1]


def load_checkpoint(engine, folder: str | os.PathLike, rank: int) -> dict[str, Any]:
    """Restore a checkpoint saved by :func:`save_checkpoint`; returns its client state.

    Every file is read with ``weights_only=True`` (DeepSpeed's too). This rank's ``rank_state`` is
    returned under the key ``"rank_state"`` (``{}`` when the file has none).

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        CheckpointError: a file holds objects that would need executing pickled code, or is unreadable.
        RuntimeError: DeepSpeed found no checkpoint in ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    with weights_only_loading(engine):
        path, client_state = engine.load_checkpoint(
            str(folder.parent),
            tag=folder.name,
            load_module_strict=False,
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint in {folder}")
    state = dict(client_state or {})
    rng_file = folder / f"rng_rank{rank}.pt"
    if rng_file.is_file():
        saved = safe_torch_load(rng_file)
        set_rng_state(saved)
        state["rank_state"] = dict(saved.get("rank_state", {}))
    else:
        log.warning("%s has no RNG state for rank %d (different world size?); continuing without it", folder, rank)
        state["rank_state"] = {}
    return state
