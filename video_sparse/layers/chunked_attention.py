"""Softmax attention computed in query chunks, with the attention each key receives.

The full N x N attention matrix is never held in memory, not even for the backward pass: each
chunk of query rows is attended in turn (a chunk sized to stay in cache on the CPU, large on
accelerators), and the backward pass recomputes the chunks instead of keeping them. Token-importance
policies that need the whole matrix (``mean_attn``, :mod:`video_sparse.sparsify.scorers`) read the
per-key sums this kernel returns next to the attention output.
"""

from __future__ import annotations

import torch

CPU_CHUNK_ELEMENTS = 2**21  # 8 MB of fp32 attention per chunk: stays in cache (measured in BENCHMARKS.md)
GPU_CHUNK_ELEMENTS = 2**27  # 512 MB: few, large kernels


def score_chunk_rows(batch_heads: int, num_keys: int, device: torch.device) -> int:
    """Query rows per chunk so that one chunk's attention matrix holds about
    :data:`CPU_CHUNK_ELEMENTS` (CPU) or :data:`GPU_CHUNK_ELEMENTS` (other devices) values."""
    budget = CPU_CHUNK_ELEMENTS if device.type == "cpu" else GPU_CHUNK_ELEMENTS
    return max(16, budget // max(1, batch_heads * num_keys))


def _padding_terms(valid: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Additive key bias (B, 1, 1, N) (0 or -inf) and query weights (B, 1, N, 1) of a padding mask."""
    if valid is None:
        return None, None
    bias = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device).masked_fill(~valid, float("-inf"))
    return bias[:, None, None, :], valid[:, None, :, None].float()


def _chunk_attn(q_rows: torch.Tensor, kt: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    logits = (q_rows @ kt).float()
    return (logits if bias is None else logits + bias).softmax(dim=-1)


def _chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    chunk_size: int,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output (B, H, N, d) and the attention each key receives, summed over (real)
    queries (B, H, N) float32, one chunk of query rows at a time."""
    outs = []
    received = torch.zeros(q.shape[:3], dtype=torch.float32, device=q.device)
    kt = k.transpose(-2, -1)
    bias, rows = _padding_terms(valid)
    for start in range(0, q.shape[2], chunk_size):
        attn = _chunk_attn(q[:, :, start : start + chunk_size] * scale, kt, bias)
        received += (attn if rows is None else attn * rows[:, :, start : start + chunk_size]).sum(dim=2)
        outs.append(attn.to(v.dtype) @ v)
    return torch.cat(outs, dim=2), received


class _RecomputedChunkedAttention(torch.autograd.Function):
    """:func:`_chunked_attention` that keeps only q, k, v for the backward pass.

    Autograd would keep every chunk's (B, H, chunk, N) attention matrix until the backward pass, i.e.
    the full N x N matrix per sparsifying layer (118 MB for one 1568-token clip in fp32). Here the
    backward pass recomputes each chunk's attention (one extra ``q k^T`` per chunk) and applies the
    same chain rule autograd would: with ``P = softmax(S)``, ``dP = dout v^T + d_received``,
    ``dS = P * (dP - sum(dP * P))``, ``dq = scale dS k``, ``dk = scale dS^T q``, ``dv = P^T dout``.
    """

    @staticmethod
    def forward(
        ctx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        scale: float,
        chunk_size: int,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(q, k, v, valid)
        ctx.scale, ctx.chunk_size = scale, chunk_size
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None: skip its terms
        return _chunked_attention(q, k, v, scale, chunk_size, valid)

    @staticmethod
    def backward(ctx, d_out: torch.Tensor | None, d_received: torch.Tensor | None):
        q, k, v, valid = ctx.saved_tensors
        scale = ctx.scale
        bias, query_rows = _padding_terms(valid)
        acc = torch.promote_types(k.dtype, torch.float32)  # sums over chunks: at least fp32
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=acc, device=k.device)
        dv = torch.zeros(v.shape, dtype=acc, device=v.device)
        kt = k.transpose(-2, -1)
        for start in range(0, q.shape[2], ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            q_rows = q[:, :, rows] * scale
            attn = _chunk_attn(q_rows, kt, bias)  # (B, H, c, N), as in the forward pass
            d_attn = torch.zeros_like(attn)
            if d_out is not None:
                d_out_rows = d_out[:, :, rows]
                d_attn += (d_out_rows @ v.transpose(-2, -1)).float()
                dv += attn.to(v.dtype).transpose(-2, -1) @ d_out_rows
            if d_received is not None:
                d_attn += d_received.unsqueeze(2) * (1.0 if query_rows is None else query_rows[:, :, rows])
            d_logits = (attn * (d_attn - (d_attn * attn).sum(dim=-1, keepdim=True))).to(q.dtype)
            dq[:, :, rows] = (d_logits @ k) * scale
            dk += d_logits.transpose(-2, -1) @ q_rows
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None, None


@torch.compiler.disable  # eager under torch.compile: the chunk loop needs a concrete N (see below)
def attention_with_received(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    chunk_size: int | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output plus the exact attention each key receives, summed over queries, in query chunks.

    When gradients are needed, the chunks' attention matrices are recomputed in the backward pass
    instead of kept (see :class:`_RecomputedChunkedAttention`), so training memory stays O(N) per
    layer like the fused attention of the other layers.

    Under ``torch.compile`` this function runs eagerly (a graph break): the Python chunk loop would
    make dynamo specialise on N, i.e. recompile at every keep rate of a ramp, and with dynamic shapes
    tracing it fails outright.

    Args:
        q, k, v: (B, H, N, d), one dtype.
        scale: attention scale.
        chunk_size: query rows per chunk; temporary memory is O(B * H * chunk_size * N). None: from
            :func:`score_chunk_rows`.
        valid: (B, N) bool, True for real tokens, or None: padded keys get no attention and padded
            queries add nothing to ``received``.

    Returns:
        out: (B, H, N, d) attention output; received: (B, H, N) float32, ``sum_i softmax(q_i k^T * scale)``
        over the real queries i.
    """
    B, H, N, _ = q.shape
    chunk_size = chunk_size or score_chunk_rows(B * H, N, q.device)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        out, received = _RecomputedChunkedAttention.apply(q, k, v, scale, chunk_size, valid)
    else:
        out, received = _chunked_attention(q, k, v, scale, chunk_size, valid)
    return out, received
