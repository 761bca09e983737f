"""Fixed sine-cosine position table over a flattened token index (VideoMAE's convention)."""

from __future__ import annotations

import torch


def sincos_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """Return the ``(1, num_positions, dim)`` table with sin on even and cos on odd channels.

    Channel ``j`` of position ``p`` is ``p / 10000 ** (2 * (j // 2) / dim)`` passed through sin (even
    ``j``) or cos (odd ``j``), computed in float64 and returned as float32.
    """
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    exponent = 2.0 * torch.div(torch.arange(dim), 2, rounding_mode="floor").to(torch.float64) / dim
    angles = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponent)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.unsqueeze(0).to(torch.float32)
