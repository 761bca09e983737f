"""The types of the plain-value config groups, checked after composition (OmegaConf structured configs).

Object groups (``model``, ``data``, ``deepspeed``, ``optim.optimizer``, ``optim.scheduler``) carry a
``_target_`` and are checked against the constructor they name when they are instantiated
(:func:`video_sparse.engine.builders.instantiate_group`). The plain groups below hold values the recipe
reads itself; their yaml files give the defaults, these classes only the names and types, so a key
nothing reads (``+train.eval_evry=2``) or a value of the wrong type (``epochs=abc``) is refused with its
full key before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from ..errors import ConfigError
from .overrides import did_you_mean

# Optional[...] rather than `X | None`: OmegaConf reads the annotations at run time (Python 3.9 compatible)


@dataclass
class TrainSettings:
    freeze_backbone: Optional[bool] = MISSING
    log_every: int = MISSING
    save_every_steps: int = MISSING
    keep_last: int = MISSING
    eval_every: int = MISSING
    max_steps: Optional[int] = MISSING
    max_steps_per_epoch: Optional[int] = MISSING
    exclude_frozen: bool = MISSING
    export_full: bool = MISSING
    compile: Any = MISSING  # false | true | a backend name


@dataclass
class TestSettings:
    enabled: bool = MISSING
    merge: str = MISSING
    batch_size: int = MISSING
    confusion_matrix: bool = MISSING


@dataclass
class OptimSettings:
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    lr: Optional[float] = MISSING
    blr: float = MISSING
    accumulate_steps: int = MISSING
    clip_grad: Optional[float] = MISSING
    label_smoothing: float = MISSING
    mixup: float = MISSING
    cutmix: float = MISSING
    mixup_prob: float = MISSING
    mixup_switch_prob: float = MISSING


@dataclass
class SparsitySettings:
    """Model arguments of token sparsification plus the keep-rate warm-up the recipe applies."""

    keep_rate: float = MISSING
    sparse_layers: Optional[Any] = MISSING
    fuse_token: bool = MISSING
    score: Optional[str] = MISSING
    fused_pool_weight: str = MISSING
    ramp_start_epoch: float = MISSING
    ramp_epochs: float = MISSING


RAMP_KEYS = ("ramp_start_epoch", "ramp_epochs")
"""``sparsity`` keys the recipe reads; every other ``sparsity`` key is a model argument."""


@dataclass
class RunSettings:
    name: str = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    device: str = MISSING
    precision: str = MISSING
    pretrained: Optional[str] = MISSING
    resume: Optional[str] = MISSING
    epochs: int = MISSING
    checkpoint: Optional[str] = None  # tools/test.py only
    train: TrainSettings = field(default_factory=TrainSettings)
    test: TestSettings = field(default_factory=TestSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    sparsity: SparsitySettings = field(default_factory=SparsitySettings)
    model: Any = MISSING
    data: Any = MISSING
    deepspeed: Any = MISSING


def check_config(cfg: DictConfig) -> None:
    """Refuse an unknown key or a value of the wrong type in the plain groups, naming its full key.

    Raises:
        ConfigError: e.g. ``train.eval_evry: not a setting of train (known: ...)``.
    """
    schema = OmegaConf.structured(RunSettings)
    try:
        OmegaConf.merge(schema, cfg)
    except ConfigKeyError as err:
        key = err.full_key or str(err).splitlines()[0]
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(schema, parent) if parent else schema
        keys = sorted(str(k) for k in node) if isinstance(node, DictConfig) else []
        known = ", ".join(keys)
        raise ConfigError(
            f"{key} is not a setting{' of ' + parent if parent else ''}{did_you_mean(name, keys, parent)}"
            f"{f' (known: {known})' if known else ''}"
        ) from None
    except ValidationError as err:
        reason = str(err).splitlines()[0]
        wanted = next((words for name, words in _TYPE_WORDS.items() if reason.endswith(f"converted to {name}")), None)
        raise ConfigError(
            f"{err.full_key}={err.value!r}" + (f" must be {wanted}" if wanted else f": {reason}")
        ) from None


_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}
