"""Build the model, datasets, optimizer and DeepSpeed config from plain config dictionaries.

Everything here takes resolved plain values (``OmegaConf.to_container(cfg, resolve=True)``), so the
library never depends on Hydra; only the recipe and the tools see a ``DictConfig``.
"""
from __future__ import annotations

import logging
from typing import Any

import timm
import torch
from torch import nn
from torch.utils.data import Dataset

import video_sparse  # noqa: F401  (registers the models)
from video_sparse.errors import ConfigError

log = logging.getLogger(__name__)

VIDEO_KEYS = ("layout", "backend", "label_map", "sampling", "num_frames", "frame_interval", "input_size",
              "short_side_size", "mean", "std", "hflip", "randaugment", "min_scale", "max_scale",
              "filename_tmpl", "start_index", "num_classes")
IMAGE_KINDS = ("vtab", "cifar100", "svhn", "food101")
DATA_KINDS = ("video", "demo") + IMAGE_KINDS
_READ_BY_ALL = ("kind", "root", "num_classes", "input_size", "mean", "std", "batch_size", "num_workers")
_VIDEO_DATA_KEYS = _READ_BY_ALL + VIDEO_KEYS + ("train_list", "val_list", "test_list", "test_num_clips",
                                                "test_num_crops")
DATA_KEYS = {"video": _VIDEO_DATA_KEYS, "demo": _VIDEO_DATA_KEYS + ("demo",),
             "vtab": _READ_BY_ALL + ("task", "train_split", "val_split"),
             "cifar100": _READ_BY_ALL, "svhn": _READ_BY_ALL, "food101": _READ_BY_ALL}
"""The ``data`` keys something reads, per ``data.kind``; any other key is a configuration error."""
SPLITS = ("train", "val", "test")


