"""Read DeepSpeed checkpoints without unpickling arbitrary objects.

DeepSpeed's checkpoint engine reads ``mp_rank_*_model_states.pt`` and the ZeRO optimizer files with
``torch.load(weights_only=False)``: a planted file whose pickle has a ``__reduce__`` payload would run
that payload at resume. :func:`weights_only_loading` makes every ``torch.load`` DeepSpeed does while
it is active read with ``weights_only=True``, allowing only tensors, plain containers and the few
DeepSpeed types its own files really hold (:data:`DEEPSPEED_SAFE_TYPES`, found with
``torch.serialization.get_unsafe_globals_in_checkpoint`` on ZeRO 0-3 checkpoints). Anything else is
refused with a :class:`~video_sparse.checkpoint.report.CheckpointError` naming the file and the type.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch

from ..checkpoint.files import read_torch

log = logging.getLogger(__name__)

DEEPSPEED_SAFE_TYPES: tuple[str, ...] = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",  # ZeRO 1-3 optimizer files (static scale)
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",  # the same with fp16 dynamic loss scaling
    "deepspeed.runtime.zero.config.ZeroStageEnum",  # ZeRO 1-3 optimizer files
    "deepspeed.utils.tensor_fragment.fragment_address",  # ZeRO 1-2 parameter slice mappings
)

_torch_load = torch.load  # the real loader, put back when the guard ends


def allowed_globals() -> list[type]:
    """The classes of :data:`DEEPSPEED_SAFE_TYPES` this DeepSpeed version has (missing ones are skipped)."""
    found = []
    for dotted in DEEPSPEED_SAFE_TYPES:
        module, name = dotted.rsplit(".", 1)
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            log.debug("%s is not in this DeepSpeed version", dotted)
    return found


def safe_torch_load(path: str | os.PathLike, map_location: Any = None) -> Any:
    """:func:`~video_sparse.checkpoint.files.read_torch` allowing the DeepSpeed types of
    :data:`DEEPSPEED_SAFE_TYPES` (and no others).

    Raises:
        CheckpointError: the file holds any other object type (nothing of it is executed), or is
            unreadable; the message names the file.
    """
    return read_torch(path, allowed_globals(), map_location=map_location)


def _guarded_load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
    """Stands in for ``torch.load`` under :func:`weights_only_loading`; ignores ``weights_only=False``."""
    return safe_torch_load(f, map_location=map_location)


class _SafeCheckpointEngine:
    """Wraps a DeepSpeed checkpoint engine; only ``load`` changes (weights-only reads)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def load(self, path: str, map_location: Any = None) -> Any:
        return safe_torch_load(path, map_location=map_location)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def weights_only_loading(engine: Any) -> Iterator[None]:
    """While active, ``engine``'s checkpoint engine and every ``torch.load`` call read weights only.

    Both are restored on exit, also when loading fails.
    """
    inner = getattr(engine, "checkpoint_engine", None)
    if inner is not None:
        engine.checkpoint_engine = _SafeCheckpointEngine(inner)
    torch.load = _guarded_load
    try:
        yield
    finally:
        torch.load = _torch_load
        if inner is not None:
            engine.checkpoint_engine = inner
