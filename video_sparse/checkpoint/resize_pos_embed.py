"""Resize learned position tables to another patch grid.

Image tables ``(1, P + H*W, C)`` (``P`` prefix tokens such as CLS, kept as they are) are
resized over (H, W) with bicubic interpolation; video tables ``(1, P + T*H*W, C)`` over
(T, H, W) with trilinear interpolation. Resizing to the same grid returns the input unchanged.

The 2-D default is plain bicubic (half-pixel centres, no antialiasing): what DINOv2 and the
Hugging Face ``Dinov2Model`` compute at run time when they are fed another image size, so a
backbone loaded at 224 px computes what the pre-trained model computes at 224 px (checked
against the exported ONNX graph of DINOv2 ViT-S/14, whose resized table it matches to 1e-7).
``antialias=True`` low-pass filters before shrinking, as timm's ``resample_abs_pos_embed`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _split(pos_embed: torch.Tensor, grid: Sequence[int], num_prefix_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"position table must have shape (1, N, C), got {tuple(pos_embed.shape)}")
    if pos_embed.shape[1] != num_prefix_tokens + math.prod(grid):
        raise ValueError(
            f"position table of {pos_embed.shape[1]} tokens does not match {num_prefix_tokens} prefix "
            f"tokens + grid {tuple(grid)}"
        )
    return pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]


def _resize(
    pos_embed: torch.Tensor,
    old_grid: Sequence[int],
    new_grid: Sequence[int],
    num_prefix_tokens: int,
    mode: str,
    antialias: bool = False,
) -> torch.Tensor:
    old_grid, new_grid = tuple(int(g) for g in old_grid), tuple(int(g) for g in new_grid)
    prefix, grid_part = _split(pos_embed, old_grid, num_prefix_tokens)
    if old_grid == new_grid:
        return pos_embed
    dtype = pos_embed.dtype
    c = grid_part.shape[-1]
    # (1, prod(grid), C) -> (1, C, *grid)
    x = grid_part.float().reshape(1, *old_grid, c).movedim(-1, 1)
    shrinking = any(n < o for n, o in zip(new_grid, old_grid))
    antialias = antialias and shrinking and mode == "bicubic"  # torch has no antialiased trilinear
    x = F.interpolate(x, size=new_grid, mode=mode, align_corners=False, antialias=antialias)
    x = x.movedim(1, -1).reshape(1, math.prod(new_grid), c).to(dtype)
    return torch.cat([prefix, x], dim=1)


def resize_pos_embed_2d(
    pos_embed: torch.Tensor,
    old_grid: Sequence[int],
    new_grid: Sequence[int],
    num_prefix_tokens: int = 1,
    antialias: bool = False,
) -> torch.Tensor:
    """Resize an image position table by bicubic interpolation of its patch part.

    Args:
        pos_embed: ``(1, P + H*W, C)``.
        old_grid: ``(H, W)`` of the table.
        new_grid: target ``(H', W')``.
        num_prefix_tokens: ``P``, leading rows (CLS, registers) copied unchanged.
        antialias: low-pass filter when shrinking (timm's choice); off by default (DINOv2's own).

    Returns:
        ``(1, P + H'*W', C)``.
    """
    if len(old_grid) != 2 or len(new_grid) != 2:
        raise ValueError(f"2-D grids expected, got {tuple(old_grid)} -> {tuple(new_grid)}")
    return _resize(pos_embed, old_grid, new_grid, num_prefix_tokens, "bicubic", antialias)


def resize_pos_embed_3d(
    pos_embed: torch.Tensor,
    old_grid: Sequence[int],
    new_grid: Sequence[int],
    num_prefix_tokens: int = 0,
) -> torch.Tensor:
    """Resize a video position table over (T, H, W) by trilinear interpolation.

    Args:
        pos_embed: ``(1, P + T*H*W, C)``, tokens ordered t-major then h then w.
        old_grid: ``(T, H, W)`` of the table.
        new_grid: target ``(T', H', W')``.
        num_prefix_tokens: ``P`` leading rows copied unchanged.

    Returns:
        ``(1, P + T'*H'*W', C)``.
    """
    if len(old_grid) != 3 or len(new_grid) != 3:
        raise ValueError(f"3-D grids expected, got {tuple(old_grid)} -> {tuple(new_grid)}")
    return _resize(pos_embed, old_grid, new_grid, num_prefix_tokens, "trilinear")


def _isqrt_exact(n: int) -> int | None:
    r = math.isqrt(n) if n >= 0 else -1
    return r if r >= 0 and r * r == n else None


def infer_source_grid(num_tokens: int, target_grid: Sequence[int]) -> tuple[int, ...] | None:
    """Guess the grid of a checkpoint's position table from its patch-token count.

    For 2-D targets the checkpoint grid is assumed square. For 3-D targets ``(T, H, W)`` the
    checkpoint is assumed to share the spatial grid (a different frame count) or, failing that,
    the frame count with a square spatial grid (a different image size).

    Returns:
        the grid, or ``None`` when no assumption fits.
    """
    if len(target_grid) == 2:
        s = _isqrt_exact(num_tokens)
        return (s, s) if s else None
    t, h, w = (int(g) for g in target_grid)
    if num_tokens % (h * w) == 0:
        return (num_tokens // (h * w), h, w)
    if num_tokens % t == 0:
        s = _isqrt_exact(num_tokens // t)
        if s:
            return (t, s, s)
    return None
