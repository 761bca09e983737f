"""Classification metrics on merged scores: top-k, mean per-class accuracy, confusion matrix.

All accuracies are percentages in ``[0, 100]``. Inputs are numpy arrays or CPU tensors.

Scores that are not finite (NaN, +-inf: a diverged model, an fp16 overflow) have no ranking, so no
accuracy: the metric functions refuse them (:class:`NonFiniteScoresError`) and
:func:`evaluation_summary` reports their count with ``None`` in place of every accuracy and an
``error`` entry, which callers turn into a failed run. Top-k is reported only for ``k`` smaller than
the number of classes (top-5 of 5 classes is 100 % by construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from video_sparse.evaluation.multiview import MergedScores

__all__ = [
    "NonFiniteScoresError",
    "count_nonfinite",
    "reported_ks",
    "topk_accuracy",
    "mean_class_accuracy",
    "confusion_matrix",
    "evaluation_summary",
    "format_flops_x_views",
]


class NonFiniteScoresError(ValueError):
    """Scores that hold NaN or infinity reached a metric: the model diverged; there is no accuracy."""


def count_nonfinite(scores: Any) -> int:
    """Number of rows (samples) of ``(N, K)`` scores with at least one NaN or infinite entry."""
    s = np.asarray(scores)
    if s.ndim != 2 or not s.size:
        return 0
    return int((~np.isfinite(s)).any(axis=1).sum())


def reported_ks(num_classes: int, ks: Sequence[int] = (1, 5)) -> tuple[int, ...]:
    """The ``ks`` worth reporting for ``num_classes`` classes: 1 and every ``k < num_classes``.

    (With ``k >= num_classes`` every sample is a top-k hit; such a number says nothing.)
    """
    return tuple(int(k) for k in ks if int(k) == 1 or int(k) < num_classes)


def _check(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores)
    y = np.asarray(labels).astype(np.int64, copy=False)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, K), got shape {s.shape}")
    if y.shape != (s.shape[0],):
        raise ValueError(f"labels must be ({s.shape[0]},), got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must lie in [0, {s.shape[1]}), found [{int(y.min())}, {int(y.max())}]")
    bad = count_nonfinite(s)
    if bad:
        first = int(np.flatnonzero((~np.isfinite(s)).any(axis=1))[0])
        raise NonFiniteScoresError(
            f"{bad} of {s.shape[0]} samples have non-finite scores (NaN or inf; first: row {first}); "
            "a diverged model has no accuracy"
        )
    return s, y


def topk_accuracy(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy for each ``k``.

    A sample is correct at ``k`` when its label is among the first ``k`` classes ranked by score,
    equal scores ranked by class index (so top-1 agrees with ``argmax``). A ``k`` of at least the
    number of classes counts every sample as correct (:func:`reported_ks` leaves such ``k`` out of
    reports).

    Args:
        scores: ``(N, K)`` scores (logits or probabilities).
        labels: ``(N,)`` int labels in ``[0, K)``.
        ks: the values of ``k``.

    Returns:
        ``{k: accuracy in percent}``; ``nan`` for ``N == 0``.

    Raises:
        NonFiniteScoresError: a score is NaN or infinite (named by count and first row).
        ValueError: a ``k`` below 1, or labels / shapes that do not fit.
    """
    s, y = _check(scores, labels)
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"top-k needs k >= 1, got {list(ks)}")
    if s.shape[0] == 0:
        return {int(k): float("nan") for k in ks}
    true_score = s[np.arange(len(y)), y][:, None]
    lower_index = np.arange(s.shape[1])[None, :] < y[:, None]
    rank = (s > true_score).sum(axis=1) + ((s == true_score) & lower_index).sum(axis=1)  # 0: top-1 hit
    return {int(k): float((rank < k).mean() * 100.0) for k in ks}


