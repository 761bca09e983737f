"""Mixup and CutMix for image ``(B, C, H, W)`` and video ``(B, C, T, H, W)`` batches.

CutMix cuts the same box out of every frame (the box lies in the last two dims), unlike code that
indexes the time axis as if it were height.
"""

from __future__ import annotations

import numpy as np
import torch


def one_hot_smooth(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    off = smoothing / num_classes
    target = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return target.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


class MixupCutmix:
    """Batch-wise Mixup / CutMix with label smoothing; returns mixed inputs and soft targets.

    Args:
        num_classes: classes of the soft targets.
        mixup_alpha: Beta parameter for Mixup (0 disables).
        cutmix_alpha: Beta parameter for CutMix (0 disables).
        prob: probability of mixing a batch at all.
        switch_prob: probability of CutMix instead of Mixup when both are enabled.
        smoothing: label smoothing of the targets.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        smoothing: float = 0.1,
    ) -> None:
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.smoothing = prob, switch_prob, smoothing

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(
        self, x: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        target = one_hot_smooth(labels, self.num_classes, self.smoothing)
        if not self.enabled or rng.random() >= self.prob:
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.random() < self.switch_prob)
        lam = float(rng.beta(*(2 * [self.cutmix_alpha if use_cutmix else self.mixup_alpha])))
        flipped = x.flip(0)
        if use_cutmix:
            height, width = x.shape[-2:]
            cut_h, cut_w = int(height * np.sqrt(1 - lam)), int(width * np.sqrt(1 - lam))
            cy, cx = int(rng.integers(height)), int(rng.integers(width))
            y0, y1 = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
            x0, x1 = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
            x = x.clone()
            x[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
        else:
            x = x * lam + flipped * (1.0 - lam)
        return x, target * lam + target.flip(0) * (1.0 - lam)
