"""Check the fused received-attention kernels on a device against an fp64 explicit reference.

For every enabled fused backend (CPU: the CPU flash kernel; CUDA: FlashAttention and the
memory-efficient kernel, each pinned in turn), dtype and sequence length: the attention output,
the received sums ``R_j = sum_i softmax_i(q k^T)_j`` and the gradients w.r.t. q, k, v of a random
loss on both, compared with the same numbers from the materialised fp64 softmax of the *same*
(rounded) inputs, without and with a key padding mask (a clip padded to the batch's length).
Prints one line per case and exits 1 when a tolerance is exceeded.

    python tools/check_received_attention.py --device cuda
    python tools/check_received_attention.py --device cpu --lengths 17 197
"""

from __future__ import annotations

import argparse
import itertools
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from video_sparse.layers.received_attention import fused_attention_with_received

# dtype -> (relative error of R, error of the output and gradients relative to their largest value)
TOLERANCES = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (2e-3, 3e-2), torch.float16: (1e-3, 5e-3)}
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}


def check_case(
    device: str, dtype: torch.dtype, n: int, masked: bool = False, heads: int = 12, dim: int = 64
) -> dict[str, float]:
    """Largest errors of one case: ``received`` (relative), ``out``/``dq``/``dk``/``dv`` (over the largest value).

    ``masked``: the second clip keeps only its first ``n // 3 + 1`` tokens (a key padding mask, as for
    removed static tubes); errors are then taken over the real query rows and keys, and ``padded`` is
    the largest received sum of a padded key (0 expected).
    """
    g = torch.Generator().manual_seed(n)
    q, k, v = (torch.randn(2, heads, n, dim, generator=g).to(device, dtype).requires_grad_() for _ in range(3))
    valid = torch.ones(2, n, dtype=torch.bool, device=device)
    if masked:
        valid[1, n // 3 + 1 :] = False
    scale = dim**-0.5
    out, received = fused_attention_with_received(q, k, v, scale, valid if masked else None)
    rows = valid[:, None, :, None]
    d_out = torch.randn(out.shape, generator=g).to(device, dtype) * rows
    d_received = torch.randn(received.shape, generator=g).to(device)
    grads = torch.autograd.grad((out * d_out).float().sum() + (received * d_received).sum(), (q, k, v))

    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    logits = ((q64 @ k64.transpose(-2, -1)) * scale).masked_fill(~valid[:, None, None, :], float("-inf"))
    attn = logits.softmax(dim=-1)
    ref_out, ref_received = attn @ v64, (attn * rows).sum(dim=2)
    loss = (ref_out * d_out.double()).sum() + (ref_received * d_received.double()).sum()
    ref_grads = torch.autograd.grad(loss, (q64, k64, v64))

    real = valid[:, None, :].expand_as(ref_received)
    errors = {"received": ((received.double() - ref_received).abs() / ref_received)[real].max().item()}
    if masked:
        errors["padded"] = received[~real].abs().max().item()
    for name, a, b in zip(("out", "dq", "dk", "dv"), (out * rows, *grads), (ref_out * rows, *ref_grads)):
        errors[name] = ((a.double() - b).abs().max() / b.abs().max()).item()
    return errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--lengths", type=int, nargs="+", default=[17, 197, 1568, 1569])
    args = p.parse_args(argv)
    on_cuda = args.device.startswith("cuda")
    dtypes = (torch.float32, torch.bfloat16, torch.float16) if on_cuda else (torch.float32, torch.bfloat16)
    failed = 0
    for backend in BACKENDS if on_cuda else ["cpu"]:
        for dtype in dtypes:
            if backend == "flash" and dtype == torch.float32:
                continue  # FlashAttention has no fp32 kernel
            for n, masked in itertools.product(args.lengths, (False, True)):
                context = sdpa_kernel(BACKENDS[backend]) if on_cuda else torch.enable_grad()
                with context:
                    errors = check_case(args.device, dtype, n, masked)
                rel_tol, tol = TOLERANCES[dtype]
                ok = errors["received"] <= rel_tol and all(errors[k] <= tol for k in ("out", "dq", "dk", "dv"))
                ok = ok and errors.get("padded", 0.0) == 0.0
                failed += not ok
                shown = " ".join(f"{k}={v:.2e}" for k, v in errors.items())
                mask = "masked" if masked else "full"
                print(
                    f"{'ok  ' if ok else 'FAIL'} {backend:9s} {str(dtype):15s} N={n:5d} {mask:6s} {shown}", flush=True
                )
    print(f"{failed} case(s) failed" if failed else "all cases within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
