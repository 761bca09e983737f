"""What a checkpoint file records about its network besides its tensors, as ``SparseViT`` arguments.

Records, most authoritative first (:func:`file_records`): the ``SparseViT`` ``model_args`` saved with
the weights (or as JSON in safetensors metadata); the ``config.json`` beside the file, either a
Hugging Face ``transformers`` VideoMAE / ViT config or a timm Hub config naming its timm architecture;
a safetensors ``model`` entry naming a registered model; the training ``args`` (``num_frames``,
``input_size``, ``tubelet_size``) and a published size in their ``model`` name (``vit_base``: 12 heads
when the width is 768). Only :data:`BACKBONE_ARGS` are read from them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import torch

from .load import Converted
from .report import CheckpointError

logger = logging.getLogger(__name__)

#: ``SparseViT`` arguments that fix the backbone's arithmetic; records in a file are read for these only.
BACKBONE_ARGS: tuple[str, ...] = (
    "img_size",
    "patch_size",
    "in_chans",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "num_frames",
    "tubelet_size",
    "class_token",
    "pos_embed",
    "global_pool",
    "fc_norm",
    "init_values",
    "norm_eps",
)
#: Published ViT sizes a model name can state (``vit_base_patch16_224``): size -> (width, heads).
PUBLISHED_SIZES: dict[str, tuple[int, int]] = {
    "tiny": (192, 3),
    "small": (384, 6),
    "base": (768, 12),
    "large": (1024, 16),
    "huge": (1280, 16),
    "giant": (1408, 16),
}
#: Hugging Face model types whose config.json is read, and its keys -> ``SparseViT`` arguments.
HF_MODEL_TYPES: tuple[str, ...] = ("videomae", "vit")
_HF_CONFIG_KEYS: dict[str, str] = {
    "hidden_size": "embed_dim",
    "num_hidden_layers": "depth",
    "num_attention_heads": "num_heads",
    "image_size": "img_size",
    "patch_size": "patch_size",
    "num_channels": "in_chans",
    "tubelet_size": "tubelet_size",
    "num_frames": "num_frames",
    "qkv_bias": "qkv_bias",
    "layer_norm_eps": "norm_eps",
}
#: Training ``args`` entries (VideoMAE, the Sparse-Tuning release) -> ``SparseViT`` arguments.
_TRAINING_ARGS: dict[str, str] = {"num_frames": "num_frames", "input_size": "img_size", "tubelet_size": "tubelet_size"}


def _hf_config_args(config: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``SparseViT`` arguments a Hugging Face VideoMAE / ViT ``config.json`` states."""
    where = f"{path}: config.json"
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{where}: hidden_act={config['hidden_act']!r}; SparseViT computes exact GELU only")
    out: dict[str, Any] = {}
    for key, name in _HF_CONFIG_KEYS.items():
        if key in config:
            value = config[key]
            if isinstance(value, list | tuple):
                if len(set(value)) != 1:
                    raise CheckpointError(f"{where}: {key}={value}: SparseViT supports square sizes only")
                value = value[0]
            out[name] = value
    if "intermediate_size" in config and "hidden_size" in config:
        out["mlp_ratio"] = (config["intermediate_size"] + 0.5) / config["hidden_size"]
    if config.get("model_type") == "videomae":
        mean_pooling = bool(config.get("use_mean_pooling", True))
        out.update(class_token=False, pos_embed="sincos", global_pool="avg", fc_norm=mean_pooling, init_values=None)
    else:
        out.update(class_token=True, pos_embed="learn", global_pool="token", fc_norm=False, num_frames=None)
    return out


def _timm_config_args(config: Mapping[str, Any], path: str) -> dict[str, Any]:
    """What a timm Hub ``config.json`` (``architecture``: a timm model name) states beyond the tensors:
    that model's heads, LayerNorm epsilon and pooling (built on the meta device, no weights)."""
    import timm

    name = str(config["architecture"])
    if not timm.is_model(name.split(".", 1)[0]):
        logger.info("%s: config.json names %r, which timm does not know: not read", path, name)
        return {}
    with torch.device("meta"):
        model = timm.create_model(name.split(".", 1)[0], pretrained=False)
    blocks = getattr(model, "blocks", None)
    attn = getattr(blocks[0], "attn", None) if blocks is not None and len(blocks) else None
    norm = getattr(blocks[0], "norm1", None) if blocks is not None and len(blocks) else None
    out: dict[str, Any] = {}
    if attn is not None and hasattr(attn, "num_heads"):
        out["num_heads"] = int(attn.num_heads)
    if isinstance(norm, torch.nn.LayerNorm):
        out["norm_eps"] = float(norm.eps)
    pool = config.get("global_pool", getattr(model, "global_pool", None))
    if pool in ("token", "avg"):
        out["global_pool"] = pool
    return out


