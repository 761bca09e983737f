"""Training checkpoints on top of DeepSpeed's: atomic, never replaced in place, resumable exactly.

Layout under ``<output_dir>/checkpoints``::

    step_00000120/      DeepSpeed model/optimizer shards, rng_rank{R}.pt (RNG + per-rank state), meta.json
    latest              the tag of the newest complete checkpoint
    abandoned/          checkpoints of a future that a resume from an older one (or a fresh start) left
    damaged/            checkpoints that failed their checksums, set aside (renamed, never deleted)

The save sequence (:data:`SAVE_POINTS` names its steps) keeps at least one complete checkpoint
reachable at every instant, so a kill at any moment leaves a resumable folder:

1. every rank writes into ``<tag>.tmp`` (an existing ``<tag>`` is an error: a step is never saved twice);
2. rank 0 writes ``meta.json`` (the run's counters, the sha256 and size of every other file, and a
   digest of itself), fsyncs the files and renames ``<tag>.tmp`` to ``<tag>`` (the commit);
3. rank 0 points ``latest`` at ``<tag>`` (atomic replace);
4. only then are checkpoints beyond ``keep_last`` removed, each first renamed to ``<name>.old.tmp``.

``*.tmp`` entries are never the only complete checkpoint and are removed at the next start.
:func:`find_latest` follows ``latest`` and, when it names no complete folder, takes the newest
complete one; every candidate is verified against its checksums first (:func:`verify_checkpoint`),
and one that fails is moved to ``damaged/`` with a warning naming it and why, so the run resumes from
the newest intact checkpoint. DeepSpeed files are read with ``weights_only=True`` (:mod:`.safe_load`).

Before a save, the free space of the file system is compared with the size of the previous checkpoint
(or, for the first, an estimate from the model and optimizer state); a disk that fills up during a
save is reported as "no space left" naming the folder (:class:`CheckpointSpaceError`), and the
previous checkpoint stays the newest.
"""

from __future__ import annotations

import errno
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

from ..checkpoint.digest import check_manifest, json_digest, manifest
from ..checkpoint.io import atomic_write
from ..checkpoint.report import CheckpointError
from .distributed import barrier
from .safe_load import safe_torch_load, weights_only_loading

log = logging.getLogger(__name__)

LATEST = "latest"
ABANDONED = "abandoned"
DAMAGED = "damaged"
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


class DamagedCheckpointError(CheckpointError):
    """A checkpoint folder whose ``meta.json`` is unreadable or whose files differ from their checksums."""


