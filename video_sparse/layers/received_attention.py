"""Attention output and the exact attention each key receives, from fused attention kernels only.

With ``s_ij = scale * q_i . k_j`` and ``lse_i = log sum_j exp(s_ij)`` (every fused kernel returns
it), the attention key ``j`` receives is

    R_j = sum_i exp(s_ij - lse_i),

so ``log R_j`` is the row log-sum-exp of a *reversed* attention: queries = K, keys = Q, and the
additive bias ``-lse_i`` on key ``i``. The bias is folded into the head dimension (an extra column
of ones on the reversed queries against ``-lse_i / scale`` on the reversed keys), so any fused kernel
runs it, masks or not. One extra ``Q K^T``, O(N) memory, no N x N tensor.

Key padding (``valid``, clips of one batch padded to a common length) is folded in the same way,
since no fused kernel with a log-sum-exp output takes a mask: the queries get a column of ones, the
keys the column ``b_j`` (0 for real keys, :data:`PAD_COLUMN` for padded ones), so padded keys get
the logit bias ``scale * PAD_COLUMN`` and exactly zero attention. In the reversed pass the padded
queries ``i`` get the same bias as keys, so they add nothing to ``R``; padded keys' own sums are
set to 0.

Backward: ``R_j = sum_i w_i P_ij`` (``w_i`` = 1, or 0 for padded queries), so
``dL/dP_ij = (dO V^T)_ij + w_i dR_j`` and ``dS_ij = P_ij (dP_ij - D_i)`` with
``D_i = sum_j P_ij dP_ij``. That is the flash-attention backward of the same ``q, k`` (with the
padding columns of the forward pass) with the values widened by the column ``dR`` (0 on padded
keys, whose ``P_ij`` is 0) and the output gradient widened by the column ``w``: then
``dO' V'^T = dO V^T + w dR^T`` and ``D'_i = dO_i . O_i + w_i (P dR)_i``. The backward pass therefore
runs the same fused kernel's forward and its own backward on the widened tensors (O(N) memory) and
is exact.

Half-precision kernels hold the widened columns in half precision; ``lse`` and ``dR`` are fp32, so
they are split into a sum of 3 half-precision parts (``hi + mid + lo``), each multiplied by a column
of ones inside the kernel's fp32 accumulation: about 24 bits survive.

Both directions are registered as ``torch.library`` custom ops, so ``torch.compile`` sees one opaque
node per call and needs no graph break.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

HEAD_DIM_MULTIPLE = 8  # fused CUDA kernels need head dims in multiples of 8
# Padded keys' extra column against a column of ones: the logit bias PAD_COLUMN * scale (-4096 at
# head dim 64, -2896 at 128), whose exp is 0 in fp32 while real logits stay within about +-1400.
# A power of two: exact in fp16 and bf16, no _parts needed.
PAD_COLUMN = -(2.0**15)


def _parts(x: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """``x`` (fp32) as a list of ``dtype`` tensors whose fp32 sum is ``x`` to about 24 bits."""
    if torch.finfo(dtype).bits >= 32:
        return [x.to(dtype)]
    parts, rest = [], x.float()
    for _ in range(3):
        part = rest.to(dtype)
        parts.append(part)
        rest = rest - part.float()
    return parts


def _widen(x: torch.Tensor, columns: list[torch.Tensor]) -> torch.Tensor:
    """``x`` (..., d) with ``columns`` (each (...)) appended and zero-padded to a multiple of 8 wide."""
    width = x.shape[-1] + len(columns)
    pad = -width % HEAD_DIM_MULTIPLE
    extra = [c.unsqueeze(-1).to(x.dtype) for c in columns]
    if pad:
        extra.append(x.new_zeros(*x.shape[:-1], pad))
    return torch.cat([x, *extra], dim=-1)


GradFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _fused_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor, GradFn]:
    """Attention output (B, H, N, d), row log-sum-exp (B, H, N) fp32 and the kernel's own backward
    (``d_out -> (dq, dk, dv)``), from one fused kernel; q, k, v of one head dim.

    CPU: the flash kernel for CPUs. CUDA: FlashAttention for half types when enabled, else the
    memory-efficient kernel (honours ``torch.nn.attention.sdpa_kernel``'s choice of backends).

    Raises:
        RuntimeError: no fused kernel that returns the log-sum-exp is available or enabled.
    """
    n = q.shape[2]
    aten = torch.ops.aten
    if q.device.type == "cpu":
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)

        def grad_cpu(d_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return aten._scaled_dot_product_flash_attention_for_cpu_backward(
                d_out, q, k, v, out, lse, 0.0, False, scale=scale
            )

        return out, lse.float(), grad_cpu
    if q.device.type == "cuda":
        if q.dtype in (torch.float16, torch.bfloat16) and torch.backends.cuda.flash_sdp_enabled():
            res = aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)

            def grad_flash(d_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                return aten._scaled_dot_product_flash_attention_backward(
                    d_out,
                    q,
                    k,
                    v,
                    res[0],
                    res[1],
                    res[2],
                    res[3],
                    res[4],
                    res[5],
                    0.0,
                    False,
                    res[6],
                    res[7],
                    scale=scale,
                )

            return res[0], res[1][..., :n].float(), grad_flash
        if torch.backends.cuda.mem_efficient_sdp_enabled():
            res = aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, False, scale=scale)

            def grad_efficient(d_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                grads = aten._scaled_dot_product_efficient_attention_backward(
                    d_out,
                    q,
                    k,
                    v,
                    None,
                    res[0],
                    res[1],
                    res[2],
                    res[3],
                    0.0,
                    [True, True, True, False],
                    False,
                    scale=scale,
                )
                return grads[0], grads[1], grads[2]

            return res[0], res[1][..., :n].float(), grad_efficient
    raise RuntimeError(
        f"no fused attention kernel with a log-sum-exp output for device {q.device.type!r}, dtype {q.dtype}; "
        "use the chunked kernel (score_kernel='chunked')"
    )


def fused_kernel_available(device: torch.device) -> bool:
    """Whether :func:`fused_attention_with_received` can run on ``device`` with the enabled SDPA backends."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.backends.cuda.flash_sdp_enabled() or torch.backends.cuda.mem_efficient_sdp_enabled()
    return False


def _pad_column(valid: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """:data:`PAD_COLUMN` where ``valid`` (B, N) is False, else 0, expanded to ``shape`` (B, H, N), fp32."""
    column = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device).masked_fill(~valid, PAD_COLUMN)
    return column[:, None].expand(shape)


def _forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    d = q.shape[-1]
    ones = torch.ones(q.shape[:3], dtype=torch.float32, device=q.device)
    if valid is None:
        out, lse, _ = _fused_attention(q, k, v, scale)
        query_bias, key_bias = [], []
    else:  # padded keys: a column of ones on q against PAD_COLUMN on k (values padded to the same width)
        pad = _pad_column(valid, q.shape[:3])
        out, lse, _ = _fused_attention(_widen(q, [ones]), _widen(k, [pad]), _widen(v, [torch.zeros_like(pad)]), scale)
        out = out[..., :d].contiguous()
        query_bias, key_bias = [ones], [pad]  # reversed: padded queries i (now keys) send nothing
    # reversed attention: queries k_j (plus ones), keys q_i (plus -lse_i / scale): logits s_ij - lse_i
    neg_lse = _parts(-lse / scale, q.dtype)
    rev_q = _widen(k, [ones] * len(neg_lse) + query_bias)
    rev_k = _widen(q, neg_lse + key_bias)
    _, log_received, _ = _fused_attention(rev_q, rev_k, rev_k, scale)
    received = log_received.exp().contiguous()  # the fake impl's layout (CPU lse is (B, N, H) in memory)
    if valid is not None:  # padded keys receive nothing (their reversed rows are not masked)
        received = received.masked_fill(~valid[:, None], 0.0)
    return out, received


@torch.library.custom_op("video_sparse::attention_with_received", mutates_args=())
def _attention_with_received_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    return _forward(q, k, v, scale, valid)


@_attention_with_received_op.register_fake
def _(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(q), q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("video_sparse::attention_with_received_backward", mutates_args=())
def _attention_with_received_backward_op(
    d_out: torch.Tensor,
    d_received: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = v.shape[-1]
    d_received = d_received.float()
    weights = torch.ones(d_received.shape, dtype=torch.float32, device=v.device)
    q_bias, k_bias, v_bias = [], [], []
    if valid is not None:  # padded keys masked as in the forward; padded queries add no dR term
        d_received = d_received.masked_fill(~valid[:, None], 0.0)
        weights = weights.masked_fill(~valid[:, None], 0.0)
        q_bias, k_bias = [torch.ones_like(weights)], [_pad_column(valid, weights.shape)]
        v_bias = [torch.zeros_like(weights)]
    d_parts = _parts(d_received, v.dtype)
    zeros = [torch.zeros_like(weights)] * len(d_parts)
    # widened so that d_out' v'^T = d_out v^T + w d_received^T; q, k padded with zeros to one head dim
    _, _, grad = _fused_attention(
        _widen(q, q_bias + zeros), _widen(k, k_bias + zeros), _widen(v, v_bias + d_parts), scale
    )
    dq, dk, dv = grad(_widen(d_out.to(v.dtype), v_bias + [weights] * len(d_parts)))
    return dq[..., :d].contiguous(), dk[..., :d].contiguous(), dv[..., :d].contiguous()


@_attention_with_received_backward_op.register_fake
def _(d_out, d_received, q, k, v, scale, valid=None):  # noqa: ANN001, ANN202
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    q, k, v, scale, valid = inputs
    ctx.save_for_backward(q, k, v, valid)
    ctx.scale = scale


def _backward(ctx, d_out: torch.Tensor | None, d_received: torch.Tensor | None):  # noqa: ANN001, ANN202
    q, k, v, valid = ctx.saved_tensors
    if d_out is None:
        d_out = torch.zeros_like(q)
    if d_received is None:
        d_received = q.new_zeros(q.shape[:3], dtype=torch.float32)
    dq, dk, dv = _attention_with_received_backward_op(d_out, d_received, q, k, v, ctx.scale, valid)
    return dq, dk, dv, None, None


_attention_with_received_op.register_autograd(_backward, setup_context=_setup_context)


def fused_attention_with_received(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output and the exact attention each key receives, summed over queries, via fused kernels.

    Args:
        q, k, v: (B, H, N, d), one dtype and device.
        scale: attention scale.
        valid: (B, N) bool, True for real tokens, or None (all real): padded keys get no attention
            from any query and padded queries add nothing to ``received``. Each clip needs at least
            one real token.

    Returns:
        out: (B, H, N, d), rows of padded queries finite but meaningless; received: (B, H, N) float32,
        ``sum_i softmax(q_i k^T * scale)`` over the real queries i, 0 for padded keys. Both
        differentiable w.r.t. q, k, v with exact gradients (see the module docstring).

    Raises:
        RuntimeError: no fused kernel returning the log-sum-exp is enabled on this device.
    """
    if valid is not None:
        valid = valid.to(device=q.device, dtype=torch.bool).contiguous()
    return _attention_with_received_op(q.contiguous(), k.contiguous(), v.contiguous(), float(scale), valid)