def _name_args(name: Any, dim: int) -> dict[str, Any]:
    """``num_heads`` a model name states by a published size whose width is the file's (``vit_base``: 12)."""
    if not isinstance(name, str):
        return {}
    for size, (width, heads) in PUBLISHED_SIZES.items():
        if re.search(rf"(?:^|[-_/]){size}(?:[-_]|$)", name) and width == dim:
            return {"num_heads": heads}
    return {}


def registered_model_args(name: Any) -> dict[str, Any]:
    """The arguments of a registered model a file names (``model`` metadata), or ``{}``."""
    import timm

    from ..models.factory import registered_models

    if not isinstance(name, str) or name not in registered_models():
        return {}
    with torch.device("meta"):  # arguments only: no memory, no initialisation work
        return dict(timm.create_model(name, adapter="none").model_args)


def file_records(converted: Converted, path: str) -> list[tuple[str, dict[str, Any]]]:
    """The file's records of its network, most authoritative first, as ``(source, SparseViT args)``.

    Sources: ``model_args`` saved with the weights (or as JSON in safetensors metadata), the
    constructor arguments a ``config.json`` lists (:data:`LISTED_ARG_KEYS`), a Hugging Face
    ``config.json`` of a supported model type or a timm Hub one, a safetensors ``model`` entry naming a registered
    model, the training ``args`` and a published size in their ``model`` name. Only
    :data:`BACKBONE_ARGS` are kept.
    """
    records: list[tuple[str, dict[str, Any]]] = []
    stored = converted.model_args
    if stored is None and "model_args" in converted.metadata:
        try:
            stored = json.loads(converted.metadata["model_args"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: metadata 'model_args' is not JSON: {e.msg}") from e
    if isinstance(stored, Mapping):
        records.append(("the saved model_args", dict(stored)))
    config = converted.config
    listed = _listed_config_args(config)
    if listed:
        records.append(("config.json's constructor arguments", listed))
    if config is not None and config.get("model_type") in HF_MODEL_TYPES:
        records.append(("config.json", _hf_config_args(config, path)))
    elif config is not None and isinstance(config.get("architecture"), str):
        records.append((f"config.json (timm {config['architecture']!r})", _timm_config_args(config, path)))
    elif config is not None and not listed:
        logger.info(
            "%s: config.json (model_type %r) not read: not a VideoMAE / ViT config", path, config.get("model_type")
        )
    named = registered_model_args(converted.metadata.get("model"))
    if named:
        records.append((f"the registered model {converted.metadata['model']!r} the file names", named))
    training = {
        name: converted.args[key] for key, name in _TRAINING_ARGS.items() if converted.args.get(key) is not None
    }
    if training:
        records.append(("the saved training args", training))
    proj = converted.state_dict.get("patch_embed.proj.weight")
    if proj is not None:
        for source in (converted.args.get("model"), converted.metadata.get("model")):
            heads = _name_args(source, int(proj.shape[0]))
            if heads:
                records.append((f"the model name {source!r}", heads))
    return [(source, normalised({k: v for k, v in args.items() if k in BACKBONE_ARGS})) for source, args in records]


#: Where a config.json lists the model's constructor arguments (timm Hub ``model_args``, VideoMAE V2's
#: Hub repositories ``model_config``), and their names that differ from ``SparseViT``'s.
LISTED_ARG_KEYS: tuple[str, ...] = ("model_args", "model_config")
_LISTED_RENAMES: dict[str, str] = {"embed_dims": "embed_dim", "in_channels": "in_chans", "input_size": "img_size"}


def _listed_config_args(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``SparseViT`` arguments a config.json lists under :data:`LISTED_ARG_KEYS` in ``SparseViT`` / timm /
    VideoMAE names (``use_mean_pooling`` -> mean pooling with ``fc_norm`` or a final ``norm``;
    ``init_values`` 0 -> no LayerScale)."""
    listed = next((config[k] for k in LISTED_ARG_KEYS if isinstance((config or {}).get(k), Mapping)), None)
    if listed is None:
        return {}
    out = {_LISTED_RENAMES.get(k, k): v for k, v in listed.items()}
    if "use_mean_pooling" in out:
        out["global_pool"], out["fc_norm"] = "avg", bool(out.pop("use_mean_pooling"))
    if "init_values" in out and not out["init_values"]:
        out["init_values"] = None
    return {k: v for k, v in out.items() if k in BACKBONE_ARGS}


def normalised(args: dict[str, Any]) -> dict[str, Any]:
    """``fc_norm=None`` (``SparseViT``'s "after mean pooling") as the boolean it stands for."""
    if "fc_norm" in args and args["fc_norm"] is None and "global_pool" in args:
        args["fc_norm"] = args["global_pool"] == "avg"
    elif "fc_norm" in args and args["fc_norm"] is None:
        del args["fc_norm"]
    return args
