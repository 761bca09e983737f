"""Gathering per-rank test records across ``torch.distributed`` ranks.

Each rank scores the views its sampler gave it; the merge needs all of them. The records are small
numpy arrays (views x classes), so they travel with ``all_gather_object`` / ``gather_object``,
which works with every backend (gloo on CPU, NCCL on GPU). Without an initialised process group
the functions return their input, so the same code runs on one process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.distributed as dist

from video_sparse.evaluation.records import ViewScores

__all__ = ["gather_view_records", "gather_failed"]


def _gather(obj: Any, dst: int | None) -> list[Any] | None:
    """Returns the objects of all ranks in rank order (on ``dst`` only when it is given)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    world = dist.get_world_size()
    if dst is None:
        out: list[Any] = [None] * world
        dist.all_gather_object(out, obj)
        return out
    if not 0 <= dst < world:
        raise ValueError(f"dst must be a rank in [0, {world}), got {dst}")
    out = [None] * world if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def gather_view_records(records: ViewScores, dst: int | None = None) -> ViewScores | None:
    """Concatenates the per-view records of all ranks.

    Duplicated views (a distributed sampler's padding) are kept; :func:`merge_views` drops them.

    Args:
        records: this rank's records.
        dst: ``None`` to return the concatenation on every rank, or the rank that receives it
            (the others get ``None``), which saves memory on large test sets.

    Returns:
        The records of ranks ``0 .. world_size - 1`` concatenated in rank order, or ``None`` on a
        rank other than ``dst``. Without a process group: ``records`` itself.
    """
    parts = _gather(records, dst)
    return None if parts is None else ViewScores.concat(parts)


def gather_failed(failed: Iterable[int], dst: int | None = None) -> set[int] | None:
    """Unites the sets of sample indices that failed to decode on each rank.

    Args:
        failed: this rank's failed sample indices.
        dst: as in :func:`gather_view_records`.

    Returns:
        The union over ranks, or ``None`` on a rank other than ``dst``.
    """
    parts = _gather(sorted({int(i) for i in failed}), dst)
    return None if parts is None else {i for part in parts for i in part}
