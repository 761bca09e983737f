"""Training memory and step time with and without activation checkpointing (``model.grad_checkpointing``).

    python tools/bench_grad_checkpointing.py --device cuda --model sparse_videomae_large_patch16_224 --batch 8
    python tools/bench_grad_checkpointing.py --model sparse_videomae_nano_patch16_64 --batch 2 --steps 2

One training step = forward, cross-entropy, backward over the trainable parameters (Dense Adapters
and head; the backbone is frozen), optimizer step (AdamW). On CUDA the step runs under bf16 autocast
and the peak is ``torch.cuda.max_memory_allocated``; on the CPU the peak resident set size. Prints a
Markdown table: median step time (range) and peak memory, and the gradients' largest difference
between the two settings on the first step (same weights, same batch).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import time

import timm
import torch
import torch.nn.functional as F

from video_sparse.adapters import set_trainable
from video_sparse.analysis.flops import input_shape_of
from video_sparse.analysis.memory import peak_mib, reset_peak


def _step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> None:
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    with autocast:
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="registered model (repeatable)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    rows = []
    for name in args.model or ["sparse_videomae_base_patch16_224"]:
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=400).to(device).train()
        set_trainable(model)
        for block in model.blocks:  # non-zero adapter outputs, so that every gradient path is exercised
            torch.nn.init.normal_(block.adapter.up2.weight, std=0.02)
        x = torch.randn(input_shape_of(model, args.batch), device=device)
        y = torch.randint(0, 400, (args.batch,), device=device)
        ref = _grads(model, x, y)
        model.set_grad_checkpointing(True)
        diff = max((g - ref[n]).abs().max().item() for n, g in _grads(model, x, y).items())
        scale = max(g.abs().max().item() for g in ref.values())
        for ckpt in (False, True):
            model.set_grad_checkpointing(ckpt)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
            _step(model, opt, x, y, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            reset_peak(device)
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                _step(model, opt, x, y, device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            rows.append(
                (
                    name,
                    args.batch,
                    ckpt,
                    statistics.median(times),
                    min(times),
                    max(times),
                    peak_mib(device),
                    diff,
                    scale,
                )
            )
            del opt
        del model, x, y, ref
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    print("| model | batch | grad ckpt | step s (median) | range | peak MiB | max grad diff / max grad |")
    print("|---|---|---|---|---|---|---|")
    for name, batch, ckpt, med, lo, hi, peak, diff, scale in rows:
        print(f"| {name} | {batch} | {ckpt} | {med:.3f} | {lo:.3f}-{hi:.3f} | {peak:.0f} | {diff:.2e} / {scale:.2e} |")


if __name__ == "__main__":
    main()