class CheckpointSpaceError(OSError):
    """No space left on the file system for a checkpoint (``errno`` is ``ENOSPC``)."""


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


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def estimate_bytes(engine, ckpt_dir: Path, exclude_frozen: bool = False) -> int:
    """Bytes the next checkpoint will take: the size of the newest complete one in ``ckpt_dir`` or, for the
    first, the module's tensors (trainable only with ``exclude_frozen``) plus three fp32 copies of the
    trainable parameters (master weights and Adam's two moments)."""
    previous = complete_checkpoints(ckpt_dir)
    if previous:
        return _folder_bytes(previous[-1])
    module = getattr(engine, "module", None)
    if module is None:
        return 0
    params = list(module.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    weights = sum(p.numel() * p.element_size() for p in params if p.requires_grad or not exclude_frozen)
    return int(weights + 3 * 4 * trainable)


def check_free_space(ckpt_dir: Path, final: Path, needed: int, margin: float = 0.05) -> None:
    """Refuse a save that cannot fit: free bytes below ``needed`` plus ``margin``.

    Raises:
        CheckpointSpaceError: naming the folder, the bytes needed and the bytes free.
    """
    free = shutil.disk_usage(ckpt_dir).free
    if needed and free < needed * (1 + margin):
        raise CheckpointSpaceError(
            errno.ENOSPC,
            f"no space left for checkpoint {final}: it needs about {needed / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB are free on that file system; free space and rerun the same command "
            f"(resume=auto continues from the previous checkpoint)",
        )


_WRITE_FAILURES = ("unexpected pos", "failed writing", "file write failed", "No space left")


def _raise_if_out_of_space(err: BaseException, ckpt_dir: Path, final: Path) -> None:
    """Re-raise a write error caused by a full disk as :class:`CheckpointSpaceError` (torch's zip writer
    reports it as ``unexpected pos N vs M``); the partial ``.tmp`` folder is removed to give the space back."""
    chain, cause = [], err
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    full = any(getattr(e, "errno", None) == errno.ENOSPC for e in chain) or any(
        isinstance(e, RuntimeError) and any(text in str(e) for text in _WRITE_FAILURES) for e in chain
    )
    if not full:
        return
    shutil.rmtree(final.with_name(final.name + ".tmp"), ignore_errors=True)
    free = shutil.disk_usage(ckpt_dir).free
    raise CheckpointSpaceError(
        errno.ENOSPC,
        f"no space left on the device while saving checkpoint {final} ({free / 2**20:.1f} MiB free now; "
        f"writer said: {str(err).splitlines()[0] if str(err) else type(err).__name__}); the previous checkpoint "
        f"is intact: free space and rerun the same command",
    ) from err


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
    check_free_space(ckpt_dir, final, estimate_bytes(engine, ckpt_dir, exclude_frozen))
    try:
        engine.save_checkpoint(
            str(ckpt_dir),
            tag=tmp_tag,
            client_state=client_state,
            save_latest=False,
            exclude_frozen_parameters=exclude_frozen,
        )
        _reached("engine_saved")
        state = {**rng_state(), "rank_state": dict(rank_state or {})}
        torch.save(state, ckpt_dir / tmp_tag / f"rng_rank{rank}.pt")
        _reached("rank_state_saved")
    except (OSError, RuntimeError) as err:
        _raise_if_out_of_space(err, ckpt_dir, final)
        raise
    barrier()
    if rank == 0:
        meta = {
            "global_step": global_step,
            **{k: v for k, v in client_state.items() if isinstance(v, (int, float, str))},
            "files": manifest(ckpt_dir / tmp_tag, exclude=(META,)),
        }
        meta["digest"] = json_digest(meta)
        text = json.dumps(meta, indent=1).encode()
        try:
            atomic_write(ckpt_dir / tmp_tag / META, lambda f: f.write(text))
        except OSError as err:
            _raise_if_out_of_space(err, ckpt_dir, final)
            raise
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


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint folder, checked against its own digest.

    Raises:
        DamagedCheckpointError: missing, empty, not a JSON object, or its digest does not match.
    """
    path = Path(folder) / META
    try:
        text = path.read_text()
    except OSError as err:
        raise DamagedCheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not text.strip():
        raise DamagedCheckpointError(f"{path}: empty")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise DamagedCheckpointError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(meta, dict):
        raise DamagedCheckpointError(f"{path}: not a JSON object")
    digest = meta.pop("digest", None)
    if digest is not None and digest != json_digest(meta):
        raise DamagedCheckpointError(f"{path}: does not match its digest (damaged)")
    if digest is not None:
        meta["digest"] = digest
    return meta


def verify_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """Check a checkpoint folder against the checksums in its ``meta.json``; returns the meta.

    A folder saved before checksums were written (no ``files`` entry) is accepted with a warning.

    Raises:
        DamagedCheckpointError: naming the folder and the first difference (a file missing, of another
            size or sha256, or an unreadable ``meta.json``).
    """
    folder = Path(folder)
    try:
        meta = read_meta(folder)
    except DamagedCheckpointError as err:
        raise DamagedCheckpointError(f"checkpoint {folder} is damaged: {err}") from None
    files = meta.get("files")
    if not isinstance(files, dict):
        log.warning("%s has no checksums (saved by an older version); it cannot be verified", folder)
        return meta
    problem = check_manifest(folder, files)
    if problem is not None:
        raise DamagedCheckpointError(f"checkpoint {folder} is damaged: {problem}")
    return meta


def set_aside(folder: Path) -> Path:
    """Move a damaged checkpoint folder to ``damaged/`` beside it (renamed, never deleted); returns its new place."""
    target_dir = folder.parent / DAMAGED
    target_dir.mkdir(exist_ok=True)
    target, n = target_dir / folder.name, 1
    while target.exists():
        target, n = target_dir / f"{folder.name}.{n}", n + 1
    os.replace(folder, target)
    return target


def find_latest(ckpt_dir: str | os.PathLike, verify: bool = True) -> Path | None:
    """The intact checkpoint ``latest`` names or, if it names none, the newest intact one.

    With ``verify`` (call it on one rank only: it moves folders) each candidate is checked with
    :func:`verify_checkpoint`; a damaged one is moved to ``damaged/`` with a warning and the next older
    one is tried.

    Returns:
        The folder, or None when ``ckpt_dir`` holds no checkpoint.

    Raises:
        FileNotFoundError: ``latest`` names a folder that is gone and no complete checkpoint is left.
        DamagedCheckpointError: every checkpoint was damaged (each is named and set aside).
    """
    ckpt_dir = Path(ckpt_dir)
    pointer = ckpt_dir / LATEST
    named = pointer.read_text().strip() if pointer.is_file() else None
    complete = complete_checkpoints(ckpt_dir)
    candidates = list(reversed(complete))
    if named and _TAG.fullmatch(named) and checkpoint_step(ckpt_dir / named) is not None:  # a name, not a path
        candidates.remove(ckpt_dir / named)
        candidates.insert(0, ckpt_dir / named)
    elif named and complete:
        log.warning(
            "%s names %s, which is not a complete checkpoint; using the newest complete one, %s",
            pointer,
            named,
            complete[-1].name,
        )
    damaged = []
    for folder in candidates:
        if not verify:
            return folder
        try:
            verify_checkpoint(folder)
            return folder
        except DamagedCheckpointError as err:
            moved = set_aside(folder)
            damaged.append(moved)
            log.warning("%s; moved to %s, trying the previous checkpoint", err, moved)
    if damaged:
        raise DamagedCheckpointError(
            f"no intact checkpoint left in {ckpt_dir}: {len(damaged)} damaged one(s) moved to "
            f"{ckpt_dir / DAMAGED} ({', '.join(p.name for p in damaged)}); start afresh with resume=null"
        )
    if named:
        raise FileNotFoundError(
            f"{pointer} names {named}, which does not exist, and {ckpt_dir} holds no other complete checkpoint"
        )
    return None


def load_checkpoint(engine, folder: str | os.PathLike, rank: int, verify: bool = True) -> dict[str, Any]:
    """Restore a checkpoint saved by :func:`save_checkpoint`; returns its client state.

    Every file is read with ``weights_only=True`` (DeepSpeed's too). This rank's ``rank_state`` is
    returned under the key ``"rank_state"`` (``{}`` when the file has none).

    Args:
        verify: check the folder's checksums first (:func:`verify_checkpoint`); pass False when it was
            just verified (e.g. by :func:`find_latest` on rank 0).

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        DamagedCheckpointError: ``verify`` and the folder fails its checksums.
        CheckpointError: a file holds objects that would need executing pickled code, or is unreadable.
        RuntimeError: DeepSpeed found no checkpoint in ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    if verify:
        verify_checkpoint(folder)
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
