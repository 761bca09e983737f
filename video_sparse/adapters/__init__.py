"""Parameter-efficient adapters and the helpers that decide which parameters train."""

from .dense_adapter import DenseAdapter, PaperDenseAdapter
from .parallel_adapter import ParallelAdapter
from .peft import (
    count_parameters,
    is_adapter_key,
    is_add_on_key,
    set_trainable,
    set_trainable_params,
)

ADAPTERS = {"dense": DenseAdapter, "dense_paper": PaperDenseAdapter, "parallel": ParallelAdapter}

__all__ = [
    "ADAPTERS",
    "DenseAdapter",
    "PaperDenseAdapter",
    "ParallelAdapter",
    "count_parameters",
    "is_adapter_key",
    "is_add_on_key",
    "set_trainable",
    "set_trainable_params",
]