def build_model(model_cfg: dict[str, Any], sparsity_cfg: dict[str, Any], pretrained: str | None = None) -> nn.Module:
    """Create the registered model with its sparsity settings; load a local backbone checkpoint."""
    model_cfg = dict(model_cfg)
    name = model_cfg.pop("name")
    extra = model_cfg.pop("extra", None) or {}
    sparsity = {k: v for k, v in sparsity_cfg.items() if not k.startswith("ramp_")}
    kwargs = {k: v for k, v in {**model_cfg, **sparsity, **extra}.items() if v is not None}
    if "adapter" in model_cfg and model_cfg["adapter"] is None:
        kwargs["adapter"] = "none"
    try:
        model = timm.create_model(name, **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            names = [n for n in timm.list_models("sparse_*")]
            raise ConfigError(f"model.name={name!r} is not registered; choose one of {names}") from err
        raise
    if pretrained:
        from ..checkpoint import load_pretrained
        report = load_pretrained(model, pretrained)
        log.info("loaded backbone %s (%s)", pretrained, report.format if hasattr(report, "format") else "")
    return model


def _require(data_cfg: dict[str, Any], key: str) -> Any:
    value = data_cfg.get(key)
    if value in (None, "", "???"):
        raise ConfigError(f"data.{key} must be set for data.kind={data_cfg.get('kind')!r}")
    return value


def check_data_keys(data_cfg: dict[str, Any]) -> None:
    """Refuse a ``data`` key that nothing reads (e.g. ``+data.strat_index=0``), naming it.

    Raises:
        ConfigError: unknown ``data.kind``, or keys outside :data:`DATA_KEYS` for that kind.
    """
    kind = data_cfg.get("kind")
    if kind not in DATA_KEYS:
        raise ConfigError(f"data.kind={kind!r} is not one of {list(DATA_KEYS)}")
    unknown = sorted(set(data_cfg) - set(DATA_KEYS[kind]))
    if unknown:
        raise ConfigError(f"data.{unknown[0]} is not read by anything for data.kind={kind!r} "
                          f"(unknown: {', '.join('data.' + k for k in unknown)}); known keys: "
                          f"{', '.join(sorted(DATA_KEYS[kind]))}")


def data_module(data_cfg: dict[str, Any]) -> Any:
    """The data module (``video_sparse.data.datamodules``) that ``data.kind`` names, built from the other keys."""
    from ..data import datamodules

    check_data_keys(data_cfg)
    classes = {"video": datamodules.VideoData, "demo": datamodules.DemoData, "vtab": datamodules.VTABData,
               "cifar100": datamodules.CIFAR100Data, "svhn": datamodules.SVHNData,
               "food101": datamodules.Food101Data}
    _require(data_cfg, "root")
    kwargs = {"num_classes": None, **{k: v for k, v in data_cfg.items() if k != "kind"}}
    return classes[data_cfg["kind"]](**kwargs)


def check_lists(data_cfg: dict[str, Any], splits: tuple[str, ...] = SPLITS,
                require: bool = False) -> dict[str, int]:
    """Parse every split's list file up front (video data), so that a malformed line or a label
    ``>= data.num_classes`` stops the run before any model is built or any pass runs
    (:meth:`VideoData.check_lists <video_sparse.data.datamodules.VideoData.check_lists>`).

    Returns:
        Videos per checked split (``{}`` for data without list files, and for the demo set).

    Raises:
        ConfigError: naming ``list_file:line`` (and ``data.num_classes`` for a label out of range).
        FileNotFoundError: with ``require``, a list file that is unset or missing, naming its key.
    """
    if data_cfg.get("kind") != "video":
        return {}
    return data_module(data_cfg).check_lists(splits, require=require)


def build_dataset(data_cfg: dict[str, Any], split: str) -> Dataset:
    """Dataset for ``split`` ("train", "val" or "test") as ``data_cfg`` describes it."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    return data_module(data_cfg).dataset(split)


def prepare_data(data_cfg: dict[str, Any], is_main: bool) -> None:
    """Check the data keys, write generated data (the demo set) once, on rank 0, before any rank
    reads it, then check every list on every rank (:func:`check_lists`)."""
    from .distributed import barrier

    data_module(data_cfg).prepare(is_main)
    barrier()
    check_lists(data_cfg)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups over the trainable parameters only; biases, norms and tables get no decay."""
    skip = getattr(model, "no_weight_decay", lambda: set())()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    if not decay and not no_decay:
        raise ConfigError("the model has no trainable parameters: set an adapter or freeze_backbone=false")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def compile_backend(setting: bool | str | None) -> str | None:
    """The ``torch.compile`` backend that ``train.compile`` names: None when off, ``inductor`` for true.

    Raises:
        ConfigError: for a name that is not a registered backend.
    """
    if setting is None or setting is False:
        return None
    if setting is True:
        return "inductor"
    backends = torch._dynamo.list_backends(exclude_tags=())
    if isinstance(setting, str) and setting in backends:
        return setting
    raise ConfigError(f"train.compile={setting!r}: expected true, false or a torch.compile backend {backends}")


def compile_model(model: nn.Module, backend: str) -> None:
    """Compile ``model`` in place (``nn.Module.compile``: state-dict keys unchanged) with dynamic shapes.

    Dynamic shapes make the token counts and the keep rate symbols, so dynamo captures a keep-rate
    ramp as one dense and one sparse graph; AOT backends (inductor) still specialise on the keep rate
    where it becomes a token count, i.e. recompile per keep rate.
    """
    model.compile(backend=backend, dynamic=True)
    log.info("torch.compile: backend %s, dynamic shapes", backend)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 (or fp16 without bf16 support) on GPU, fp32 on CPU; refuse what cannot run."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if device.type == "cpu":
        if precision not in ("auto", "fp32"):
            raise ConfigError(f"precision={precision} cannot run on the CPU; use precision=fp32 (or auto)")
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision=bf16 is not supported by this GPU; use precision=fp16")
    return precision


def build_ds_config(ds_cfg: dict[str, Any], micro_batch: int, accumulate: int, clip_grad: float | None,
                    precision: str) -> dict[str, Any]:
    """The DeepSpeed config dictionary: the ``deepspeed`` group plus batch, clipping and precision."""
    stage = ds_cfg.get("stage")
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"deepspeed.stage must be 0, 1, 2 or 3 (ZeRO stage), got {stage!r}")
    config = dict(ds_cfg.get("config") or {})
    zero = dict(config.get("zero_optimization") or {})
    zero["stage"] = stage
    config.update(
        train_micro_batch_size_per_gpu=int(micro_batch),
        gradient_accumulation_steps=int(accumulate),
        gradient_clipping=float(clip_grad or 0.0),
        zero_optimization=zero,
        bf16={"enabled": precision == "bf16"},
        fp16={"enabled": precision == "fp16", "initial_scale_power": 16},
    )
    config.setdefault("steps_per_print", 10 ** 9)
    config.setdefault("wall_clock_breakdown", False)
    return config
