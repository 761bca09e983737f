"""Load a pre-trained backbone checkpoint into a ViT, whatever its published layout.

``load_pretrained`` reads the file (:mod:`.readers`), converts it to timm names
(:mod:`.convert`, :mod:`.onnx_vit`), adapts it to the model and loads it:

* the position table is interpolated when the model's patch grid differs (image size or frame
  count; :mod:`.pos_embed` says how); a table the model does not keep as state (a fixed sin-cos
  table it rebuilds) is dropped;
* a ``head`` whose shape differs from the model's is dropped (fine-tuning to a new class count);
* a file ``norm`` (the per-token LayerNorm ending a pre-training encoder, e.g. VideoMAE's) is loaded
  into ``fc_norm`` when the model pools first and normalises after (``norm`` absent, ``fc_norm``
  present) and the file has no ``fc_norm``. The pre-trained scale and shift are a better start for a
  frozen ``fc_norm`` than the identity, and strict loading of pre-training encoders stays possible;
* a BatchNorm head (``head_norm.*``, the Sparse-Tuning release's ``head.0``) is loaded into the
  model's ``head_norm`` when it has one (``head_norm="batchnorm"``), else folded into the linear head
  (``W' = W / sqrt(var + eps)``, ``b' = b - W' mean``), which gives the same logits in inference;
* any other shape mismatch raises, one line per key naming it, both shapes and the model setting
  that would fit the file (``num_frames``, ``embed_dim``, ``mlp_ratio``, ``patch_size`` ...);
  nothing is loaded then.

Nothing is dropped silently. Keys the model expects but the file lacks are split into *expected
missing* (adapters and head: see :func:`video_sparse.adapters.is_add_on_key`) and truly *missing*
(backbone) keys; the latter raise. File keys with no place in the model raise too, naming them
(LayerScale gammas loaded into a model without LayerScale, a learned position table into a model
with a fixed one, biases, norms ...), except those that are not part of the network the file
describes: a masked-autoencoder decoder (:data:`.convert.PRETRAINING_ONLY`) and, when the head
itself is not loaded, a ``pre_logits`` layer. ``allow_dropped`` (glob patterns) drops more on
purpose; ``strict=False`` accepts every missing and unexpected key with a warning. A file's fixed
sin-cos position table (the same values the model builds) is dropped; any other table in the file
for a model with a fixed table is an error. "The same values" allows for the precision the file
stores them in (:func:`is_fixed_sincos_table`): an fp16 or bf16 copy of the table is still that table.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..adapters.peft import HEAD_MODULES, is_add_on_key
from ..layers import sincos_position_table
from .convert import LAYOUTS, checkpoint_args, convert_npz, convert_torch, is_pretraining_only
from .files import read_checkpoint, read_config_json, read_safetensors_metadata
from .report import CheckpointError, LoadReport, format_keys
from .resize_pos_embed import infer_source_grid, resize_pos_embed_2d, resize_pos_embed_3d

logger = logging.getLogger(__name__)

POS_KEY = "pos_embed"
PATCH_KEY = "patch_embed.proj.weight"
HEAD_NORM_PREFIX = "head_norm."
#: BatchNorm epsilon of the Sparse-Tuning release's head (``BatchNorm1d(..., eps=1e-6)``; not saved in the file).
HEAD_NORM_EPS = 1e-6


def sincos_tolerance(dtype: torch.dtype, num_positions: int) -> float:
    """Largest difference at which a stored table still counts as the fixed sin-cos table.

    The table's values lie in [-1, 1], so storing it in ``dtype`` rounds each by at most half that
    dtype's machine epsilon (fp32 6e-8, fp16 4.9e-4, bf16 3.9e-3); a table computed in float32
    angles (other implementations) adds up to ``num_positions`` float32 epsilons (the angle of
    position p is rounded by about p * eps). The tolerance is the sum of both with a factor 2 of
    headroom on the storage term; a learned table differs from the fixed one by far more.
    """
    storage = torch.finfo(dtype).eps if dtype.is_floating_point else 1.0
    return storage + num_positions * torch.finfo(torch.float32).eps


def is_fixed_sincos_table(table: torch.Tensor, candidates: Sequence[torch.Tensor]) -> bool:
    """Whether ``table`` (1, N, C), as the file stores it, holds the values of one of ``candidates``
    (fixed sin-cos tables, float32) within :func:`sincos_tolerance` of the file's dtype."""
    tol = sincos_tolerance(table.dtype, table.shape[-2] if table.ndim >= 2 else 1)
    return any(
        c.shape == table.shape and bool(((table.float() - c.float()).abs().max() <= tol).item()) for c in candidates
    )


