"""Exact multi-view merging of test scores.

A video is scored on ``V`` views (temporal clips x spatial crops). The merged score of a video is
the mean over its views of the per-view softmax (``how="prob"``, the default), the mean of the
logits (``"logit"``) or the per-class maximum of the per-view softmax (``"max"``).

The merge is exact under distributed evaluation: a distributed sampler pads the list of views to a
multiple of the world size, so a few ``(sample_index, view_index)`` pairs arrive twice; each pair is
counted once. A video that lacks any of its ``V`` views is an error (:class:`MissingViewsError`),
never a silently smaller average. Videos that failed to decode are passed in as a set of sample
indices, excluded, and counted. A video with a NaN or infinite logit in any view is counted in
``num_nonfinite`` (softmax of an infinite logit is NaN; a mean with NaN is NaN): the metrics then
report no accuracy (:func:`video_sparse.evaluation.metrics.evaluation_summary`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from video_sparse.evaluation.records import ViewScores, as_int_set, load_view_scores
from video_sparse.safe_files import write_text, write_with

__all__ = [
    "MergeHow",
    "MergedScores",
    "MissingViewsError",
    "softmax",
    "merge_views",
    "remerge_view_dump",
    "save_video_scores",
    "load_video_scores",
]

logger = logging.getLogger(__name__)

MergeHow = Literal["prob", "logit", "max"]
_HOWS = ("prob", "logit", "max")
# Duplicated views come from the same input; a larger difference means two views share a key.
_DUPLICATE_ATOL = 1e-2


class MissingViewsError(ValueError):
    """Raised when some videos do not have all their views.

    Attributes:
        incomplete: mapping ``sample_index -> number of distinct views found`` for every
            incomplete video (0 for a video expected but absent).
        num_views: the number of views each video should have.
    """

    def __init__(self, incomplete: dict[int, int], num_views: int, max_listed: int = 8) -> None:
        self.incomplete = dict(incomplete)
        self.num_views = num_views
        listed = ", ".join(f"sample {s}: {c}/{num_views}" for s, c in sorted(self.incomplete.items())[:max_listed])
        more = len(self.incomplete) - max_listed
        suffix = f", ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{len(self.incomplete)} video(s) miss views (expected {num_views} views each): "
            f"{listed}{suffix}. Check that every rank evaluated its share (no drop_last) and that "
            "view indices are set per view; pass decode failures through `failed` instead."
        )


@dataclass(frozen=True)
class MergedScores:
    """Per-video scores after merging the views.

    Attributes:
        sample_index: ``(S,)`` int64, sorted ascending.
        labels: ``(S,)`` int64.
        scores: ``(S, K)`` float32 merged scores (probabilities for ``"prob"``/``"max"``,
            logits for ``"logit"``).
        num_views: views merged per video.
        how: the merge rule.
        num_failed: videos excluded because they failed to decode.
        num_duplicates: duplicate view rows dropped (padding of a distributed sampler).
        num_nonfinite: videos with a NaN or infinite logit in at least one view.
    """

    sample_index: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    num_views: int
    how: str
    num_failed: int = 0
    num_duplicates: int = 0
    num_nonfinite: int = 0

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes ``K``."""
        return int(self.scores.shape[1])


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64, returned as float32 (a row with NaN or +inf gives NaN).

    Args:
        logits: ``(..., K)`` array.
        axis: the class axis.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.size == 0:  # nothing scored (e.g. every test video failed to decode)
        return z.astype(np.float32)
    with np.errstate(invalid="ignore"):  # an infinite logit gives NaN, counted by merge_views
        z = z - z.max(axis=axis, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def _drop_duplicates(scores: ViewScores) -> tuple[np.ndarray, int]:
    """Returns the row order that sorts by (sample, view) keeping one row per pair, and the count dropped.

    Raises:
        ValueError: if two rows share a key but disagree on the label.
    """
    order = np.lexsort((scores.view_index, scores.sample_index))
    s, v = scores.sample_index[order], scores.view_index[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (s[1:] != s[:-1]) | (v[1:] != v[:-1])
    num_dup = int((~first).sum())
    if num_dup:
        # Compare each duplicate with the first row of its (sample, view) group.
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        dup_rows, ref_rows = order[~first], order[group_start[~first]]
        bad = scores.labels[dup_rows] != scores.labels[ref_rows]
        if bad.any():
            r = int(dup_rows[bad][0])
            raise ValueError(
                f"view (sample {scores.sample_index[r]}, view {scores.view_index[r]}) appears with "
                f"different labels {int(scores.labels[r])} and {int(scores.labels[ref_rows[bad][0]])}"
            )
        diff = np.abs(scores.logits[dup_rows] - scores.logits[ref_rows])
        if diff.size and float(diff.max()) > _DUPLICATE_ATOL:
            logger.warning(
                "%d duplicated view(s) have different logits (max abs diff %.3g); two different views may "
                "share a (sample_index, view_index) key; keeping the first occurrence",
                num_dup,
                float(diff.max()),
            )
    return order[first], num_dup


def merge_views(
    scores: ViewScores,
    num_views: int,
    how: MergeHow = "prob",
    failed: Iterable[int] | None = (),
    num_samples: int | None = None,
) -> MergedScores:
    """Merges per-view scores into one score per video, counting each (video, view) once.

    Args:
        scores: per-view records gathered from all ranks (duplicates allowed).
        num_views: views each video must have (``num_clips * num_crops``); view indices must lie
            in ``[0, num_views)``.
        how: ``"prob"`` mean of per-view softmax, ``"logit"`` mean of logits, ``"max"`` per-class
            maximum of per-view softmax.
        failed: sample indices that failed to decode; their views (if any) are excluded and they
            are counted in ``num_failed``.
        num_samples: if given, every sample index in ``[0, num_samples)`` that did not fail must be
            present; an absent video is reported as missing all its views.

    Returns:
        The merged scores, sorted by sample index.

    Raises:
        MissingViewsError: if a video lacks views (or is absent while ``num_samples`` is given).
        ValueError: on a bad argument, a view index outside ``[0, num_views)``, or views of one
            video that carry different labels.
    """
    if how not in _HOWS:
        raise ValueError(f"how must be one of {_HOWS}, got {how!r}")
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    failed_set = as_int_set(failed)
    if len(scores) and scores.view_index.max() >= num_views:
        r = int(np.argmax(scores.view_index))
        raise ValueError(
            f"view index {int(scores.view_index[r])} of sample {int(scores.sample_index[r])} is outside "
            f"[0, {num_views}); is num_views={num_views} right?"
        )

    keep = ~np.isin(scores.sample_index, np.fromiter(failed_set, dtype=np.int64, count=len(failed_set)))
    kept = ViewScores(scores.sample_index[keep], scores.view_index[keep], scores.labels[keep], scores.logits[keep])
    rows, num_dup = _drop_duplicates(kept)
    sample = kept.sample_index[rows]

    uniq, counts = np.unique(sample, return_counts=True)
    incomplete = {int(s): int(c) for s, c in zip(uniq, counts) if c != num_views}
    if num_samples is not None:
        if len(uniq) and uniq.max() >= num_samples:
            raise ValueError(f"sample index {int(uniq.max())} is outside [0, num_samples={num_samples})")
        absent = np.setdiff1d(np.arange(num_samples), uniq, assume_unique=True)
        incomplete.update({int(s): 0 for s in absent if int(s) not in failed_set})
    if incomplete:
        raise MissingViewsError(incomplete, num_views)

    k = kept.num_classes
    logits = kept.logits[rows].reshape(len(uniq), num_views, k)
    nonfinite = ~np.isfinite(logits).all(axis=(1, 2))
    if nonfinite.any():
        logger.warning(
            "%d of %d videos have a NaN or infinite logit in some view (first: sample %d): no accuracy can be computed",
            int(nonfinite.sum()),
            len(uniq),
            int(uniq[nonfinite][0]),
        )
    # Rows are unique and sorted by (sample, view) with views in [0, num_views), and every video has
    # num_views of them: each block of num_views rows is one video, views 0..num_views-1 in order.
    if how == "logit":
        merged = logits.mean(axis=1, dtype=np.float64).astype(np.float32)
    else:
        probs = softmax(logits, axis=-1)
        merged = probs.mean(axis=1, dtype=np.float64).astype(np.float32) if how == "prob" else probs.max(axis=1)
    view_labels = kept.labels[rows].reshape(len(uniq), num_views)
    bad = (view_labels != view_labels[:, :1]).any(axis=1)
    if bad.any():
        s = int(uniq[bad][0])
        raise ValueError(f"the views of sample {s} carry different labels {sorted(set(view_labels[bad][0].tolist()))}")
    labels = view_labels[:, 0]
    logger.info(
        "merged %d videos x %d views (how=%s); %d duplicate view row(s) dropped; %d video(s) failed to "
        "decode and were excluded",
        len(uniq),
        num_views,
        how,
        num_dup,
        len(failed_set),
    )
    return MergedScores(
        sample_index=uniq.astype(np.int64),
        labels=labels.astype(np.int64),
        scores=merged,
        num_views=num_views,
        how=how,
        num_failed=len(failed_set),
        num_duplicates=num_dup,
        num_nonfinite=int(nonfinite.sum()),
    )


def remerge_view_dump(
    path: str | os.PathLike,
    num_views: int | None = None,
    how: MergeHow = "prob",
    num_samples: int | None = None,
) -> MergedScores:
    """Merges a per-view dump written by :func:`save_view_scores` offline.

    Args:
        path: the ``.npz`` dump.
        num_views: views per video; defaults to the value stored in the dump.
        how: merge rule, see :func:`merge_views`.
        num_samples: optional dataset length, see :func:`merge_views`.

    Raises:
        ValueError: if ``num_views`` is neither given nor stored in the dump.
    """
    scores, failed, stored_views = load_view_scores(path)
    if num_views is None:
        if stored_views is None:
            raise ValueError(f"{path}: the dump does not store num_views; pass num_views")
        num_views = stored_views
    return merge_views(scores, num_views, how=how, failed=failed, num_samples=num_samples)


def save_video_scores(
    path: str | os.PathLike,
    merged: MergedScores,
    video_ids: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Writes one row per video: sample index, video id, label, prediction and merged scores.

    The format follows the suffix: ``.npz`` (arrays ``sample_index``, ``video_id``, ``label``,
    ``scores``, ``num_views``, ``how``) or ``.csv`` (columns ``sample_index, video_id, label, pred,
    score_<class name> per class; score_0 ... score_{K-1} without names``). Either can be read back by
    :func:`load_video_scores`, e.g. to ensemble runs offline.

    Args:
        path: output file ending in ``.npz`` or ``.csv``.
        merged: output of :func:`merge_views`.
        video_ids: the dataset's identifiers (e.g. relative paths) indexed by sample index; if
            omitted the sample index is written.
        class_names: one name per class, for the CSV's score columns (``score_cat``, ``score_dog``, ...).

    Raises:
        ValueError: on an unknown suffix, when ``video_ids`` is too short or ``class_names`` does not
            have one name per class.
    """
    path = Path(path)
    if path.suffix not in (".npz", ".csv"):
        raise ValueError(f"{path}: per-video scores are written as .npz or .csv")
    if video_ids is not None and len(merged) and int(merged.sample_index.max()) >= len(video_ids):
        raise ValueError(
            f"video_ids has {len(video_ids)} entries but sample index {int(merged.sample_index.max())} occurs"
        )
    if class_names is not None and len(merged) == 0:
        class_names = None  # nothing scored: no score columns to name
    if class_names is not None and len(class_names) != merged.num_classes:
        raise ValueError(f"{len(class_names)} class names for {merged.num_classes} score columns")
    ids = [str(video_ids[i]) if video_ids is not None else str(i) for i in merged.sample_index.tolist()]
    if path.suffix == ".npz":
        return write_with(
            path,
            lambda f: np.savez_compressed(
                f,
                sample_index=merged.sample_index,
                video_id=np.array(ids, dtype=np.str_),
                label=merged.labels,
                scores=merged.scores,
                num_views=np.array(merged.num_views),
                how=np.array(merged.how),
            ),
        )
    preds = merged.scores.argmax(axis=1) if len(merged) else np.zeros(0, dtype=np.int64)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    columns = class_names if class_names is not None else range(merged.num_classes)
    writer.writerow(["sample_index", "video_id", "label", "pred"] + [f"score_{c}" for c in columns])
    for i in range(len(merged)):
        writer.writerow(
            [int(merged.sample_index[i]), ids[i], int(merged.labels[i]), int(preds[i])]
            + [repr(float(x)) for x in merged.scores[i]]
        )
    return write_text(path, buffer.getvalue())


def load_video_scores(path: str | os.PathLike) -> tuple[MergedScores, list[str]]:
    """Reads a file written by :func:`save_video_scores`.

    Returns:
        ``(merged, video_ids)``. For ``.csv`` files ``num_views`` is 0 and ``how`` is ``""``
        (they are not stored in the CSV).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if a CSV row is malformed (message names ``path:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"per-video score file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as d:
            merged = MergedScores(d["sample_index"], d["label"], d["scores"], int(d["num_views"]), str(d["how"]))
            return merged, [str(x) for x in d["video_id"]]
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:4] != ["sample_index", "video_id", "label", "pred"]:
            raise ValueError(f"{path}:1: not a per-video score CSV (header {header})")
        k = len(header) - 4
        samples, ids, labels, rows = [], [], [], []
        for lineno, row in enumerate(reader, start=2):
            if len(row) != 4 + k:
                raise ValueError(f"{path}:{lineno}: expected {4 + k} fields, got {len(row)}")
            try:
                samples.append(int(row[0]))
                labels.append(int(row[2]))
                rows.append([float(x) for x in row[4:]])
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            ids.append(row[1])
    scores = np.array(rows, dtype=np.float32).reshape(len(rows), k)
    merged = MergedScores(np.array(samples, dtype=np.int64), np.array(labels, dtype=np.int64), scores, 0, "")
    return merged, ids
