"""Schedules: warm-up + cosine learning rate (a function and the ``optim.scheduler`` target) and the
keep-rate warm-up (EViT)."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step ``step``.

    Linear from ``1 / warmup_steps`` to 1 over the warm-up, then cosine from 1 down to ``min_ratio``
    at ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def keep_rate_at(epoch: float, target: float, start_epoch: float = 0.0, ramp_epochs: float = 0.0) -> float:
    """Keep rate at a (fractional) epoch: 1.0 until ``start_epoch``, cosine down to ``target`` over
    ``ramp_epochs``, then ``target``. With ``ramp_epochs=0`` the target applies from the start.
    """
    if ramp_epochs <= 0 or epoch >= start_epoch + ramp_epochs:
        return target
    if epoch <= start_epoch:
        return 1.0
    progress = (epoch - start_epoch) / ramp_epochs
    return target + (1.0 - target) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 0.0,
    min_lr: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-optimizer-step :func:`warmup_cosine` on ``optimizer`` (the ``optim.scheduler`` group's target).

    Args:
        optimizer: its first group's learning rate is the peak.
        steps_per_epoch, epochs: optimizer steps per epoch and epochs (the cosine ends at their product).
        warmup_epochs: linear warm-up length in (fractional) epochs, rounded to whole steps.
        min_lr: the learning rate the cosine ends at (absolute).
    """
    peak = optimizer.param_groups[0]["lr"]
    warmup = int(round(warmup_epochs * steps_per_epoch))
    total = steps_per_epoch * epochs
    min_ratio = min_lr / peak if peak > 0 else 0.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup, min_ratio))