def sincos_candidates(table: torch.Tensor, fixed: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The fixed tables a stored ``pos_embed`` could be: the model's own (``fixed``), and the sin-cos
    table at the file's own length with or without a zero class-token row."""
    candidates = [fixed] if isinstance(fixed, torch.Tensor) else []
    if table.ndim == 3 and table.shape[1] > 0:
        n, c = table.shape[1], table.shape[2]
        candidates.append(sincos_position_table(n, c))
        candidates.append(torch.cat([torch.zeros(1, 1, c), sincos_position_table(n - 1, c)], dim=1))
    return candidates


def _is_head(key: str) -> bool:
    """The linear head or its BatchNorm (dropped together when the class count differs)."""
    return key.split(".", 1)[0] in HEAD_MODULES


def model_patch_grid(model: nn.Module, num_table_tokens: int) -> tuple[tuple[int, ...], int]:
    """The model's patch grid and the number of prefix rows in its position table.

    Uses ``model.patch_embed.grid_size`` ((H, W) or (T, H, W)) when present; otherwise assumes a
    square 2-D grid after ``model.num_prefix_tokens`` (0 when ``no_embed_class``) rows.
    """
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None:
        grid = tuple(int(g) for g in grid)
        prefix = num_table_tokens - math.prod(grid)
        if prefix >= 0:
            return grid, prefix
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 0))
    side = math.isqrt(max(num_table_tokens - prefix, 0))
    if side * side != num_table_tokens - prefix:
        raise CheckpointError(
            f"cannot infer the patch grid of the model's {POS_KEY} ({num_table_tokens} tokens, {prefix} prefix)"
        )
    return (side, side), prefix


def _fit_pos_embed(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    report: LoadReport,
    antialias: bool = False,
) -> None:
    if POS_KEY not in state_dict:
        return
    if POS_KEY not in target:
        src = state_dict[POS_KEY]
        # the model's own table, or the fixed table at the file's own length (another frame count or size)
        if not is_fixed_sincos_table(src, sincos_candidates(src, getattr(model, POS_KEY, None))):
            return  # a learned table: reported as unexpected (it changes the network)
        del state_dict[POS_KEY]
        report.dropped.append(POS_KEY)
        logger.info("%s: %s not loaded: it is the fixed sin-cos table the model builds itself", report.path, POS_KEY)
        return
    src, dst = state_dict[POS_KEY], target[POS_KEY]
    if src.shape == dst.shape or src.ndim != 3 or dst.ndim != 3 or src.shape[-1] != dst.shape[-1]:
        return  # equal, or a mismatch the generic shape check reports
    grid, prefix = model_patch_grid(model, dst.shape[1])
    src_grid = infer_source_grid(src.shape[1] - prefix, grid)
    if src_grid is None:
        raise CheckpointError(
            f"{report.path}: cannot resize {POS_KEY} from {tuple(src.shape)} to {tuple(dst.shape)}: "
            f"{src.shape[1]} rows are not {prefix} prefix rows plus a grid compatible with the model's {grid}; "
            "set img_size, num_frames and class_token to the file's"
        )
    if len(grid) == 2:
        state_dict[POS_KEY] = resize_pos_embed_2d(src, src_grid, grid, num_prefix_tokens=prefix, antialias=antialias)
    else:
        state_dict[POS_KEY] = resize_pos_embed_3d(src, src_grid, grid, num_prefix_tokens=prefix)
    report.resized.append(POS_KEY)
    logger.info("%s: resized %s from grid %s to %s", report.path, POS_KEY, src_grid, grid)


