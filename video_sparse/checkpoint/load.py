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
* any other shape mismatch raises, naming the key and both shapes; nothing is loaded then.

Keys the model expects but the file lacks are split into *expected missing* (adapters, head,
sparsifier: see :func:`.report.is_add_on_key`) and truly *missing* (backbone) keys; the latter
raise with ``strict=True``. File keys with no place in the model (a pre-training decoder, a
``pre_logits`` layer) are logged once and listed in the report.
"""

from __future__ import annotations

import logging
import math
import os

import torch
from torch import nn

from .convert import convert_npz, convert_torch
from .pos_embed import infer_source_grid, resize_pos_embed_2d, resize_pos_embed_3d
from .readers import read_checkpoint
from .report import HEAD_PREFIX, CheckpointError, LoadReport, format_keys, is_add_on_key

logger = logging.getLogger(__name__)

POS_KEY = "pos_embed"


def _is_head(key: str) -> bool:
    return key.split(".", 1)[0] == HEAD_PREFIX


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
            f"cannot infer the patch grid of the model's {POS_KEY} "
            f"({num_table_tokens} tokens, {prefix} prefix)"
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
        del state_dict[POS_KEY]
        report.dropped.append(POS_KEY)
        logger.info("%s: %s not loaded: the model builds its own (fixed) position table",
                    report.path, POS_KEY)
        return
    src, dst = state_dict[POS_KEY], target[POS_KEY]
    if src.shape == dst.shape or src.ndim != 3 or dst.ndim != 3 or src.shape[-1] != dst.shape[-1]:
        return  # equal, or a mismatch the generic shape check reports
    grid, prefix = model_patch_grid(model, dst.shape[1])
    src_grid = infer_source_grid(src.shape[1] - prefix, grid)
    if src_grid is None:
        raise CheckpointError(
            f"{report.path}: cannot resize {POS_KEY} from {tuple(src.shape)} to {tuple(dst.shape)}: "
            f"{src.shape[1]} rows are not {prefix} prefix rows plus a grid compatible with the model's {grid}"
        )
    if len(grid) == 2:
        state_dict[POS_KEY] = resize_pos_embed_2d(src, src_grid, grid, num_prefix_tokens=prefix,
                                                  antialias=antialias)
    else:
        state_dict[POS_KEY] = resize_pos_embed_3d(src, src_grid, grid, num_prefix_tokens=prefix)
    report.resized.append(POS_KEY)
    logger.info("%s: resized %s from grid %s to %s", report.path, POS_KEY, src_grid, grid)


def _has_module(state_dict: dict[str, torch.Tensor], name: str) -> bool:
    return any(k.startswith(name + ".") for k in state_dict)


def _map_final_norm(state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor], path: str) -> None:
    if (_has_module(state_dict, "norm") and not _has_module(state_dict, "fc_norm")
            and _has_module(target, "fc_norm") and not _has_module(target, "norm")):
        for key in [k for k in state_dict if k.startswith("norm.")]:
            state_dict["fc_" + key] = state_dict.pop(key)
        logger.info("%s: the file's final 'norm' is loaded into the model's 'fc_norm'", path)


def _convert_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    content, container = read_checkpoint(path)
    if container == "npz":
        return convert_npz(content, str(path)), "npz"
    if container == "onnx":
        return content, "dinov2-onnx"
    return convert_torch(content, str(path))


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, strict: bool = True,
                    pos_embed_antialias: bool = False) -> LoadReport:
    """Load a pre-trained backbone into ``model``, detecting the checkpoint format.

    Formats: Google ViT ``.npz`` (original ViT-B/16 ImageNet-21k, AugReg, big_vision), timm state
    dicts (``.pth``/``.pt``/``.bin``/``.safetensors``), VideoMAE pre-train or fine-tune ``.pth``
    (``model``/``module`` wrapper, ``encoder.`` prefix, ``q_bias``/``v_bias``, decoder keys),
    DINOv2 exported to ``.onnx`` (weights read out of the graph; needs the ``onnx`` package).

    Args:
        model: a ViT with timm parameter names (``SparseViT`` or timm ``VisionTransformer``).
        path: checkpoint file.
        strict: raise when backbone keys are missing from the file.
        pos_embed_antialias: low-pass filter an image position table that is shrunk (timm's
            choice); off by default, which reproduces DINOv2's own resizing.

    Returns:
        a :class:`LoadReport`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unsupported extension, unreadable file, a shape mismatch (other than the
            head), or (``strict``) missing backbone keys. The model is unchanged when it raises.
    """
    state_dict, fmt = _convert_file(path)
    report = LoadReport(path=str(path), format=fmt)
    target = model.state_dict()
    _map_final_norm(state_dict, target, report.path)
    _fit_pos_embed(model, state_dict, target, report, pos_embed_antialias)

    head_mismatch = any(
        _is_head(k) and k in target and v.shape != target[k].shape for k, v in state_dict.items()
    )
    to_load: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for key, value in state_dict.items():
        if key not in target:
            report.unexpected.append(key)
        elif head_mismatch and _is_head(key):
            report.dropped.append(key)
        elif value.shape != target[key].shape:
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}")
        else:
            to_load[key] = value
    if mismatched:
        raise CheckpointError(
            f"{report.path}: shape mismatch for {len(mismatched)} key(s):\n{format_keys(mismatched)}"
        )
    if head_mismatch:
        shapes = {k: tuple(state_dict[k].shape) for k in state_dict if _is_head(k)}
        logger.info("%s: head not loaded, its shape differs from the model's: %s", report.path, shapes)

    absent = [k for k in target if k not in to_load]
    report.expected_missing = [k for k in absent if is_add_on_key(k)]
    report.missing = [k for k in absent if not is_add_on_key(k)]
    if report.missing and strict:
        unexpected = ""
        if report.unexpected:
            unexpected = (f"\n{len(report.unexpected)} checkpoint key(s) have no place in the model:\n"
                          f"{format_keys(report.unexpected)}")
        raise CheckpointError(
            f"{report.path} ({fmt}): {len(report.missing)} backbone key(s) of the model are missing "
            f"from the checkpoint:\n{format_keys(report.missing)}{unexpected}"
        )
    if report.missing:
        logger.warning("%s: %d backbone key(s) missing (strict=False):\n%s",
                       report.path, len(report.missing), format_keys(report.missing))
    if report.unexpected:
        logger.info("%s: %d checkpoint key(s) ignored, the model has no place for them:\n%s",
                    report.path, len(report.unexpected), format_keys(report.unexpected))

    model.load_state_dict(to_load, strict=False)
    report.loaded = len(to_load)
    logger.info("%s", report.summary())
    return report
