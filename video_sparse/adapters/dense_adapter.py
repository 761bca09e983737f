"""Dense Adapters of Sparse-Tuning (arXiv 2405.14700, Sec. 3.3), one per block, parallel to the MLP.

Two variants:

- :class:`DenseAdapter` (default, as the released code builds it): a multi-width bottleneck
  ``x0 = relu(down1(x))``, ``a = down2(x0)``, ``b = up1(a)``, ``out = up2(down3([a, b]) + x0)``.
  Everything after the ReLU is linear, so it runs as one matrix: two GEMMs over the tokens instead
  of five and a concatenation (:meth:`DenseAdapter.folded`). The cross-layer part (stage sums added
  at the end of each stage) lives in the model.
- :class:`PaperDenseAdapter` (as the paper's figure draws it): the hidden state is the sum of
  down-projections of the current tokens, of the previous adapter's output and of the adapter
  output three layers back, then ReLU and an up-projection. The sum is accumulated inside the
  GEMMs (``addmm``), not by separate additions.

Up-projections start at zero, so an adapted model starts exactly as its frozen backbone.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn


def _kaiming(linear: nn.Linear) -> None:
    nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
    nn.init.zeros_(linear.bias)


def _zeros(linear: nn.Linear) -> None:
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)


def _partitioned(module: nn.Module) -> bool:
    """True under DeepSpeed ZeRO-3, whose hooks gather a layer's parameters only around that layer's
    own forward call: code that reads a sub-layer's weight directly would see an empty shard."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


class DenseAdapter(nn.Module):
    """Multi-width bottleneck adapter (``dim -> hidden -> hidden/2 -> hidden -> dim``).

    Args:
        dim: token width.
        hidden_dim: first bottleneck width (64 for ViT-B); the inner width is ``hidden_dim // 2``.
    """

    uses_history = False

    def __init__(self, dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        inner = max(1, hidden_dim // 2)
        self.down1 = nn.Linear(dim, hidden_dim)
        self.down2 = nn.Linear(hidden_dim, inner)
        self.up1 = nn.Linear(inner, hidden_dim)
        self.down3 = nn.Linear(hidden_dim + inner, hidden_dim)
        self.up2 = nn.Linear(hidden_dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.down1, self.down2, self.down3):
            _kaiming(layer)
        for layer in (self.up1, self.up2):
            _zeros(layer)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (dim, hidden) and bias (dim,) of the linear map from ``x0 = relu(down1(x))`` to the output.

        ``down3([a, b]) = A a + W3b bu1 + b3`` with ``A = W3a + W3b U1`` (``W3 = [W3a | W3b]``), and
        ``a = W2 x0 + b2``, so ``out = U2 (M x0 + c) + bu2`` with ``M = A W2 + I`` and
        ``c = A b2 + W3b bu1 + b3``. Computed from the parameters at every call (a few thousand
        multiply-adds per token width, nothing per token), in at least fp32, differentiable: gradients
        reach every original parameter.
        """
        inner = self.down2.out_features
        dtype = torch.promote_types(self.up2.weight.dtype, torch.float32)
        device_type = self.up2.weight.device.type
        no_autocast = (
            torch.autocast(device_type, enabled=False)
            if torch.amp.is_autocast_available(device_type)
            else contextlib.nullcontext()  # the meta device (shape-only runs) has no autocast
        )
        with no_autocast:
            w = {name: p.to(dtype) for name, p in self.named_parameters()}
            w3a, w3b = w["down3.weight"][:, :inner], w["down3.weight"][:, inner:]
            a = w3a + w3b @ w["up1.weight"]
            m = a @ w["down2.weight"]
            m = m + torch.eye(m.shape[0], dtype=dtype, device=m.device)
            c = a @ w["down2.bias"] + w3b @ w["up1.bias"] + w["down3.bias"]
            return w["up2.weight"] @ m, w["up2.weight"] @ c + w["up2.bias"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, dim) -> (B, N, dim)."""
        x0 = F.relu(self.down1(x))
        if _partitioned(self):  # each layer called, so ZeRO-3 gathers its weights: the same map in five GEMMs
            a = self.down2(x0)
            return self.up2(self.down3(torch.cat([a, self.up1(a)], dim=-1)) + x0)
        weight, bias = self.folded()
        return F.linear(x0, weight.to(x0.dtype), bias.to(x0.dtype))


class PaperDenseAdapter(nn.Module):
    """Adapter reading the current tokens and earlier adapters' outputs (the paper's figure).

    ``h = relu(W_x x + W_p a_{l-1} + W_q a_{l-3})``, ``out = U h``. Earlier outputs arrive already
    reduced to the current token count (the model applies each layer's token selection to them);
    terms for layers that do not exist are left out.

    Args:
        dim: token width.
        hidden_dim: bottleneck width.
        reach: how many layers back the long connection reaches (3 in the paper).
        layer_index: the block's index; projections of layers before the first do not exist, so
            every parameter is used (no idle parameters under data-parallel training).
    """

    uses_history = True

    def __init__(self, dim: int, hidden_dim: int = 64, reach: int = 3, layer_index: int = 0) -> None:
        super().__init__()
        self.reach = reach
        self.down_x = nn.Linear(dim, hidden_dim)
        self.down_prev = nn.Linear(dim, hidden_dim) if layer_index >= 1 else None
        self.down_far = nn.Linear(dim, hidden_dim) if layer_index >= reach else None
        self.up = nn.Linear(hidden_dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.down_x, self.down_prev, self.down_far):
            if layer is not None:
                _kaiming(layer)
        _zeros(self.up)

    def forward(self, x: torch.Tensor, history: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x: (B, N, dim); history: earlier adapter outputs, oldest first, each (B, N, dim)."""
        history = history or []
        terms = [(layer, h) for layer, h in ((self.down_prev, -1), (self.down_far, -self.reach)) if layer is not None]
        if _partitioned(self):  # each layer called, so ZeRO-3 gathers its weights
            hidden = sum((layer(history[back]) for layer, back in terms), self.down_x(x))
            return self.up(F.relu(hidden))
        bias = sum((layer.bias for layer, _ in terms), self.down_x.bias)
        hidden = F.linear(x, self.down_x.weight, bias).flatten(0, -2)  # (B * N, hidden)
        for layer, back in terms:  # accumulated inside the GEMM, no separate addition
            hidden = torch.addmm(hidden, history[back].flatten(0, -2), layer.weight.t())
        return self.up(F.relu(hidden)).reshape(*x.shape[:-1], -1)
