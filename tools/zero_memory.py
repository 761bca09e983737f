"""Memory of a frozen-backbone Sparse-Tuning model under DeepSpeed ZeRO-2 and ZeRO-3.

Per-rank memory measured with processes on the CPU (gloo), then a few training steps on one fixed
batch (the loss must fall) and a check that every frozen weight, gathered, is bit-identical to the
weight before DeepSpeed took the model::

    torchrun --nproc_per_node=2 tools/zero_memory.py ranks --model sparse_videomae_large_patch16_224 --stage 2
    torchrun --nproc_per_node=2 tools/zero_memory.py ranks --model sparse_videomae_large_patch16_224 --stage 3

The "will it fit" table per GPU (video, 16 frames at 224, bf16): model states from DeepSpeed's
estimators, activations counted on the meta device (no GPU, no weights; ``--frames``/``--size`` to
change the clip)::

    python tools/zero_memory.py fit --gpus 8 --batch 8

DeepSpeed's estimators assume every parameter is trained (16-bit weight, gradients, fp32 master
copy and Adam moments). Here only adapters and head are: the table applies the estimator to the
trainable parameters and adds the frozen 16-bit weights (2 bytes each), replicated on every GPU
under ZeRO-2, divided among them under ZeRO-3 (whose estimate also holds the largest layer,
gathered, as DeepSpeed counts it). Activations are the bytes autograd saves for the backward pass
(16-bit, per clip); with activation checkpointing, what is saved outside the blocks plus every
block's inputs plus the largest single block's activations, recomputed one block at a time. Both
omit what exists only during the backward pass (activation gradients), transient workspaces, the
allocator's slack and the CUDA context: an estimate to compare settings, not a measured peak.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import resource
from typing import Any

import timm
import torch
import torch.nn.functional as F

import video_sparse  # noqa: F401
from video_sparse.adapters import set_trainable
from video_sparse.models import vit as vit_module
from video_sparse.safe_files import write_text

log = logging.getLogger("zero_memory")
GiB = 2**30
VIDEO_MODELS = {
    "ViT-B": "sparse_videomae_base_patch16_224",
    "ViT-L": "sparse_videomae_large_patch16_224",
    "ViT-H": "sparse_videomae_huge_patch16_224",
    "ViT-g": "sparse_videomae_v2_giant_patch14_224",
}


# --------------------------------------------------------------------------------------------- counting
def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameters, and the largest layer (DeepSpeed's ``largest_layer_params``:
    the most parameters held directly by one module)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return {"total": total, "trainable": trainable, "frozen": total - trainable, "largest_layer": largest}


def model_states_bytes(counts: dict[str, int], stage: int, gpus: int) -> int:
    """Model states per GPU: DeepSpeed's estimator over the trainable parameters + frozen 16-bit weights.

    Raises:
        ValueError: ``stage`` is not 2 or 3.
    """
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import (
        estimate_zero2_model_states_mem_needs,
    )

    if stage == 2:
        _, trained = estimate_zero2_model_states_mem_needs(counts["trainable"], gpus, 1, cpu_offload=False)
        return trained + 2 * counts["frozen"]
    if stage == 3:
        _, trained, _ = estimate_zero3_model_states_mem_needs(
            counts["trainable"], counts["largest_layer"], gpus, 1, cpu_offload=False, cpu_offload_params=False
        )
        return trained + 2 * counts["frozen"] // gpus
    raise ValueError(f"stage must be 2 or 3, got {stage}")


class _FusedAttention(torch.autograd.Function):
    """Attention as the fused GPU kernels (flash, memory-efficient) keep it for the backward pass: q, k,
    v, the output and a float32 log-sum-exp per query. On the meta device ``scaled_dot_product_attention``
    takes the math path, which would save the whole attention matrix."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1], dtype=torch.float32))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # never run: the table only counts
        raise NotImplementedError


def _fused_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _FusedAttention.apply(q, k, v)


