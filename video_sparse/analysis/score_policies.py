"""Compare token-importance policies: how often they keep the same tokens, and what they cost.

The reference is ``mean_attn``, the exact attention each token receives; a cheaper policy is
judged by the overlap of its kept sets with the reference's on the same weights and inputs, and by
its forward time relative to the reference, both measured in one run.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter

import torch
from torch import nn


def kept_sets(model: nn.Module, x: torch.Tensor, score: str) -> list[torch.Tensor]:
    """Kept original token indices per dropping layer when every block scores with ``score``."""
    previous = [block.score for block in model.blocks]
    try:
        for block in model.blocks:
            block.score = score
        with torch.no_grad():
            return model(x, return_kept=True).kept
    finally:
        for block, value in zip(model.blocks, previous):
            block.score = value


def selection_agreement(model: nn.Module, x: torch.Tensor, score: str, reference: str = "mean_attn") -> list[float]:
    """Mean fraction of the reference's kept tokens that ``score`` also keeps, per dropping layer.

    Only the first layer compares like with like (later layers see different inputs once the
    selections differ), so the first number is the cleanest.
    """
    ours, ref = kept_sets(model, x, score), kept_sets(model, x, reference)
    overlaps = []
    for a, b in zip(ours, ref):
        # multisets: fused tokens (-1) may be kept more than once
        per_sample = [sum((Counter(ra) & Counter(rb)).values()) / len(rb) for ra, rb in zip(a.tolist(), b.tolist())]
        overlaps.append(sum(per_sample) / len(per_sample))
    return overlaps


def time_policies(
    model: nn.Module, x: torch.Tensor, scores: list[str], repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median forward seconds per policy, repetitions interleaved round-robin."""
    times: dict[str, list[float]] = {s: [] for s in scores}
    previous = [block.score for block in model.blocks]
    try:
        with torch.no_grad():
            for rep in range(warmup + repeats):
                for score in scores:
                    for block in model.blocks:
                        block.score = score
                    start = time.perf_counter()
                    model(x)
                    if rep >= warmup:
                        times[score].append(time.perf_counter() - start)
    finally:
        for block, value in zip(model.blocks, previous):
            block.score = value
    return {score: statistics.median(values) for score, values in times.items()}
