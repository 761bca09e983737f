"""Build a registered model by name, refusing arguments the model does not take.

``create_model(model_name, **kwargs)`` is what a ``model`` config group instantiates
(``_target_: video_sparse.models.create_model``): every key is checked against ``SparseViT``'s
constructor (plus the entry point's own ``pretrained``, ``checkpoint``, ``arch_from_checkpoint``)
before anything is built, so a misspelt key fails at once, named as ``model.<key>``.
"""

from __future__ import annotations

import inspect
from typing import Any

import timm
from timm.models import model_entrypoint

from ..errors import ConfigError
from .vit import SparseViT

#: Arguments of the registered entry points that are not ``SparseViT`` constructor arguments.
ENTRY_POINT_ARGS: tuple[str, ...] = ("pretrained", "checkpoint", "arch_from_checkpoint")


def registered_models() -> list[str]:
    """Names of the models this package registers in timm (``sparse_vit_*``, ``sparse_videomae_*``)."""
    return [name for name in timm.list_models("sparse_*") if model_entrypoint(name).__module__ == SparseViT.__module__]


def _model_arguments() -> list[str]:
    """Keyword arguments :func:`create_model` accepts: ``SparseViT``'s and :data:`ENTRY_POINT_ARGS`."""
    params = list(inspect.signature(SparseViT.__init__).parameters)[1:]
    return params + [name for name in ENTRY_POINT_ARGS if name not in params]


def create_model(model_name: str, **kwargs: Any) -> SparseViT:
    """Build the registered model ``model_name`` with constructor overrides.

    Args:
        model_name: a registered name (:func:`registered_models`), e.g. ``"sparse_videomae_base_patch16_224"``.
        kwargs: ``SparseViT`` arguments overriding the variant's; a None value keeps the variant's
            default, except ``adapter=None``, which means no adapter.

    Raises:
        ConfigError: an unknown ``model_name`` (the registered names are listed) or a key that is
            not an argument of the model (named as ``model.<key>``, the known ones listed).
    """
    names = registered_models()
    if model_name not in names:
        raise ConfigError(f"model.model_name={model_name!r} is not registered; choose one of {names}")
    known = _model_arguments()
    unknown = [key for key in kwargs if key not in known]
    if unknown:
        raise ConfigError(
            f"model.{unknown[0]} is not an argument of {model_name} "
            f"(unknown: {', '.join('model.' + k for k in unknown)}); known: {known}"
        )
    no_adapter = "adapter" in kwargs and kwargs["adapter"] is None
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if no_adapter:
        kwargs["adapter"] = "none"  # timm.create_model drops None values
    return timm.create_model(model_name, **kwargs)