def _has_module(state_dict: dict[str, torch.Tensor], name: str) -> bool:
    return any(k.startswith(name + ".") for k in state_dict)


def _map_final_norm(state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor], path: str) -> None:
    if (
        _has_module(state_dict, "norm")
        and not _has_module(state_dict, "fc_norm")
        and _has_module(target, "fc_norm")
        and not _has_module(target, "norm")
    ):
        for key in [k for k in state_dict if k.startswith("norm.")]:
            state_dict["fc_" + key] = state_dict.pop(key)
        logger.info("%s: the file's final 'norm' is loaded into the model's 'fc_norm'", path)


#: Layouts whose networks, without a class token and with a final ``norm`` instead of ``fc_norm``
#: (``use_mean_pooling=False``), classify the first patch token.
FIRST_TOKEN_LAYOUTS: tuple[str, ...] = ("hf-transformers", "mmaction2")


def check_first_token_classifier(state_dict: Mapping[str, torch.Tensor], fmt: str, path: str) -> None:
    """Refuse a classifier on the first patch token, which ``SparseViT`` cannot build (it pools a class
    token or the mean): a :data:`FIRST_TOKEN_LAYOUTS` file with a head, a final ``norm``, no ``fc_norm``
    and no class token.

    Raises:
        CheckpointError: naming the file, its layout and what to do instead.
    """
    if (
        fmt in FIRST_TOKEN_LAYOUTS
        and "head.weight" in state_dict
        and _has_module(state_dict, "norm")
        and not _has_module(state_dict, "fc_norm")
        and "cls_token" not in state_dict
    ):
        raise CheckpointError(
            f"{path} ({fmt}): the saving network classifies the first patch token after its final norm "
            "(use_mean_pooling=False, no class token), which SparseViT cannot build; load its backbone "
            "into a model with another class count (the head is then not loaded) or drop the head from the file"
        )


def _fold_head_norm(state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor], report: LoadReport) -> None:
    """Fold a file's BatchNorm head (running statistics, no affine) into its linear head when the
    model has no ``head_norm``: ``W' = W / sqrt(var + eps)``, ``b' = b - W' mean`` (exact in inference)."""
    norm_keys = [k for k in state_dict if k.startswith(HEAD_NORM_PREFIX)]
    if not norm_keys or any(k.startswith(HEAD_NORM_PREFIX) for k in target):
        return
    mean, var = state_dict.get(HEAD_NORM_PREFIX + "running_mean"), state_dict.get(HEAD_NORM_PREFIX + "running_var")
    weight, bias = state_dict.get("head.weight"), state_dict.get("head.bias")
    if mean is None or var is None or weight is None or weight.shape[-1] != mean.shape[0]:
        return  # nothing consistent to fold: the keys are reported as unexpected
    inv_std = (var.double() + HEAD_NORM_EPS).rsqrt()
    folded = weight.double() * inv_std
    state_dict["head.weight"] = folded.to(weight.dtype)
    b = bias.double() if bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    state_dict["head.bias"] = (b - folded @ mean.double()).to(weight.dtype)
    for key in norm_keys:
        del state_dict[key]
    report.folded.extend(norm_keys)
    logger.info(
        "%s: BatchNorm head (%s) folded into the linear head (eps %g)", report.path, ", ".join(norm_keys), HEAD_NORM_EPS
    )


