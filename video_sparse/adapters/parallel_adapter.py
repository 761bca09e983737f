"""AdaptFormer-style bottleneck adapter in parallel to the MLP (``scale * up(relu(down(x)))``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ParallelAdapter(nn.Module):
    """Single bottleneck ``dim -> hidden_dim -> dim`` with a fixed output scale.

    Args:
        dim: token width.
        hidden_dim: bottleneck width.
        scale: multiplier on the output (AdaptFormer uses 0.1).
    """

    uses_history = False

    def __init__(self, dim: int, hidden_dim: int = 64, scale: float = 0.1) -> None:
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(dim, hidden_dim)
        self.up = nn.Linear(hidden_dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, dim) -> (B, N, dim)."""
        return self.up(F.relu(self.down(x))) * self.scale