class _SavedTensors:
    """Distinct storages autograd saves for the backward pass (a ``saved_tensors_hooks`` pack hook)."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}  # storage -> bytes, in the order first saved

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        self.sizes.setdefault(storage._cdata, storage.nbytes())
        return t

    def forward(self, model: torch.nn.Module, x: torch.Tensor, keep_rate: float) -> int:
        sdpa = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = _fused_sdpa
        try:
            with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t):
                model(x, keep_rate=keep_rate)
        finally:
            F.scaled_dot_product_attention = sdpa
        return sum(self.sizes.values())


def activation_bytes(model: torch.nn.Module, x: torch.Tensor, keep_rate: float, checkpointing: bool) -> int:
    """Activations of one training forward of ``x`` (see the module docstring for what is counted)."""
    model.set_grad_checkpointing(False)
    if not checkpointing:
        return _SavedTensors().forward(model, x, keep_rate)
    saved, per_block, hooks = _SavedTensors(), [], []
    for block in model.blocks:  # each block's own activations, measured without checkpointing
        hooks.append(block.register_forward_pre_hook(lambda m, a: per_block.append(len(saved.sizes))))
        hooks.append(
            block.register_forward_hook(
                lambda m, a, o: per_block.append(sum(list(saved.sizes.values())[per_block.pop() :]))
            )
        )
    try:
        saved.forward(model, x, keep_rate)
    finally:
        for hook in hooks:
            hook.remove()
    inputs: dict[int, int] = {}
    original = vit_module.checkpoint

    def recording_checkpoint(fn, *args, **kwargs):  # block inputs, kept until the backward pass
        for arg in args:
            if isinstance(arg, torch.Tensor):
                inputs[arg.untyped_storage()._cdata] = arg.untyped_storage().nbytes()
        return original(fn, *args, **kwargs)

    model.set_grad_checkpointing(True)
    vit_module.checkpoint = recording_checkpoint
    try:
        outside = _SavedTensors().forward(model, x, keep_rate)
    finally:
        vit_module.checkpoint = original
        model.set_grad_checkpointing(False)
    return outside + sum(inputs.values()) + max(per_block)


def fit_table(gpus: int, batch: int, frames: int, size: int, models: dict[str, str]) -> str:
    """The Markdown "will it fit" table: per GPU, bf16, model states and saved activations x ``batch``."""
    rows = [
        (
            "| model | params (trainable) | keep | act. ckpt | saved activations / clip | ZeRO-2 states | "
            f"ZeRO-3 states | ZeRO-2 total, batch {batch} | ZeRO-3 total, batch {batch} |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, name in models.items():
        with torch.device("meta"):
            model = timm.create_model(name, num_classes=400, num_frames=frames, img_size=size).to(torch.bfloat16)
        set_trainable(model)
        model.train()
        counts = parameter_counts(model)
        x = torch.zeros(1, 3, frames, size, size, device="meta", dtype=torch.bfloat16)
        states = {stage: model_states_bytes(counts, stage, gpus) for stage in (2, 3)}
        for keep in (0.7, 1.0):
            for ckpt in (False, True):
                act = activation_bytes(model, x, keep, ckpt)
                first = keep == 0.7 and not ckpt
                cells = [
                    label if first else "",
                    f"{counts['total'] / 1e6:.0f} M ({counts['trainable'] / 1e6:.1f} M)" if first else "",
                    "0.7" if keep < 1 else "1.0 (dense)",
                    "yes" if ckpt else "no",
                    f"{act / GiB:.2f} GiB",
                    f"{states[2] / GiB:.2f} GiB" if first else "",
                    f"{states[3] / GiB:.2f} GiB" if first else "",
                    f"{(states[2] + batch * act) / GiB:.1f} GiB",
                    f"{(states[3] + batch * act) / GiB:.1f} GiB",
                ]
                rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# -------------------------------------------------------------------------------------- ranks (DeepSpeed)
def _fingerprints(model: torch.nn.Module) -> dict[str, str]:
    return {
        n: hashlib.sha1(p.detach().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()
        for n, p in model.named_parameters()
        if not p.requires_grad
    }


def _local_bytes(params) -> int:
    """Bytes this rank holds for ``params`` (its ZeRO-3 partition when partitioned)."""
    total = 0
    for p in params:
        held = p.ds_tensor if hasattr(p, "ds_tensor") else p.data
        total += held.numel() * held.element_size()
    return total


def run_ranks(args: argparse.Namespace) -> dict[str, Any]:
    """Build the model, hand it to DeepSpeed at ``args.stage``, measure, train ``args.steps`` steps, check."""
    import deepspeed
    import torch.distributed as dist

    from video_sparse.engine.builders import build_ds_config, param_groups
    from video_sparse.engine.distributed import init_distributed

    info = init_distributed("cpu")
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=10, num_frames=args.frames, img_size=args.size)
    set_trainable(model)
    for block in model.blocks:  # non-zero adapter outputs, so that every adapter weight gets a gradient
        torch.nn.init.normal_(block.adapter.up2.weight, std=0.02)
    counts = parameter_counts(model)
    before = _fingerprints(model)
    optimizer = torch.optim.AdamW(param_groups(model, 0.0), lr=args.lr)
    config = build_ds_config(args.stage, {}, micro_batch=args.batch, accumulate=1, clip_grad=None, precision="fp32")
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    params = list(engine.module.parameters())
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, generator=torch.Generator().manual_seed(1))
    y = torch.arange(args.batch) % 10
    losses = []
    for _ in range(args.steps):
        loss = F.cross_entropy(engine(x), y)
        engine.backward(loss)
        engine.step()
        losses.append(float(loss.detach()))
    base = engine.optimizer.optimizer if hasattr(engine.optimizer, "optimizer") else engine.optimizer
    masters = (
        getattr(engine.optimizer, "fp32_partitioned_groups_flat", None)  # ZeRO-3
        or getattr(engine.optimizer, "single_partition_of_fp32_groups", None)  # ZeRO-1/2
        or [p for g in base.param_groups for p in g["params"]]
    )
    optim_bytes = sum(p.numel() * p.element_size() for p in masters)  # fp32 master weights of this rank
    optim_bytes += sum(
        t.numel() * t.element_size()
        for s in base.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0
    )  # Adam moments
    identical = True
    for name, p in engine.module.named_parameters():
        if p.requires_grad:
            continue
        ctx = deepspeed.zero.GatheredParameters([p]) if hasattr(p, "ds_id") else torch.no_grad()
        with ctx:
            digest = hashlib.sha1(p.detach().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()
        identical &= digest == before[name]
    mine = {
        "rank": info.rank,
        "param_bytes": _local_bytes(params),
        "frozen_param_bytes": _local_bytes(p for p in params if not p.requires_grad),
        "optimizer_bytes": optim_bytes,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "frozen_bit_identical": bool(identical),
    }
    everyone: list[Any] = [None] * info.world_size
    dist.all_gather_object(everyone, mine)
    return {
        "model": args.model,
        "stage": args.stage,
        "world_size": info.world_size,
        "counts": counts,
        "losses": losses,
        "ranks": everyone,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ranks = sub.add_parser("ranks", help="per-rank memory under ZeRO-2/3 (run under torchrun)")
    ranks.add_argument("--model", default="sparse_videomae_large_patch16_224")
    ranks.add_argument("--stage", type=int, choices=(2, 3), default=3)
    ranks.add_argument("--frames", type=int, default=2, help="frames of the training clips (small: CPU)")
    ranks.add_argument("--size", type=int, default=32, help="side of the training clips (small: CPU)")
    ranks.add_argument("--batch", type=int, default=2)
    ranks.add_argument("--steps", type=int, default=3)
    ranks.add_argument("--lr", type=float, default=2e-3)
    ranks.add_argument("--json", help="write the result here (rank 0)")
    fit = sub.add_parser("fit", help="the will-it-fit table (meta device)")
    fit.add_argument("--gpus", type=int, default=8)
    fit.add_argument("--batch", type=int, default=8, help="clips per GPU")
    fit.add_argument("--frames", type=int, default=16)
    fit.add_argument("--size", type=int, default=224)
    fit.add_argument("--model", action="append", help="label=registered_name (repeatable); default ViT-B/L/H/g")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "fit":
        models = dict(m.split("=", 1) for m in args.model) if args.model else VIDEO_MODELS
        print(fit_table(args.gpus, args.batch, args.frames, args.size, models))
        return
    result = run_ranks(args)
    if torch.distributed.get_rank() == 0:
        text = json.dumps(result, indent=1)
        print(text)
        if args.json:
            write_text(args.json, text)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