def confusion_matrix(scores: Any, labels: Any) -> np.ndarray:
    """Counts of (true class, predicted class) with the prediction ``argmax`` of the scores.

    Args:
        scores: ``(N, K)`` scores.
        labels: ``(N,)`` int labels.

    Returns:
        ``(K, K)`` int64 matrix, rows are true classes, columns predictions.

    Raises:
        NonFiniteScoresError: a score is NaN or infinite (``argmax`` of NaN is no prediction).
    """
    s, y = _check(scores, labels)
    k = s.shape[1]
    pred = s.argmax(axis=1) if s.shape[0] else np.zeros(0, dtype=np.int64)
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def mean_class_accuracy(scores: Any, labels: Any) -> float:
    """Top-1 accuracy averaged over the classes that occur in ``labels``.

    Classes with no test sample are left out of the average (their accuracy is undefined).

    Args:
        scores: ``(N, K)`` scores.
        labels: ``(N,)`` int labels.

    Returns:
        Mean per-class accuracy in percent; ``nan`` for ``N == 0``.

    Raises:
        NonFiniteScoresError: a score is NaN or infinite.
    """
    cm = confusion_matrix(scores, labels)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float((np.diag(cm)[present] / support[present]).mean() * 100.0)


def evaluation_summary(merged: MergedScores, ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """The numbers a test run reports.

    Args:
        merged: output of :func:`video_sparse.evaluation.multiview.merge_views`.
        ks: top-k values; a ``top{k}`` key is produced for each ``k`` that :func:`reported_ks` keeps
            (``top1`` always, ``top5`` only with more than 5 classes).

    Returns:
        ``{"top1", "top5", "mean_class_acc"}`` in percent, ``num_videos`` (merged videos),
        ``num_views`` (distinct views evaluated = ``num_videos * views_per_video``),
        ``views_per_video``, ``num_failed`` (videos excluded: failed to decode),
        ``num_duplicates`` (padded duplicate views dropped), ``num_nonfinite`` (videos with a NaN or
        infinite score in any view) and ``merge`` (the rule). When ``num_nonfinite > 0`` every
        accuracy is ``None`` and ``error`` says why: the caller must fail the run, not report a number.
    """
    nonfinite = max(int(getattr(merged, "num_nonfinite", 0)), count_nonfinite(merged.scores))
    keys = [f"top{k}" for k in reported_ks(merged.num_classes, ks)] + ["mean_class_acc"]
    out: dict[str, Any]
    if nonfinite:
        out = dict.fromkeys(keys)
        out["error"] = (
            f"{nonfinite} of {len(merged)} videos have non-finite scores (NaN or inf): the model diverged; "
            "no accuracy is reported"
        )
    else:
        acc = topk_accuracy(merged.scores, merged.labels, reported_ks(merged.num_classes, ks))
        out = {f"top{k}": v for k, v in acc.items()}
        out["mean_class_acc"] = mean_class_accuracy(merged.scores, merged.labels)
    out.update(
        num_videos=len(merged),
        num_views=len(merged) * merged.num_views,
        views_per_video=merged.num_views,
        num_failed=merged.num_failed,
        num_duplicates=merged.num_duplicates,
        num_nonfinite=nonfinite,
        merge=merged.how,
    )
    return out


def format_flops_x_views(gflops_per_view: float, num_clips: int, num_crops: int, expand: bool = False) -> str:
    """Formats the cost of multi-view inference as the papers print it.

    Args:
        gflops_per_view: cost of one view in GFLOPs (or GMACs, as the caller counts).
        num_clips: temporal clips per video.
        num_crops: spatial crops per clip.
        expand: write ``"180 x 5 x 3"`` instead of ``"180 x 15"``.

    Returns:
        e.g. ``format_flops_x_views(180.4, 5, 3) == "180 x 15"``.
    """
    if gflops_per_view < 0 or num_clips < 1 or num_crops < 1:
        raise ValueError(
            f"need gflops_per_view >= 0 and at least one clip and crop, got {gflops_per_view}, {num_clips}, {num_crops}"
        )
    g = f"{gflops_per_view:.0f}" if gflops_per_view >= 100 else f"{gflops_per_view:.3g}"
    views = f"{num_clips} x {num_crops}" if expand else f"{num_clips * num_crops}"
    return f"{g} x {views}"
