"""Multiply-accumulate counts (GMACs, the papers' "GFLOPs") from a real forward pass.

Counting runs the model, so sparsifying layers really drop tokens and every later layer is
counted at its true length. ``torch.utils.flop_counter`` counts matmuls and convolutions; the fused
attention kernels are counted too (the CPU kernel is registered here, since PyTorch registers only
the CUDA ones), as ``2 * N^2 * d`` MACs per head and sample for ``q k^T`` and ``attn v``. The
fused attention that also returns the received sums (``video_sparse::attention_with_received``) is
counted as that attention, like the chunked kernel's two matmuls; its reversed ``Q K^T`` pass, an
implementation cost of the exact score, is left out as the scores' softmax sums are.
Elementwise work (softmax, norms, GELU) is not counted, as in fvcore and the papers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..layers import received_attention  # noqa: F401  (registers the op counted below)

_aten = torch.ops.aten


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_with_received_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
    torch.ops.video_sparse.attention_with_received: _attention_with_received_flops,
}


@dataclass(frozen=True)
class FlopReport:
    """GMACs of one forward pass per sample, in total and by operator."""

    gmacs: float
    by_op: dict[str, float]


def count_gmacs(model: nn.Module, inputs: torch.Tensor, **forward_kwargs) -> FlopReport:
    """Count multiply-accumulates of ``model(inputs)`` per sample (batch divided out).

    Args:
        model: any module; put in eval mode for the count.
        inputs: a batch, e.g. (1, 3, 224, 224) or (1, 3, 16, 224, 224).
        **forward_kwargs: passed to the forward call.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
            model(inputs, **forward_kwargs)
    finally:
        model.train(was_training)
    batch = inputs.shape[0]
    by_op = {
        str(op).replace("aten.", ""): flops / 2 / batch / 1e9
        for op, flops in counter.get_flop_counts()["Global"].items()
    }
    return FlopReport(counter.get_total_flops() / 2 / batch / 1e9, by_op)


def input_shape_of(model: nn.Module, batch_size: int = 1) -> tuple[int, ...]:
    """The input shape a ``SparseViT`` expects."""
    embed = model.patch_embed
    if getattr(model, "is_video", False):
        return (batch_size, embed.proj.in_channels, embed.num_frames, *embed.img_size)
    return (batch_size, embed.proj.in_channels, *embed.img_size)


def dense_vs_sparse(model: nn.Module, keep_rate: float | None = None) -> dict[str, float]:
    """GMACs of ``model`` at its keep rate against the same model with no token dropping.

    Returns:
        ``{"dense_gmacs", "sparse_gmacs", "ratio"}`` where ``ratio = sparse / dense``.
    """
    inputs = torch.zeros(input_shape_of(model))
    dense = count_gmacs(model, inputs, keep_rate=1.0).gmacs
    sparse = count_gmacs(model, inputs, keep_rate=keep_rate).gmacs
    return {"dense_gmacs": dense, "sparse_gmacs": sparse, "ratio": sparse / dense}