@dataclass
class Converted:
    """A checkpoint file read and converted to timm names, with what it records about its network.

    Attributes:
        state_dict: tensors in the model's names.
        format: the detected layout (``npz``, ``dinov2-onnx`` or a :data:`.convert.LAYOUTS` name).
        args: plain values of the training arguments saved in the file (``args``), ``{}`` when absent.
        model_args: the ``SparseViT`` arguments saved next to the weights (``model_args``), or None.
        config: the Hugging Face ``config.json`` next to the file (a dict), or None.
        metadata: a safetensors file's string metadata, ``{}`` otherwise.
    """

    state_dict: dict[str, torch.Tensor]
    format: str
    args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def read_file(path: str | os.PathLike, records: bool = True) -> Converted:
    """Read a checkpoint file, convert it to timm names and collect its records (:class:`Converted`).

    ``records=False`` skips what only building a model from the file needs (``config.json``, the
    safetensors metadata), so that loading into a given model never depends on the files beside it.
    """
    content, container = read_checkpoint(path)
    if container == "npz":
        return Converted(convert_npz(content, str(path)), "npz")
    if container == "onnx":
        return Converted(content, "dinov2-onnx")
    state_dict, fmt = convert_torch(content, str(path))
    stored = content.get("model_args") if isinstance(content, Mapping) else None
    return Converted(
        state_dict,
        fmt,
        checkpoint_args(content),
        dict(stored) if isinstance(stored, Mapping) else None,
        read_config_json(path) if records else None,
        read_safetensors_metadata(path) if records and container == "safetensors" else {},
    )


def read_converted(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """Read a checkpoint file and convert it to timm names.

    Returns:
        ``(state_dict, format, args)``: tensors in the model's names, the detected layout
        (``npz``, ``dinov2-onnx`` or a :data:`.convert.LAYOUTS` name) and the training
        arguments saved in the file (plain values of its ``args`` entry; ``{}`` when absent).
    """
    converted = read_file(path, records=False)
    return converted.state_dict, converted.format, converted.args


_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")


def setting_for_shape(
    key: str,
    file_shape: Sequence[int],
    model_shape: Sequence[int],
    file_dim: int | None = None,
    model_dim: int | None = None,
) -> str:
    """The ``SparseViT`` setting that makes the model's ``key`` take the file's shape (for error messages).

    ``file_dim`` / ``model_dim`` are the embedding widths of the file and the model (rows of their
    ``patch_embed.proj.weight``), when known: a different width explains every other mismatch.
    """
    fs, ms = tuple(file_shape), tuple(model_shape)
    if key == "patch_embed.proj.weight":
        if len(fs) == 5 and len(ms) == 4:
            return f"num_frames (the file is a video model: tubes of {fs[2]} frames, tubelet_size={fs[2]})"
        if len(fs) == 4 and len(ms) == 5:
            return "num_frames=None (the file is an image model)"
        if len(fs) == len(ms):
            for axis, name in ((0, "embed_dim"), (1, "in_chans")):
                if fs[axis] != ms[axis]:
                    return f"{name}={fs[axis]}"
            if len(fs) == 5 and fs[2] != ms[2]:
                return f"tubelet_size={fs[2]}"
            return f"patch_size={fs[-1]}"
    if file_dim is not None and model_dim is not None and file_dim != model_dim:
        return f"embed_dim={file_dim}"
    block = _BLOCK_KEY.fullmatch(key)
    rest = block.group(2) if block else key
    if rest.startswith("adapter."):
        return "adapter and adapter_dim (the file's adapter widths)"
    if rest in ("mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight") and len(fs) == len(ms):
        hidden = fs[1] if rest == "mlp.fc2.weight" else fs[0]
        ratio = f"={hidden / model_dim:g}" if model_dim else ""
        return f"mlp_ratio{ratio} (the file's MLP has {hidden} hidden units)"
    if key.startswith("head."):
        return f"num_classes={fs[0]}" if fs else "num_classes"
    if key.startswith("head_norm."):
        return "head_norm and num_classes"
    if key == POS_KEY:
        return "img_size, num_frames and class_token (the file's token grid)"
    return "the model's size arguments to the file's (embed_dim, mlp_ratio, num_heads)"


def _allowed_unexpected(key: str, head_loaded: bool, allow_dropped: Sequence[str]) -> bool:
    if is_pretraining_only(key) or any(fnmatch.fnmatchcase(key, pattern) for pattern in allow_dropped):
        return True
    # without a head of the file's, its head and pre-logits layer compute nothing in this network
    return not head_loaded and (_is_head(key) or key.replace("/", ".").split(".", 1)[0] == "pre_logits")


#: File keys in timm names that a ``SparseViT`` setting gives a place, with that setting.
_SETTING_FOR_KEY: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"blocks\.\d+\.ls[12]\.gamma"), "the file has LayerScale: build the model with init_values"),
    (re.compile(r"pos_embed"), "the file has a learned position table: build the model with pos_embed='learn'"),
    (re.compile(r"blocks\.\d+\.attn\.qkv\.bias"), "the file has q/k/v biases: build the model with qkv_bias=True"),
    (re.compile(r"cls_token"), "the file has a class token: build the model with class_token=True"),
    (re.compile(r"fc_norm\.\w+"), "the file pools before its final norm: build the model with global_pool='avg'"),
    (re.compile(r"head_norm\.\w+"), "the file has a BatchNorm head: build the model with head_norm='batchnorm'"),
    (
        re.compile(r"blocks\.\d+\.adapter\..+"),
        "the file has adapters: build the model with its adapter, adapter_dim",
    ),
)


