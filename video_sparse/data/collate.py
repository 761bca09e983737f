"""Batching of dataset items that may include failed (unreadable) evaluation items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

INT_FIELDS = ("label", "sample_index", "view_index", "clip_index", "crop_index", "skipped")


def collate_samples(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the readable items of a batch and set the failed ones aside.

    Args:
        batch: items of :class:`VideoClassificationDataset` (or any dataset with the same keys).

    Returns:
        ``"input"``: float ``(B, C, T, H, W)`` of the ok items — the key is **absent** when no
        item of the batch is ok; ``"label"``, ``"sample_index"``, ``"view_index"``,
        ``"clip_index"``, ``"crop_index"``, ``"skipped"``: int64 ``(B,)`` (always present, empty
        when no item is ok); ``"failed"``: list of the failed items' dicts (``sample_index``,
        ``view_index``, ``path``, ``error``), empty when none failed.
    """
    ok = [b for b in batch if not b.get("failed", False)]
    failed = [dict(b) for b in batch if b.get("failed", False)]
    out: dict[str, Any] = {}
    if ok:
        out["input"] = torch.stack([b["input"] for b in ok])
    for key in INT_FIELDS:
        out[key] = torch.tensor([int(b.get(key, 0)) for b in ok], dtype=torch.int64)
    out["failed"] = failed
    return out
