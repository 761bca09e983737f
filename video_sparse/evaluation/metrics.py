"""Classification metrics on merged scores: top-k, mean per-class accuracy, confusion matrix.

All accuracies are percentages in ``[0, 100]``. Inputs are numpy arrays or CPU tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from video_sparse.evaluation.multiview import MergedScores

__all__ = [
    "topk_accuracy",
    "mean_class_accuracy",
    "confusion_matrix",
    "evaluation_summary",
    "format_flops_x_views",
]


def _check(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores)
    y = np.asarray(labels).astype(np.int64, copy=False)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, K), got shape {s.shape}")
    if y.shape != (s.shape[0],):
        raise ValueError(f"labels must be ({s.shape[0]},), got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must lie in [0, {s.shape[1]}), found [{int(y.min())}, {int(y.max())}]")
    return s, y


def topk_accuracy(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy for each ``k``.

    A sample is correct at ``k`` when its label is among the first ``k`` classes ranked by score,
    equal scores ranked by class index (so top-1 agrees with ``argmax``). A ``k`` larger than the
    number of classes counts every sample as correct.

    Args:
        scores: ``(N, K)`` scores (logits or probabilities).
        labels: ``(N,)`` int labels in ``[0, K)``.
        ks: the values of ``k``.

    Returns:
        ``{k: accuracy in percent}``; ``nan`` for ``N == 0``.
    """
    s, y = _check(scores, labels)
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
        ks: top-k values; ``top{k}`` keys are produced for each (``top1`` and ``top5`` by default).

    Returns:
        ``{"top1", "top5", "mean_class_acc"}`` in percent, ``num_videos`` (merged videos),
        ``num_views`` (distinct views evaluated = ``num_videos * views_per_video``),
        ``views_per_video``, ``num_failed`` (videos excluded: failed to decode),
        ``num_duplicates`` (padded duplicate views dropped) and ``merge`` (the rule).
    """
    acc = topk_accuracy(merged.scores, merged.labels, ks)
    out: dict[str, Any] = {f"top{k}": v for k, v in acc.items()}
    out.update(
        mean_class_acc=mean_class_accuracy(merged.scores, merged.labels),
        num_videos=len(merged),
        num_views=len(merged) * merged.num_views,
        views_per_video=merged.num_views,
        num_failed=merged.num_failed,
        num_duplicates=merged.num_duplicates,
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