def _unexpected_hint(keys: Sequence[str], target: Mapping[str, torch.Tensor], fmt: str) -> str:
    """What the refused file keys show: a setting of the model that has a place for them (the key is a
    timm name of a module the model can build), blocks beyond the model's depth, or names in no layout
    this package converts (the detected layout named)."""
    hints: list[str] = []
    foreign: list[str] = []
    depth = 1 + max((int(m.group(1)) for k in target if (m := _BLOCK_KEY.fullmatch(k))), default=-1)
    for key in keys:
        block = _BLOCK_KEY.fullmatch(key)
        hint = next((h for pattern, h in _SETTING_FOR_KEY if pattern.fullmatch(key)), None)
        if hint is None and block and int(block.group(1)) >= depth and f"blocks.0.{block.group(2)}" in target:
            hint = "the file has more blocks: build the model with its depth"
        if hint is None:
            foreign.append(key)
        elif hint not in hints:
            hints.append(hint)
    if foreign:
        hints.append(
            f"{len(foreign)} key(s) such as {foreign[0]!r} are not parameter names of this model in any setting; "
            f"the file was read as {fmt!r} ({LAYOUTS.get(fmt, fmt)})"
        )
    hints.append(
        "or build it from the file (video_sparse.checkpoint.create_model_from_checkpoint), "
        "or name the keys in allow_dropped to drop them on purpose"
    )
    return "; ".join(hints)


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    strict: bool = True,
    pos_embed_antialias: bool = False,
    allow_dropped: Sequence[str] = (),
) -> LoadReport:
    """Load a pre-trained backbone into ``model``, detecting the checkpoint format.

    Formats: Google ViT ``.npz`` (original ViT-B/16 ImageNet-21k, AugReg, big_vision), timm state
    dicts (``.pth``/``.pt``/``.bin``/``.safetensors``), VideoMAE pre-train or fine-tune ``.pth``
    (``model``/``module`` wrapper, ``encoder.`` prefix, ``q_bias``/``v_bias``, decoder keys; VideoMAE
    V2 alike), fine-tuned checkpoints of the Sparse-Tuning release (``adaptmlp`` adapters, BatchNorm
    head, ``args`` namespace), any of them saved from a ``torch.compile``d model (``_orig_mod.``),
    DINOv2 exported to ``.onnx`` (weights read out of the graph; needs the ``onnx`` package).

    Args:
        model: a ViT with timm parameter names (``SparseViT`` or timm ``VisionTransformer``).
        path: checkpoint file.
        strict: raise when backbone keys are missing from the file or file keys have no place in
            the model; ``False`` loads what fits and warns about the rest.
        pos_embed_antialias: low-pass filter an image position table that is shrunk (timm's
            choice); off by default, which reproduces DINOv2's own resizing.
        allow_dropped: glob patterns (``fnmatch``) of file keys that may be left out on purpose
            (e.g. ``["blocks.*.ls?.gamma"]``); they are listed in ``report.unexpected``.

    Returns:
        a :class:`LoadReport`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unsupported extension, unreadable file, a shape mismatch (other than the
            head), or (``strict``) missing backbone keys or file keys with no place in the model.
            The model is unchanged when it raises.
    """
    state_dict, fmt, args = read_converted(path)
    report = LoadReport(path=str(path), format=fmt, args=args)
    return load_converted(
        model, state_dict, report, strict=strict, pos_embed_antialias=pos_embed_antialias, allow_dropped=allow_dropped
    )


