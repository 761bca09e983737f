"""Build the ``SparseViT`` a checkpoint file describes, never a guess.

Every architecture argument comes from the first of these that knows it:

1. an explicit argument of the caller;
2. the file. Its tensors show the width, depth, MLP width, patch (and tube) size, input channels,
   q/k/v biases, LayerScale, a class token, a learned position table (for images also the input
   size it was trained at) or none (a fixed sin-cos table), ``fc_norm`` (mean pooling), the head's
   class count, a BatchNorm head and trained adapters. Its records show the rest: the ``SparseViT``
   ``model_args`` saved next to the weights, the ``config.json`` beside the file (``transformers``
   VideoMAE / ViT, or a timm Hub config naming its timm architecture), a safetensors ``model``
   entry naming a registered model, the training ``args`` (``num_frames``, ``input_size``,
   ``tubelet_size``, a ``model`` name of a published size). Where the file and the
   named model disagree on a value the file shows, the file's value is used and an INFO line says so;
   a record that contradicts the tensors is an error;
3. the named model (``defaults``: a registered variant's arguments, ``SparseViT``'s defaults under them);
   without one, the model the file itself names (its full saved ``model_args``, or the registered
   model its metadata names), so the Sparse-Tuning settings (keep rate, adapters) are the saver's too;
4. the layout's documented constant: LayerNorm epsilon 1e-6 in timm, VideoMAE, mmaction2 and the
   Sparse-Tuning release (the Hugging Face layout states its own in ``config.json``); without a class
   token a final ``norm`` feeds ``fc_norm`` (VideoMAE's fine-tuning), with one the class token is pooled;
5. otherwise a :class:`CheckpointError` naming the argument: the number of attention heads, and for a
   video file its frame count and input size, are not in the tensors.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .load import (
    POS_KEY,
    Converted,
    check_first_token_classifier,
    is_fixed_sincos_table,
    load_converted,
    read_file,
    sincos_candidates,
)
from .records import file_records, normalised, registered_model_args
from .report import CheckpointError, LoadReport

logger = logging.getLogger(__name__)

#: LayerNorm epsilon each layout's reference code uses (the Hugging Face layout states it in config.json).
LAYOUT_NORM_EPS: dict[str, float] = {
    "timm": 1e-6,
    "videomae": 1e-6,
    "mmaction2": 1e-6,
    "sparse-tuning": 1e-6,
    "npz": 1e-6,
    "dinov2-onnx": 1e-6,
}
_BLOCK = re.compile(r"blocks\.(\d+)\.")


def _has(state_dict: Mapping[str, torch.Tensor], module: str) -> bool:
    return any(k.startswith(module + ".") for k in state_dict)


def infer_model_args(
    state_dict: Mapping[str, torch.Tensor], fmt: str = "timm", path: str = "<checkpoint>"
) -> dict[str, Any]:
    """``SparseViT`` arguments that a converted (timm-named) state dict's tensors prove.

    Args:
        state_dict: output of :func:`.load.read_converted`.
        fmt: its detected layout; ``"sparse-tuning"`` also sets the release's dense connections
            (the patch embedding included in the first stage's sum).
        path: file name for error messages.

    Returns:
        keyword arguments for ``SparseViT``; only what the tensors show: never ``num_heads``,
        ``norm_eps``, a video's ``num_frames`` and ``img_size``, nor a pooling the file leaves open
        (a class token with a final ``norm``), which :func:`resolve_model_args` takes from records,
        the named model or the layout.

    Raises:
        CheckpointError: no ``patch_embed.proj.weight``, no blocks, a non-square patch.
    """
    proj = state_dict.get("patch_embed.proj.weight")
    if proj is None or proj.ndim not in (4, 5):
        raise CheckpointError(f"{path}: cannot build a model from it: no 4-D/5-D 'patch_embed.proj.weight'")
    if proj.shape[-1] != proj.shape[-2]:
        raise CheckpointError(
            f"{path}: patch_embed.proj.weight {tuple(proj.shape)}: non-square patches are not supported"
        )
    depth = 1 + max((int(m.group(1)) for k in state_dict if (m := _BLOCK.match(k))), default=-1)
    if depth == 0:
        raise CheckpointError(f"{path}: cannot build a model from it: no 'blocks.N.*' keys")
    dim = int(proj.shape[0])
    args: dict[str, Any] = {
        "embed_dim": dim,
        "depth": depth,
        "in_chans": int(proj.shape[1]),
        "patch_size": int(proj.shape[-1]),
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
        "class_token": "cls_token" in state_dict,
    }
    # with LayerScale the gammas are loaded, so any init value gives the same network
    args["init_values"] = 1e-5 if "blocks.0.ls1.gamma" in state_dict else None
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        rows = int(fc1.shape[0])  # int(dim * ratio) == rows despite rounding
        args["mlp_ratio"] = rows / dim if rows % dim == 0 else (rows + 0.5) / dim
    if proj.ndim == 5:
        args["tubelet_size"] = int(proj.shape[2])
    else:
        args["num_frames"] = None
    prefix = 1 if args["class_token"] else 0
    table = state_dict.get(POS_KEY)
    if table is None or is_fixed_sincos_table(table, sincos_candidates(table)):
        args["pos_embed"] = "sincos"
    else:
        args["pos_embed"] = "learn"
        side = int((table.shape[1] - prefix) ** 0.5)
        if proj.ndim == 4 and side * side == table.shape[1] - prefix:
            args["img_size"] = side * args["patch_size"]
    if _has(state_dict, "fc_norm"):
        args["global_pool"], args["fc_norm"] = "avg", True
    elif not args["class_token"]:
        args["global_pool"] = "avg"  # pooling a class token needs one
    elif _has(state_dict, "norm"):
        args["fc_norm"] = False  # a final norm and no fc_norm: the saver had none (its pooling stays open)
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


def _same(key: str, a: Any, b: Any, dim: int) -> bool:
    """Whether two values of ``key`` build the same network."""
    if key == "mlp_ratio":
        return int(dim * float(a)) == int(dim * float(b))
    if key == "init_values":
        return (a is None) == (b is None)
    if key == "img_size" and isinstance(a, list | tuple) != isinstance(b, list | tuple):
        a, b = (a if isinstance(a, list | tuple) else (a, a)), (b if isinstance(b, list | tuple) else (b, b))
        return tuple(a) == tuple(b)
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) <= 1e-12 * max(abs(float(a)), 1.0)
    return a == b


def _named_model_args(defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """The named model's full arguments: ``SparseViT``'s defaults under the variant's; ``{}`` when none is named."""
    if defaults is None:
        return {}
    from ..models.vit import SparseViT  # the model package imports this package

    params = inspect.signature(SparseViT.__init__).parameters
    named = {k: p.default for k, p in params.items() if k != "self" and p.default is not inspect.Parameter.empty}
    named.update(defaults)
    return named


def _layout_args(fmt: str, state_dict: Mapping[str, torch.Tensor], shown: Mapping[str, Any]) -> dict[str, Any]:
    """The layout's documented constants for what neither the file nor the named model gives."""
    out: dict[str, Any] = {}
    if fmt in LAYOUT_NORM_EPS:
        out["norm_eps"] = LAYOUT_NORM_EPS[fmt]
    if shown.get("class_token"):
        out["global_pool"], out["fc_norm"] = "token", False
    elif _has(state_dict, "norm"):
        out["fc_norm"] = True  # VideoMAE's fine-tuning: the pre-training encoder's final norm feeds fc_norm
    return out


def resolve_model_args(
    converted: Converted,
    path: str,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``SparseViT`` arguments for the network a file describes (the order in the module docstring).

    Args:
        converted: the file as :func:`.load.read_file` returns it.
        path: file name for messages.
        defaults: the named model's arguments (a registered variant's); None when no model is named.
        overrides: explicit arguments; they win over everything.

    Raises:
        CheckpointError: a record contradicts the tensors, the file's saving network cannot be built
            (first-token pooling), or an argument is known to none of the sources (named).
    """
    overrides = dict(overrides or {})
    state_dict = converted.state_dict
    shown = infer_model_args(state_dict, converted.format, path)
    dim = shown["embed_dim"]
    proven: dict[str, tuple[Any, str]] = {k: (v, "its tensors") for k, v in shown.items()}
    for source, record in file_records(converted, path):
        for key, value in record.items():
            if key not in proven:
                proven[key] = (value, source)
            elif proven[key][1] == "its tensors" and not _same(key, value, proven[key][0], dim):
                raise CheckpointError(
                    f"{path}: {source} says {key}={value!r} but the tensors show {key}={proven[key][0]!r}: "
                    "the record does not describe these weights"
                )
    check_first_token_classifier(state_dict, converted.format, path)

    if defaults is None:  # the file names its own model: its full arguments (keep rate, adapters ...) stand in
        defaults = converted.model_args or registered_model_args(converted.metadata.get("model")) or None
    named = normalised(_named_model_args(defaults))
    kwargs: dict[str, Any] = dict(named)
    for key, (value, source) in proven.items():
        if key in named and not _same(key, value, named[key], dim) and key not in overrides:
            logger.info(
                "%s: the file shows %s=%r (%s), the named model has %r: building the file's",
                path,
                key,
                value,
                source,
                named[key],
            )
        if key in named and _same(key, value, named[key], dim):
            continue  # the same network: keep the named model's spelling (mlp_ratio 48/11, its init_values)
        kwargs[key] = value
    if "depth" in named and named["depth"] != shown["depth"] and "sparse_layers" not in overrides:
        kwargs["sparse_layers"] = None  # the named model's placement is for its own depth
    for key, value in _layout_args(converted.format, state_dict, shown).items():
        kwargs.setdefault(key, value)
    kwargs.update(overrides)
    _check_known(kwargs, shown, path)
    return kwargs


_REQUIRED: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "num_heads": lambda shown: True,
    "norm_eps": lambda shown: True,
    "global_pool": lambda shown: True,
    "num_frames": lambda shown: "tubelet_size" in shown,
    "img_size": lambda shown: "tubelet_size" in shown or shown.get("pos_embed") == "sincos",
}
_WHAT: dict[str, str] = {
    "num_heads": "the number of attention heads is not in the tensors",
    "norm_eps": "the layout does not fix the LayerNorm epsilon",
    "global_pool": "the file has a class token and a final norm: 'token' or 'avg' pooling",
    "num_frames": "a video file (tubes of {t} frames) does not record its frames per clip",
    "img_size": "the file does not record its input size (no learned position table)",
}


def _check_known(kwargs: Mapping[str, Any], shown: Mapping[str, Any], path: str) -> None:
    """An argument required for this file and known to no source is an error naming it."""
    unknown = [k for k, needed in _REQUIRED.items() if needed(shown) and kwargs.get(k) is None]
    if unknown:
        reasons = "; ".join(f"{k}: " + _WHAT[k].format(t=shown.get("tubelet_size")) for k in unknown)
        raise CheckpointError(
            f"{path}: cannot build the file's network without {', '.join(unknown)} ({reasons}); pass "
            + ", ".join(f"{k}=..." for k in unknown)
            + " or name the model it was saved from"
        )


def create_model_from_checkpoint(
    path: str | os.PathLike, *, strict: bool = True, defaults: Mapping[str, Any] | None = None, **overrides: Any
) -> tuple[torch.nn.Module, LoadReport]:
    """Build the ``SparseViT`` the file describes (:func:`resolve_model_args`) and load it.

    Args:
        path: checkpoint file (any format :func:`~video_sparse.checkpoint.load_pretrained` reads).
        strict: as for ``load_pretrained``.
        defaults: the named model's arguments (a registered variant's); values the file does not show
            come from it, values it shows win over it (INFO line).
        overrides: ``SparseViT`` arguments that win over everything (``num_frames``, a video
            ``img_size``, ``num_heads``, ``keep_rate``, ``num_classes`` for a new task ...).

    Returns:
        ``(model, report)``.

    Raises:
        CheckpointError: as :func:`resolve_model_args` and ``load_pretrained``.
    """
    from ..models.vit import SparseViT  # the model package imports this package

    converted = read_file(path)
    kwargs = resolve_model_args(converted, str(path), defaults, overrides)
    logger.info("%s: building SparseViT(%s)", path, ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items())))
    model = SparseViT(**kwargs)
    report = LoadReport(path=str(path), format=converted.format, args=converted.args)
    load_converted(model, converted.state_dict, report, strict=strict)
    return model, report
