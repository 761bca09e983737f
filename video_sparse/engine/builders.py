"""Objects from config groups: each group names its class or function in ``_target_``.

:func:`instantiate_group` checks a group's keys against the signature of its target before anything is
built, so a key nothing reads is an error naming it (``data.strat_index is not an argument of
VideoData``), never silently ignored; Hydra's ``instantiate`` then builds it. The model, the data, the
optimizer, the learning-rate schedule and the DeepSpeed config are all built this way; this module adds
only what joins them (trainable parameters, parameter groups, precision).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..adapters.peft import set_trainable
from ..checkpoint import load_pretrained
from ..errors import ConfigError
from .overrides import did_you_mean
from .schema import RAMP_KEYS
from .targets import check_targets

log = logging.getLogger(__name__)

_SPECIAL = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def _plain(node: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def check_arguments(
    target: Any, keys: list[str], group: str, given: tuple[str, ...] = (), partial: bool = False
) -> None:
    """Refuse keys that are not arguments of ``target`` and required arguments nobody gives.

    Args:
        target: the class or function a group names.
        keys: the group's keys (without ``_target_`` and friends).
        group: the group's config path, for messages (``"data"``, ``"optim.optimizer"``).
        given: arguments the caller passes itself (not expected in the config).
        partial: the caller completes the call later (``_partial_: true``): nothing is required now.

    Raises:
        ConfigError: naming ``group.key``.
    """
    params = _parameters(target)
    name = getattr(target, "__qualname__", str(target))
    if params is None:
        return  # the target checks its own keyword arguments (e.g. create_model)
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(keys) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{group}.{unknown[0]} is not an argument of {name}{did_you_mean(unknown[0], accepted, group)} (unknown: "
            f"{', '.join(group + '.' + k for k in unknown)}; known: {', '.join(accepted)})"
        )
    required = [
        n for n in accepted if params[n].default is inspect.Parameter.empty and n not in keys and n not in given
    ]
    if required and not partial:
        raise ConfigError(f"{group}.{required[0]} must be set (an argument of {name})")


def _parameters(target: Any) -> dict[str, inspect.Parameter] | None:
    """The keyword arguments ``target`` takes; a class whose ``__init__`` passes ``**kwargs`` on adds its
    bases' arguments. None when a function takes ``**kwargs`` (it checks them itself)."""
    if not inspect.isclass(target):
        params = inspect.signature(target).parameters
        return None if any(p.kind is p.VAR_KEYWORD for p in params.values()) else dict(params)
    found: dict[str, inspect.Parameter] = {}
    for cls in target.__mro__:
        if "__init__" not in vars(cls) or cls is object:
            continue
        params = inspect.signature(cls.__init__).parameters
        found.update(
            {
                k: p
                for k, p in params.items()
                if k != "self" and k not in found and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            }
        )
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return found
    return None


def instantiate_group(node: DictConfig | Mapping[str, Any], group: str, **kwargs: Any) -> Any:
    """Build the object a config group names, after :func:`check_arguments`.

    Args:
        node: the group, with ``_target_`` (and ``_partial_: true`` for a callable the caller completes).
        group: its config path, for messages.
        **kwargs: arguments added by the caller (they win over the group's values).

    Raises:
        ConfigError: no ``_target_``, a target outside :data:`~.targets.ALLOWED_TARGETS` (at any depth),
            one that cannot be imported, or a key the target does not take.
    """
    values = _plain(node)
    target_name = values.get("_target_")
    if not target_name:
        raise ConfigError(f"{group} has no _target_ (the class or function it configures)")
    check_targets(values, group)  # nested targets too: Hydra builds every one
    check_targets(kwargs, group)
    try:
        target = get_object(target_name)
    except Exception as err:  # ImportError, AttributeError, ValueError from Hydra's locate
        raise ConfigError(f"{group}._target_={target_name}: cannot be imported ({err})") from None
    keys = [k for k in values if k not in _SPECIAL]
    partial = bool(values.get("_partial_"))
    check_arguments(target, keys, group, tuple(kwargs), partial)
    try:
        return instantiate(values, _convert_="all", **kwargs)
    except InstantiationException as err:  # the target's own error (a ConfigError naming its key) as it is
        if err.__cause__ is not None:
            raise err.__cause__ from None
        raise


def build_model(
    model_cfg: DictConfig | Mapping[str, Any],
    sparsity_cfg: DictConfig | Mapping[str, Any],
    pretrained: str | None = None,
    freeze_backbone: bool | None = None,
) -> nn.Module:
    """The ``model`` group's model with the ``sparsity`` group's settings, trainable parameters marked
    (:func:`~video_sparse.adapters.peft.set_trainable`) and a local backbone checkpoint loaded."""
    sparsity = {k: v for k, v in _plain(sparsity_cfg).items() if k not in RAMP_KEYS}
    model = instantiate_group(model_cfg, "model", **sparsity)
    set_trainable(model, freeze_backbone)
    if pretrained:
        report = load_pretrained(model, pretrained)
        log.info("loaded backbone %s (%s)", pretrained, report.format)
    return model


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups over the trainable parameters only; biases, norms and tables get no decay."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    if not decay and not no_decay:
        raise ConfigError("the model has no trainable parameters: set model.adapter or train.freeze_backbone=false")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    optimizer_cfg: DictConfig | Mapping[str, Any], model: nn.Module, lr: float
) -> torch.optim.Optimizer:
    """The ``optim.optimizer`` group (a partial optimizer class) over :func:`param_groups`."""
    factory = instantiate_group(optimizer_cfg, "optim.optimizer")
    weight_decay = float(_plain(optimizer_cfg).get("weight_decay", 0.0))
    return factory(param_groups(model, weight_decay), lr=lr)


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


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 (or fp16 without bf16 support) on GPU, fp32 on CPU; refuse what cannot run."""
    if precision not in ("auto", *DTYPES):
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


def build_ds_config(
    stage: int,
    config: dict[str, Any] | None = None,
    *,
    micro_batch: int,
    accumulate: int,
    clip_grad: float | None,
    precision: str,
) -> dict[str, Any]:
    """The DeepSpeed config dictionary (the ``deepspeed`` group's target).

    Args:
        stage: ZeRO stage, 0-3.
        config: anything else for DeepSpeed, passed as is (``zero_optimization`` options etc.).
        micro_batch, accumulate, clip_grad, precision: from ``data.batch_size``, ``optim.*`` and the
            resolved ``precision``.

    Raises:
        ConfigError: a stage outside 0-3.
    """
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"deepspeed.stage must be 0, 1, 2 or 3 (ZeRO stage), got {stage!r}")
    config = dict(config or {})
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
    config.setdefault("steps_per_print", 10**9)
    config.setdefault("wall_clock_breakdown", False)
    return config
