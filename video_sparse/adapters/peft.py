"""Which parameters train: one naming rule and small functions over parameter names.

The rule (:func:`is_add_on_key`): a parameter or buffer belongs to the add-ons that Sparse-Tuning
trains when one of its dotted name components is ``adapter`` (the adapter of a block) or its first
component is ``head`` / ``head_norm`` (the classifier and its BatchNorm statistics). Everything else is
the pre-trained backbone. The same rule decides what trains (:func:`set_trainable`), which keys a
backbone checkpoint may lack and what an adapter-only checkpoint stores.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..errors import ConfigError

#: Name component of every adapter module (``blocks.{i}.adapter``).
ADAPTER_MODULE = "adapter"
#: First name components of the classifier: the linear head and its optional BatchNorm.
HEAD_MODULES: tuple[str, ...] = ("head", "head_norm")


def is_adapter_key(name: str) -> bool:
    """Whether a parameter, buffer or module name lies inside an adapter (a component is ``adapter``)."""
    return ADAPTER_MODULE in name.split(".")


def is_add_on_key(name: str) -> bool:
    """Whether a state-dict key belongs to the trainable add-ons: an adapter, the head or its BatchNorm.

    These keys are not expected in a pre-trained backbone checkpoint and are exactly what an
    adapter-only checkpoint stores.
    """
    return is_adapter_key(name) or name.split(".", 1)[0] in HEAD_MODULES


def set_trainable_params(model: nn.Module, trainable: Iterable[str]) -> None:
    """Set ``requires_grad`` to True exactly for the named parameters, False for all others.

    Raises:
        KeyError: a name that is not a parameter of ``model``.
    """
    trainable = set(trainable)
    names = {name for name, _ in model.named_parameters()}
    unknown = trainable - names
    if unknown:
        raise KeyError(f"not parameters of the model: {sorted(unknown)[:10]}")
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)


def set_trainable(model: nn.Module, freeze_backbone: bool | None = None) -> None:
    """Choose what trains: the add-ons only (adapters + head) or everything.

    Args:
        model: the network.
        freeze_backbone: True: only adapters and head train (without adapters, a linear probe);
            False: every parameter trains (full fine-tuning); None: frozen whenever the model has
            adapter parameters.

    Raises:
        ConfigError: nothing would train (a frozen model without adapters and head).
    """
    names = [name for name, _ in model.named_parameters()]
    if freeze_backbone is None:
        freeze_backbone = any(is_adapter_key(name) for name in names)
    trainable = [name for name in names if is_add_on_key(name)] if freeze_backbone else names
    if not trainable:
        raise ConfigError(
            "freeze_backbone=true leaves nothing to train: the model has no adapter and no head "
            "(set model.adapter or model.num_classes, or freeze_backbone=false)"
        )
    set_trainable_params(model, trainable)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
