"""Confusion-matrix picture (optional; needs matplotlib, drawn with the Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from video_sparse.evaluation.metrics import confusion_matrix
from video_sparse.safe_files import write_with

__all__ = ["plot_confusion_matrix"]

_MAX_TICK_LABELS = 40
_MAX_ANNOTATED = 15


def plot_confusion_matrix(
    path: str | os.PathLike,
    scores: Any,
    labels: Any,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Draws the confusion matrix of ``argmax(scores)`` against ``labels`` and saves it.

    Args:
        path: image file (``.png``, ``.pdf``, ``.svg`` ...).
        scores: ``(N, K)`` merged scores.
        labels: ``(N,)`` int labels.
        class_names: ``K`` names for the axes; ticks are labelled up to 40 classes, cells
            annotated up to 15.
        normalize: divide each row by its count (rows with no sample stay 0).
        title: figure title.

    Returns:
        The path written.

    Raises:
        ImportError: if matplotlib is not installed (``pip install video_sparse[plots]``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plot_confusion_matrix needs matplotlib: pip install matplotlib") from e

    cm = confusion_matrix(scores, labels).astype(np.float64)
    k = cm.shape[0]
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"class_names has {len(class_names)} entries for {k} classes")
    if normalize:
        support = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)

    side = min(4.0 + 0.25 * k, 30.0)
    fig = Figure(figsize=(side, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= _MAX_TICK_LABELS:
        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        ax.set_xticks(range(k), names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
    if k <= _MAX_ANNOTATED:
        top = cm.max() if cm.size else 0.0
        for (i, j), value in np.ndenumerate(cm):
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > 0.6 * top else "black",
            )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    return write_with(path, lambda f: fig.savefig(f, dpi=100, format=path.suffix.lstrip(".") or "png"))
