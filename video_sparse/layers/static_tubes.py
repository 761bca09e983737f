"""Static-tube filter: drop the tubes of a clip that repeat the tube before them, before the first block.

Run-length tokenization (RLT, Choudhury et al., NeurIPS 2024) observes that video is redundant in
time: a static background yields the same tube at every time step. A tube at time step ``t >= 1``
and grid position ``(h, w)`` is *static* when the mean absolute difference between its pixels and
those of the tube at ``(t - 1, h, w)``, on the normalised model input, is below a threshold; it is
then removed before the network. The tubes of the first time step are always kept. Each kept tube
records its *run length*: itself plus the static tubes that follow it at its position up to the
next kept tube, i.e. the number of original tubes it stands for.

Clips of one batch keep different numbers of tubes. They are packed left-aligned in original
(``t, h, w``, time-major) order and padded at the end to the longest clip of the batch only; a
``valid`` mask marks the real tokens (attention ignores padded keys, see
:class:`~video_sparse.layers.Attention`). Position encodings are added before packing, so every kept
tube carries the table entry of its original position.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

#: Original-index marker of a padding slot (``-1`` marks the fused token).
PADDING_ID = -2


class PackedTubes(NamedTuple):
    """Tokens of the kept tubes, packed per clip.

    Attributes:
        tokens: (B, L, C) kept tubes in original order, then zeros up to the longest clip's L.
        ids: (B, L) long original tube index (time-major ``t, h, w``), :data:`PADDING_ID` for padding.
        lengths: (B, L) float run length of each kept tube (>= 1), 0 for padding.
        valid: (B, L) bool, True for the real tokens; None when no clip has padding.
    """

    tokens: torch.Tensor
    ids: torch.Tensor
    lengths: torch.Tensor
    valid: torch.Tensor | None


def tube_differences(x: torch.Tensor, tubelet_size: int, patch_size: tuple[int, int]) -> torch.Tensor:
    """Mean absolute difference of every tube to the tube before it at the same position.

    Args:
        x: (B, C, T, H, W) normalised clips; T, H, W multiples of the tube size.
        tubelet_size: frames per tube.
        patch_size: (height, width) of a tube in pixels.

    Returns:
        (B, T / tubelet_size, H / ph, W / pw) float32; ``inf`` at the first time step (nothing to
        compare with), so that it is never below a threshold.

    Raises:
        ValueError: input not 5-D or not a whole number of tubes.
    """
    if x.ndim != 5:
        raise ValueError(f"static tubes need clips (B, C, T, H, W), got shape {tuple(x.shape)}")
    B, C, T, H, W = x.shape
    ph, pw = patch_size
    if T % tubelet_size or H % ph or W % pw:
        raise ValueError(f"clip (T, H, W)={(T, H, W)} is not a whole number of {tubelet_size}x{ph}x{pw} tubes")
    tubes = x.float().reshape(B, C, T // tubelet_size, tubelet_size, H // ph, ph, W // pw, pw)
    diff = (tubes[:, :, 1:] - tubes[:, :, :-1]).abs().mean(dim=(1, 3, 5, 7))  # (B, T'-1, gh, gw)
    first = diff.new_full((B, 1, *diff.shape[2:]), float("inf"))
    return torch.cat([first, diff], dim=1)


def static_tube_keep(x: torch.Tensor, threshold: float, tubelet_size: int, patch_size: tuple[int, int]) -> torch.Tensor:
    """Which tubes survive the filter: (B, N) bool, N = T' * gh * gw in time-major order.

    A tube is dropped when :func:`tube_differences` is below ``threshold``; the first time step is
    always kept. ``threshold <= 0`` keeps every tube.
    """
    return (tube_differences(x, tubelet_size, patch_size) >= threshold).flatten(1)


def run_lengths(keep: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Run length of each kept tube: 1 + the dropped tubes that follow it at its position.

    Args:
        keep: (B, N) bool from :func:`static_tube_keep`, time-major over ``grid``; every tube of
            the first time step kept.
        grid: (T', gh, gw).

    Returns:
        (B, N) long; 0 for dropped tubes. Per position, the lengths sum to T'.
    """
    B = keep.shape[0]
    steps = keep.reshape(B, *grid)
    if not bool(steps[:, 0].all()):
        raise ValueError("the first tube of every position must be kept")
    # index of the run each tube belongs to = number of kept tubes up to and including it, per position
    run = steps.long().cumsum(dim=1) - 1
    lengths = torch.zeros_like(run).scatter_add_(1, run, torch.ones_like(run))  # (B, T', gh, gw) by run index
    starts = torch.gather(lengths, 1, run)  # each tube's run length
    return (starts * steps).flatten(1)


def pack_tubes(tokens: torch.Tensor, keep: torch.Tensor, grid: tuple[int, int, int]) -> PackedTubes:
    """Gather the kept tokens of each clip, in original order, padded to the longest clip.

    Args:
        tokens: (B, N, C) embedded tubes (position encoding included).
        keep: (B, N) bool from :func:`static_tube_keep`.
        grid: (T', gh, gw) with T' * gh * gw = N.

    Returns:
        :class:`PackedTubes`; ``valid`` is None when every clip keeps the same number of tubes.
    """
    B, N, C = tokens.shape
    if keep.shape != (B, N):
        raise ValueError(f"keep mask {tuple(keep.shape)} does not match tokens {tuple(tokens.shape)}")
    lengths = run_lengths(keep, grid)
    counts = keep.sum(dim=1)
    width = int(counts.max())
    # stable order: kept tubes first in original order, then the dropped ones
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=tokens.device).expand(B, -1) < counts.unsqueeze(1)
    packed = torch.gather(tokens, 1, order.unsqueeze(-1).expand(-1, -1, C)) * valid.unsqueeze(-1).to(tokens.dtype)
    ids = torch.where(valid, order, torch.full_like(order, PADDING_ID))
    run = torch.gather(lengths, 1, order).float() * valid
    return PackedTubes(packed, ids, run, None if bool(valid.all()) else valid)
