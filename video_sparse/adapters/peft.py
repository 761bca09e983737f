"""Which parameters train: small functions over parameter names.

By design only adapters (names containing ``adapter``), the classifier ``head`` and any token
sparsifier parameters (names containing ``sparsifier``) train; the backbone stays frozen.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import nn


def is_trainable_by_design(name: str) -> bool:
    """True for adapter, head and sparsifier parameters."""
    return "adapter" in name or name.startswith("head.") or name == "head" or "sparsifier" in name


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


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of parameters with ``requires_grad``."""
    return [name for name, param in model.named_parameters() if param.requires_grad]


def trainable_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters with ``requires_grad`` (what an optimizer should see)."""
    return (param for param in model.parameters() if param.requires_grad)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
