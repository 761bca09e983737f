"""Process-group set-up and small collective helpers (gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, world size, local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA device is available; use device=cpu or auto")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def _prepare_deepspeed_for_cpu() -> None:
    """Keep DeepSpeed's CPU path free of compilers and accelerator guesses (call before importing it).

    ``DS_ACCELERATOR=cpu`` (DeepSpeed's documented override) replaces the "unable to detect a GPU"
    warning. DeepSpeed's process-group wrapper JIT-builds the C++ op ``deepspeed_shm_comm`` when the
    CPU accelerator is active (a C++ compiler and about a minute, redone when the build flags change);
    that op only serves ``inference_all_reduce`` (tensor-parallel inference), which training and
    testing never call, so it is marked incompatible in DeepSpeed's op table and DeepSpeed keeps to
    ``torch.distributed`` collectives.
    """
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        return
    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None:
        return
    probe_log = logging.getLogger("compilers")  # the op probe's test compiles log at INFO
    level = probe_log.level
    probe_log.setLevel(logging.WARNING)
    try:
        deepspeed.ops.__compatible_ops__[builder.NAME] = False
    finally:
        probe_log.setLevel(level)


def init_distributed(device: str = "auto", backend: str | None = None) -> DistInfo:
    """Join (or create) the process group and register it with DeepSpeed.

    A plain ``python tools/train.py`` run gets a one-process group on a free local port; under
    ``torchrun`` or the DeepSpeed launcher the environment variables they set are used. On the CPU
    the group uses gloo and nothing is compiled (see ``_prepare_deepspeed_for_cpu``).
    """
    torch_device = resolve_device(device)
    if torch_device.type == "cpu":
        _prepare_deepspeed_for_cpu()
    import deepspeed

    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch_device.type == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    backend = backend or ("nccl" if torch_device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, torch_device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(value: float, device: torch.device | None = None) -> float:
    """Sum a Python number over all ranks (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from ``src`` to every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
