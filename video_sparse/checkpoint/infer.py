"""Build a ``SparseViT`` from what a checkpoint shows about itself, rather than trusting a config.

The tensors tell: width, depth, MLP width, patch (and tube) size, input channels, q/k/v biases,
LayerScale, a class token, a learned position table (and, for images, the input size it was
trained at) or none (a fixed sin-cos table), ``fc_norm`` (mean pooling) vs a final ``norm``, the
class count, a BatchNorm head, trained Dense Adapters and their width. They do not tell the number
of attention heads, which follows the published models (64-wide heads up to ViT-L, 16 heads for
ViT-H and ViT-g: :data:`HEADS_BY_WIDTH`) unless given.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from .load import POS_KEY, load_converted, read_converted
from .report import CheckpointError, LoadReport

logger = logging.getLogger(__name__)

#: Attention heads of the published ViTs by width (ViT-Ti/S/B/L/H/g); other widths use 64-wide heads.
HEADS_BY_WIDTH: dict[int, int] = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}
_BLOCK = re.compile(r"blocks\.(\d+)\.")


def _has(state_dict: Mapping[str, torch.Tensor], module: str) -> bool:
    return any(k.startswith(module + ".") for k in state_dict)


def infer_model_args(
    state_dict: Mapping[str, torch.Tensor], fmt: str = "timm", path: str = "<checkpoint>"
) -> dict[str, Any]:
    """``SparseViT`` arguments that a converted (timm-named) state dict determines.

    Args:
        state_dict: output of :func:`.load.read_converted`.
        fmt: its detected layout; ``"sparse-tuning"`` also sets the release's dense connections
            (the patch embedding included in the first stage's sum).
        path: file name for error messages.

    Returns:
        keyword arguments for ``SparseViT``; only what the file shows (e.g. ``num_frames`` and a
        video ``img_size`` are not in it).

    Raises:
        CheckpointError: no ``patch_embed.proj.weight`` or no blocks.
    """
    proj = state_dict.get("patch_embed.proj.weight")
    if proj is None or proj.ndim not in (4, 5):
        raise CheckpointError(f"{path}: cannot build a model from it: no 4-D/5-D 'patch_embed.proj.weight'")
    depth = 1 + max((int(m.group(1)) for k in state_dict if (m := _BLOCK.match(k))), default=-1)
    if depth == 0:
        raise CheckpointError(f"{path}: cannot build a model from it: no 'blocks.N.*' keys")
    dim, in_chans = int(proj.shape[0]), int(proj.shape[1])
    args: dict[str, Any] = {
        "embed_dim": dim,
        "depth": depth,
        "in_chans": in_chans,
        "patch_size": int(proj.shape[-1]),
        "num_heads": HEADS_BY_WIDTH.get(dim, max(dim // 64, 1)),
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
        "init_values": 1e-5 if "blocks.0.ls1.gamma" in state_dict else None,
        "class_token": "cls_token" in state_dict,
    }
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        args["mlp_ratio"] = (fc1.shape[0] + 0.5) / dim  # int(dim * ratio) == fc1 rows despite rounding
    if proj.ndim == 5:
        args["tubelet_size"] = int(proj.shape[2])
    else:
        args["num_frames"] = None
    prefix = 1 if args["class_token"] else 0
    if POS_KEY in state_dict:
        args["pos_embed"] = "learn"
        side = int((state_dict[POS_KEY].shape[1] - prefix) ** 0.5)
        if proj.ndim == 4 and side * side == state_dict[POS_KEY].shape[1] - prefix:
            args["img_size"] = side * args["patch_size"]
    else:
        args["pos_embed"] = "sincos"
    if _has(state_dict, "fc_norm") or (not args["class_token"] and _has(state_dict, "norm")):
        args["global_pool"], args["fc_norm"] = "avg", True  # VideoMAE pre-training: `norm` goes to fc_norm
    else:
        args["global_pool"], args["fc_norm"] = ("token" if args["class_token"] else "avg"), False
    head = state_dict.get("head.weight")
    if head is not None and head.ndim == 2:
        args["num_classes"] = int(head.shape[0])
    args["head_norm"] = "batchnorm" if "head_norm.running_mean" in state_dict else "none"
    down1 = state_dict.get("blocks.0.adapter.down1.weight")
    if down1 is not None:
        args["adapter"], args["adapter_dim"] = "dense", int(down1.shape[0])
    elif "blocks.0.adapter.down_x.weight" in state_dict:
        args["adapter"], args["adapter_dim"] = "dense_paper", int(state_dict["blocks.0.adapter.down_x.weight"].shape[0])
    elif "blocks.0.adapter.down.weight" in state_dict:
        args["adapter"], args["adapter_dim"] = "parallel", int(state_dict["blocks.0.adapter.down.weight"].shape[0])
    if fmt == "sparse-tuning":
        args["dense_include_embedding"] = True
    return args


def create_model_from_checkpoint(
    path: str | os.PathLike, *, strict: bool = True, defaults: Mapping[str, Any] | None = None, **overrides: Any
) -> tuple[torch.nn.Module, LoadReport]:
    """Build the ``SparseViT`` the file describes (:func:`infer_model_args`) and load it.

    Args:
        path: checkpoint file (any format :func:`~video_sparse.checkpoint.load_pretrained` reads).
        strict: as for ``load_pretrained``.
        defaults: ``SparseViT`` arguments under the inferred ones (a registered variant's).
        overrides: ``SparseViT`` arguments that win over the inferred ones (``num_frames``, a video
            ``img_size``, ``num_heads`` for an unusual width, ``keep_rate``, ``num_classes`` for a new
            task ...).

    Returns:
        ``(model, report)``.
    """
    from ..models.vit import SparseViT  # the model package imports this package

    state_dict, fmt, saved_args = read_converted(path)
    kwargs = {**(defaults or {}), **infer_model_args(state_dict, fmt, str(path)), **overrides}
    logger.info("%s: building SparseViT(%s)", path, ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items())))
    model = SparseViT(**kwargs)
    report = LoadReport(path=str(path), format=fmt, args=saved_args)
    load_converted(model, state_dict, report, strict=strict)
    return model, report
