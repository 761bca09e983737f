"""Per-view test records: the raw material of multi-view evaluation.

A test view is identified by the integer pair ``(sample_index, view_index)``: ``sample_index`` is the
position of the video (or image) in the dataset's list, ``view_index`` enumerates its test views
(``clip * num_crops + crop`` for video). Nothing is keyed by file names, so two videos with the same
basename never collide and ``view_index`` 1 never meets ``view_index`` 11 as the strings ``"1"`` / ``"11"``.

The dump written by :func:`save_view_scores` is an ``.npz`` archive with the arrays ``sample_index``,
``view_index``, ``label``, ``logits`` and optionally ``failed`` (sample indices that failed to decode)
and ``num_views``; :func:`video_sparse.evaluation.multiview.remerge_view_dump` merges it offline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from video_sparse.safe_files import write_with

__all__ = ["ViewScores", "ViewScoreCollector", "save_view_scores", "load_view_scores"]


def _to_numpy(x: Any) -> np.ndarray:
    """Converts a tensor (any device) or array-like to a numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach()
        if x.is_floating_point():
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


@dataclass(frozen=True)
class ViewScores:
    """Scores of a set of test views, one row per view (duplicates allowed).

    Attributes:
        sample_index: ``(M,)`` int64, index of the video in the dataset.
        view_index: ``(M,)`` int64, index of the view within its video.
        labels: ``(M,)`` int64, ground-truth class of the video.
        logits: ``(M, K)`` float32, classifier outputs of each view.
    """

    sample_index: np.ndarray
    view_index: np.ndarray
    labels: np.ndarray
    logits: np.ndarray

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("sample_index", "view_index", "labels"):
            arr = _to_numpy(getattr(self, name))
            if arr.ndim != 1:
                raise ValueError(f"ViewScores.{name} must be 1-D, got shape {arr.shape}")
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"ViewScores.{name} must hold integers, got dtype {arr.dtype}")
            arrays[name] = arr.astype(np.int64, copy=False)
        logits = _to_numpy(self.logits).astype(np.float32, copy=False)
        if logits.ndim == 1 and logits.size == 0:
            logits = logits.reshape(0, 0)
        if logits.ndim != 2:
            raise ValueError(f"ViewScores.logits must be (M, K), got shape {logits.shape}")
        m = logits.shape[0]
        for name, arr in arrays.items():
            if arr.shape[0] != m:
                raise ValueError(f"ViewScores.{name} has {arr.shape[0]} rows but logits has {m}")
            if arr.size and arr.min() < 0:
                raise ValueError(f"ViewScores.{name} must be >= 0, found {int(arr.min())}")
        for name, arr in arrays.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "logits", logits)

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes ``K`` (columns of ``logits``)."""
        return int(self.logits.shape[1])

    @classmethod
    def empty(cls, num_classes: int = 0) -> ViewScores:
        """Returns a record set with no rows and ``num_classes`` columns."""
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, np.zeros((0, num_classes), dtype=np.float32))

    @classmethod
    def concat(cls, parts: Iterable[ViewScores]) -> ViewScores:
        """Concatenates record sets row-wise (parts without rows are ignored).

        Raises:
            ValueError: if the parts disagree on the number of classes.
        """
        parts = list(parts)
        filled = [p for p in parts if len(p)]
        if not filled:
            return cls.empty(parts[0].num_classes if parts else 0)
        widths = sorted({p.num_classes for p in filled})
        if len(widths) > 1:
            raise ValueError(f"cannot concatenate ViewScores with different class counts {widths}")
        parts = filled
        return cls(
            np.concatenate([p.sample_index for p in parts]),
            np.concatenate([p.view_index for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.logits for p in parts]),
        )


@dataclass
class ViewScoreCollector:
    """Accumulates per-batch outputs of a test loop into :class:`ViewScores`.

    Also keeps the set of sample indices whose views failed to decode, so that they are excluded
    from the merge with a count rather than silently.

    Example:
        >>> collector = ViewScoreCollector()
        >>> collector.add(batch["sample_index"], batch["view_index"], batch["label"], logits)
        >>> collector.add_failed([17])
        >>> scores, failed = collector.result(), collector.failed
    """

    _parts: list[ViewScores] = field(default_factory=list)
    failed: set[int] = field(default_factory=set)

    def add(self, sample_index: Any, view_index: Any, labels: Any, logits: Any) -> None:
        """Adds one batch.

        Args:
            sample_index: ``(B,)`` ints (tensor or array).
            view_index: ``(B,)`` ints.
            labels: ``(B,)`` ints.
            logits: ``(B, K)`` floats; tensors are detached and moved to the CPU.
        """
        self._parts.append(ViewScores(sample_index, view_index, labels, logits))

    def add_failed(self, sample_indices: Iterable[int]) -> None:
        """Records sample indices that failed to decode (any of their views)."""
        self.failed.update(int(i) for i in sample_indices)

    def result(self) -> ViewScores:
        """Returns all rows added so far, in order of arrival."""
        return ViewScores.concat(self._parts)


def save_view_scores(
    path: str | os.PathLike,
    scores: ViewScores,
    failed: Iterable[int] = (),
    num_views: int | None = None,
) -> Path:
    """Writes the per-view dump (``.npz``) that :func:`remerge_view_dump` reads back.

    Args:
        path: output file; ``.npz`` is appended by numpy if missing.
        scores: the per-view records (duplicates are kept as they are).
        failed: sample indices that failed to decode.
        num_views: views per sample, stored for the offline merge.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    extra: dict[str, np.ndarray] = {"failed": np.array(sorted({int(i) for i in failed}), dtype=np.int64)}
    if num_views is not None:
        extra["num_views"] = np.array(int(num_views), dtype=np.int64)
    return write_with(
        path,
        lambda f: np.savez_compressed(
            f,
            sample_index=scores.sample_index,
            view_index=scores.view_index,
            label=scores.labels,
            logits=scores.logits,
            **extra,
        ),
    )


def load_view_scores(path: str | os.PathLike) -> tuple[ViewScores, set[int], int | None]:
    """Reads a dump written by :func:`save_view_scores`.

    Returns:
        ``(scores, failed, num_views)``; ``num_views`` is ``None`` if the dump does not store it.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if a required array is missing from the archive.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"per-view score dump not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("sample_index", "view_index", "label", "logits") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: not a per-view score dump, missing arrays {missing}")
        scores = ViewScores(data["sample_index"], data["view_index"], data["label"], data["logits"])
        failed = {int(i) for i in data["failed"]} if "failed" in data.files else set()
        num_views = int(data["num_views"]) if "num_views" in data.files else None
    return scores, failed, num_views


def as_int_set(values: Sequence[int] | Iterable[int] | None) -> set[int]:
    """Returns ``values`` as a set of Python ints (``None`` gives the empty set)."""
    if values is None:
        return set()
    return {int(v) for v in values}
