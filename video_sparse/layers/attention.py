"""Multi-head self-attention that can also report a per-token importance score.

The output always comes from ``scaled_dot_product_attention`` (``attn_impl="sdpa"``) unless the
explicit implementation is asked for, which materialises the full attention matrix in every layer
the way EViT-derived code does (kept for comparison benchmarks and as a test reference).

A score is computed only when the caller asks for one (the sparsifying layers), and only as much of
the attention matrix as the policy needs (:class:`~video_sparse.sparsify.scorers.ScorePolicy`): a few
query rows next to SDPA, or, for policies that need the whole matrix, the exact per-key sums from
fused kernels (:mod:`video_sparse.layers.received_attention`) or from the chunked explicit kernel
(:mod:`video_sparse.layers.chunked_attention`); :func:`received_kernel` chooses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..sparsify.scorers import get_score_policy
from .chunked_attention import attention_with_received
from .received_attention import fused_attention_with_received, fused_kernel_available

SCORE_KERNELS = ("auto", "fused", "chunked")


def received_kernel(requested: str, device: torch.device) -> str:
    """The kernel that computes the attention each key receives: ``"fused"`` or ``"chunked"``.

    ``"auto"`` takes the fused kernels wherever one returning the log-sum-exp is enabled (CPU; CUDA
    with the flash or memory-efficient SDPA backend): measured faster than the chunked kernel on the
    CPU too (BENCHMARKS.md, "CPU after the fused score kernels"). Elsewhere (other devices, the math-only SDPA
    backend) and during ONNX export it falls back to the chunked kernel.

    Raises:
        ValueError: ``requested`` is not one of :data:`SCORE_KERNELS`.
    """
    if requested not in SCORE_KERNELS:
        raise ValueError(f"score_kernel must be one of {SCORE_KERNELS}, got {requested!r}")
    if requested == "auto":
        if torch.onnx.is_in_onnx_export():  # ONNX has no fused kernel returning the log-sum-exp
            return "chunked"
        return "fused" if fused_kernel_available(device) else "chunked"
    return requested


class Attention(nn.Module):
    """timm-compatible attention (``qkv``, ``proj``) with an optional importance score.

    Args:
        dim: token width.
        num_heads: attention heads.
        qkv_bias: add a bias to the qkv projection.
        proj_drop: dropout after the output projection.
        attn_impl: ``"sdpa"`` (fused kernel) or ``"explicit"`` (full softmax matrix, reference style).
        score_chunk_size: query rows per chunk when the chunked kernel computes the exact
            mean-received score; None picks it from the input size and device (see
            :func:`~video_sparse.layers.chunked_attention.score_chunk_rows`).
        score_kernel: how policies that need the whole matrix get it: ``"auto"``, ``"fused"`` or
            ``"chunked"`` (see :func:`received_kernel`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_impl: str = "sdpa",
        score_chunk_size: int | None = None,
        score_kernel: str = "auto",
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        if attn_impl not in ("sdpa", "explicit"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'explicit', got {attn_impl!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_impl = attn_impl
        self.score_chunk_size = score_chunk_size
        received_kernel(score_kernel, torch.device("cpu"))  # validates the name
        self.score_kernel = score_kernel
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x: torch.Tensor,
        score: str | None = None,
        num_prefix_tokens: int = 0,
        key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend and optionally score the non-prefix tokens.

        Args:
            x: (B, N, C) tokens.
            score: name of an importance policy (``SCORE_POLICIES``) or None for no score.
            num_prefix_tokens: leading tokens (CLS) that are never scored.
            key_padding_mask: (B, N) bool, True for real tokens, or None: padded tokens receive no
                attention and are left out of the score's means (their own outputs are unused).

        Returns:
            out: (B, N, C); scores: (B, N - num_prefix_tokens) float32, or None.
        """
        B, N, C = x.shape
        policy = get_score_policy(score) if score is not None else None
        if policy is not None and policy.needs_class_token and num_prefix_tokens < 1:
            raise ValueError(f"score={score!r} needs a class token; use 'mean_attn' or 'mean_query' for video")
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

        valid = key_padding_mask
        masked = () if valid is None else (valid,)  # policies take the mask only when there is one
        scores = None
        if self.attn_impl == "explicit":
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if valid is not None:
                attn = attn.masked_fill(~valid[:, None, None, :], float("-inf"))
            attn = attn.to(torch.promote_types(attn.dtype, torch.float32)).softmax(dim=-1)
            out = attn.to(v.dtype) @ v
            if policy is not None:
                scores = (
                    policy.from_attention(attn, *masked)
                    if policy.from_attention is not None
                    else policy.from_queries(q, k, self.scale, *masked)
                )
        elif policy is not None and policy.needs_attention:
            # Either kernel masks padded keys (a batch with removed static tubes) and leaves padded
            # queries out of the sums.
            if received_kernel(self.score_kernel, q.device) == "fused":
                out, received = fused_attention_with_received(q, k, v, self.scale, valid)
            else:
                out, received = attention_with_received(q, k, v, self.scale, self.score_chunk_size, valid)
            scores = policy.from_received(received, N if valid is None else valid.sum(dim=1, keepdim=True))
        else:
            mask = None if valid is None else valid[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            if policy is not None:
                scores = policy.from_queries(q, k, self.scale, *masked)

        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))
        if scores is not None:
            scores = scores[:, num_prefix_tokens:]
        return out, scores
