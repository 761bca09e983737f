"""Prediction results on disk (JSON and CSV) and kept-token animations of the inputs."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from video_sparse.checkpoint.io import atomic_write
from video_sparse.inference.classifier import Prediction, VideoClassifier
from video_sparse.safe_files import save_image


def write_predictions(predictions: Sequence[Prediction], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``predictions.json`` (a list of :meth:`Prediction.as_dict`) and ``predictions.csv``.

    The CSV has one row per input: ``path, kind, status, error, num_views``, then ``class_i, prob_i``
    for each of the top-k classes (empty for failed inputs). Files are written atomically.

    Returns:
        The JSON and CSV paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = max((len(p.topk) for p in predictions), default=0)
    json_path, csv_path = out_dir / "predictions.json", out_dir / "predictions.csv"
    text = json.dumps([p.as_dict() for p in predictions], indent=1)
    atomic_write(json_path, lambda f: f.write(text.encode("utf-8")))
    rows = [
        ["path", "kind", "status", "error", "num_views"]
        + [f"{name}_{i}" for i in range(1, k + 1) for name in ("class", "prob")]
    ]
    for p in predictions:
        cells = [cell for name, prob in p.topk for cell in (name, f"{prob:.6f}")]
        rows.append(
            [p.path, p.kind, "ok" if p.ok else "failed", p.error or "", p.num_views]
            + cells
            + [""] * (2 * k - len(cells))
        )

    def write_csv(f) -> None:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        f.write(buffer.getvalue().encode("utf-8"))

    atomic_write(csv_path, write_csv)
    return json_path, csv_path


def _safe_name(path: str, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).name) or "input"
    return f"{index:04d}_{stem}"


def save_kept_tokens(
    classifier: VideoClassifier,
    prediction_index: int,
    dataset_items: Sequence,
    out_dir: str | os.PathLike,
    scale: int = 2,
) -> Path:
    """Draw which tokens the model kept on the centred view of one input.

    A video gives an animated GIF (one strip per frame, dropped patches dimmed), an image a PNG.

    Raises:
        VideoReadError: the input cannot be read.
    """
    from video_sparse.analysis.token_maps import (
        compute_kept_tokens,
        render_image,
        render_video,
        save_animation,
    )

    dataset = classifier.dataset(dataset_items, single_view=True)
    x = dataset.load_view(prediction_index, 0)
    shape = (-1,) + (1,) * (x.ndim - 1)
    mean = torch.tensor(classifier.data_cfg.get("mean", (0.5,) * 3), dtype=torch.float32).reshape(shape)
    std = torch.tensor(classifier.data_cfg.get("std", (0.5,) * 3), dtype=torch.float32).reshape(shape)
    pixels = ((x * std + mean) * 255).round().clamp(0, 255).byte()
    model = classifier.model
    tokens = compute_kept_tokens(model, x[None].to(classifier.device).float())
    out_dir = Path(out_dir)
    name = _safe_name(dataset.video_paths[prediction_index], prediction_index)
    if classifier.is_video:
        frames = pixels.permute(1, 2, 3, 0).numpy()
        return save_animation(render_video(np.ascontiguousarray(frames), tokens, scale), out_dir / f"{name}.gif")
    image = render_image(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()), tokens, scale)
    return save_image(image, out_dir / f"{name}.png")
