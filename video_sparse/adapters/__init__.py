"""Parameter-efficient adapters and the helpers that decide which parameters train."""
from .dense_adapter import DenseAdapter, PaperDenseAdapter
from .parallel_adapter import ParallelAdapter
from .peft import (count_parameters, is_trainable_by_design, set_trainable_params, trainable_parameter_names,
                   trainable_parameters)

ADAPTERS = {"dense": DenseAdapter, "dense_paper": PaperDenseAdapter, "parallel": ParallelAdapter}

__all__ = ["ADAPTERS", "DenseAdapter", "PaperDenseAdapter", "ParallelAdapter", "count_parameters",
           "is_trainable_by_design", "set_trainable_params", "trainable_parameter_names", "trainable_parameters"]
