"""Run every view of an evaluation set through a model and merge per video, exactly across ranks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.collate import collate_samples
from ..data.contract import ClassificationDataset
from ..evaluation import (
    MergedScores,
    ViewScoreCollector,
    ViewScores,
    evaluation_summary,
    gather_failed,
    gather_view_records,
    merge_views,
    save_video_scores,
    save_view_scores,
)
from ..safe_files import ensure_dir
from .distributed import DistInfo
from .sample_order import ResumableSampler, SeededDataset

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Metrics (``top1``, ``top5``, ``mean_class_acc``, counts) and the merged scores (rank 0)."""

    summary: dict[str, Any]
    merged: MergedScores | None
    views: ViewScores | None
    failed: set[int]


def eval_loader(dataset: ClassificationDataset, batch_size: int, num_workers: int, dist_info: DistInfo) -> DataLoader:
    """A loader over this rank's padded share of ``dataset`` (every view; padding duplicates merge once)."""
    sampler = ResumableSampler(len(dataset), dist_info.world_size, dist_info.rank, shuffle=False, drop_last=False)
    return DataLoader(
        SeededDataset(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        pin_memory=dist_info.device.type == "cuda",
    )


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    dataset: ClassificationDataset,
    dist_info: DistInfo,
    batch_size: int = 8,
    num_workers: int = 0,
    how: str = "prob",
    dtype: torch.dtype = torch.float32,
    desc: str = "eval",
    out_dir: str | Path | None = None,
    video_ids: list[str] | None = None,
    class_names: list[str] | None = None,
) -> EvalResult:
    """Score every (sample, view) item, gather to rank 0, merge and summarise.

    Args:
        forward: maps an input batch on ``dist_info.device`` to logits.
        dataset: any :class:`~video_sparse.data.contract.ClassificationDataset` (image or video).
        dist_info: this process's rank and device.
        how: view merge, ``"prob"`` (softmax then mean), ``"logit"`` or ``"max"``.
        out_dir: when given, rank 0 writes ``view_scores.npz`` and ``video_scores.csv`` there.
        video_ids: names for the per-video score file (list index = sample index).
        class_names: one name per class, for the score columns of ``video_scores.csv``.
    """
    collector = ViewScoreCollector()
    loader = eval_loader(dataset, batch_size, num_workers, dist_info)
    warned: set[int] = set()  # one line per unreadable video, not one per view
    # disable=None: no bar when stderr is not a terminal (log files get no carriage returns)
    for batch in tqdm(loader, desc=desc, disable=None if dist_info.is_main else True, mininterval=2.0, leave=False):
        for item in batch["failed"]:
            if int(item["sample_index"]) in warned:
                continue
            warned.add(int(item["sample_index"]))
            log.warning(
                "cannot decode %s (sample %d): %s; excluded from the metrics",
                item.get("path"),
                item["sample_index"],
                item.get("error"),
            )
        collector.add_failed(int(item["sample_index"]) for item in batch["failed"])
        if "input" not in batch:
            continue
        logits = forward(batch["input"].to(dist_info.device, dtype=dtype, non_blocking=True)).float().cpu()
        collector.add(batch["sample_index"], batch["view_index"], batch["label"], logits)
    records = gather_view_records(collector.result(), dst=0)
    failed = gather_failed(collector.failed, dst=0)
    if not dist_info.is_main:
        return EvalResult({}, None, None, set())
    merged = merge_views(
        records, num_views=dataset.num_views, how=how, failed=failed, num_samples=len(dataset.sample_ids)
    )
    summary = evaluation_summary(merged)
    if out_dir is not None:
        out_dir = Path(out_dir)
        ensure_dir(out_dir)
        save_view_scores(out_dir / "view_scores.npz", records, failed=failed, num_views=merged.num_views)
        save_video_scores(out_dir / "video_scores.csv", merged, video_ids=video_ids, class_names=class_names)
    return EvalResult(summary, merged, records, set(failed))