def load_converted(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    report: LoadReport,
    *,
    strict: bool = True,
    pos_embed_antialias: bool = False,
    allow_dropped: Sequence[str] = (),
) -> LoadReport:
    """The second half of :func:`load_pretrained`: fit an already converted state dict to ``model``
    and load it (same rules and errors); fills and returns ``report``."""
    fmt = report.format
    state_dict = dict(state_dict)
    target = model.state_dict()
    head_fits = "head.weight" in target and target["head.weight"].shape == getattr(
        state_dict.get("head.weight"), "shape", None
    )
    if head_fits:
        check_first_token_classifier(state_dict, fmt, report.path)
    _map_final_norm(state_dict, target, report.path)
    _fit_pos_embed(model, state_dict, target, report, pos_embed_antialias)
    _fold_head_norm(state_dict, target, report)

    head_mismatch = any(_is_head(k) and k in target and v.shape != target[k].shape for k, v in state_dict.items())
    to_load: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    file_dim, model_dim = (
        int(sd[PATCH_KEY].shape[0]) if PATCH_KEY in sd and sd[PATCH_KEY].ndim > 1 else None
        for sd in (state_dict, target)
    )
    for key, value in state_dict.items():
        if key not in target:
            report.unexpected.append(key)
        elif head_mismatch and _is_head(key):
            report.dropped.append(key)
        elif value.shape != target[key].shape:
            file_shape, model_shape = tuple(value.shape), tuple(target[key].shape)
            setting = setting_for_shape(key, file_shape, model_shape, file_dim, model_dim)
            mismatched.append(f"{key}: checkpoint {file_shape} vs model {model_shape}; set {setting}")
        else:
            to_load[key] = value
    if mismatched:
        raise CheckpointError(f"{report.path}: shape mismatch for {len(mismatched)} key(s):\n{format_keys(mismatched)}")
    if head_mismatch:
        shapes = {k: tuple(state_dict[k].shape) for k in state_dict if _is_head(k)}
        logger.warning("%s: head not loaded, its shape differs from the model's: %s", report.path, shapes)

    absent = [k for k in target if k not in to_load]
    report.expected_missing = [k for k in absent if is_add_on_key(k)]
    report.missing = [k for k in absent if not is_add_on_key(k)]
    head_loaded = any(_is_head(k) for k in to_load)
    refused = [k for k in report.unexpected if not _allowed_unexpected(k, head_loaded, allow_dropped)]
    if strict and (report.missing or refused):
        parts = []
        if report.missing:
            parts.append(
                f"{len(report.missing)} backbone key(s) of the model are missing from the "
                f"checkpoint:\n{format_keys(report.missing)}"
            )
        if refused:
            parts.append(
                f"{len(refused)} checkpoint key(s) have no place in the model, and leaving them "
                f"out would change the network ({_unexpected_hint(refused, target, fmt)}):\n{format_keys(refused)}"
            )
        raise CheckpointError(f"{report.path} ({fmt}): " + "\n".join(parts))
    if report.missing:
        logger.warning(
            "%s: %d backbone key(s) missing (strict=False):\n%s",
            report.path,
            len(report.missing),
            format_keys(report.missing),
        )
    if refused:
        logger.warning(
            "%s: %d checkpoint key(s) dropped (strict=False), the network differs from the file's:\n%s",
            report.path,
            len(refused),
            format_keys(refused),
        )
    allowed = [k for k in report.unexpected if k not in refused]
    if allowed:
        logger.info(
            "%s: %d checkpoint key(s) not part of this network left out (decoder, pre-logits, allow_dropped):\n%s",
            report.path,
            len(allowed),
            format_keys(allowed),
        )

    model.load_state_dict(to_load, strict=False)
    report.loaded = len(to_load)
    logger.info("%s", report.summary())
    return report
