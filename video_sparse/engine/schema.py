"""The types of the plain-value config groups, checked after composition (OmegaConf structured configs).

Object groups (``model``, ``data``, ``deepspeed``, ``optim.optimizer``, ``optim.scheduler``) carry a
``_target_`` and are checked against the constructor they name when they are instantiated
(:func:`video_sparse.engine.builders.instantiate_group`). The plain groups below hold values the recipe
reads itself; their yaml files give the defaults, these classes only the names and types, so a key
nothing reads (``+train.eval_evry=2``) or a value of the wrong type (``epochs=abc``) is refused with its
full key before anything runs. :data:`RANGES` then checks every numeric setting that must be positive
or lie in a range (plain groups and the numeric keys of the object groups), so ``epochs=0`` or
``data.batch_size=0`` is one line naming the key and the allowed range, never a ``ZeroDivisionError``
mid-run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from ..errors import ConfigError
from .overrides import did_you_mean

log = logging.getLogger(__name__)

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
    """Refuse an unknown key or a value of the wrong type in the plain groups, naming its full key, then a
    number outside its range (:func:`check_ranges`).

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
    check_ranges(cfg)


_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}


class Range(NamedTuple):
    """An allowed numeric range: ``low`` / ``high`` bounds (None: unbounded), open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def holds(self, value: float) -> bool:
        if not math.isfinite(value) or (self.integer and value != int(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"


_POSITIVE_INT = Range(0, None, low_open=True, integer=True)
_COUNT = Range(0, None, integer=True)
_POSITIVE = Range(0, None, low_open=True)
_NON_NEGATIVE = Range(0, None)
_PROBABILITY = Range(0, 1)

RANGES: dict[str, Range] = {
    "epochs": _POSITIVE_INT,
    "train.log_every": _POSITIVE_INT,
    "train.save_every_steps": _COUNT,
    "train.keep_last": _COUNT,
    "train.eval_every": _COUNT,
    "train.max_steps": _POSITIVE_INT,
    "train.max_steps_per_epoch": _POSITIVE_INT,
    "test.batch_size": _POSITIVE_INT,
    "optim.lr": _POSITIVE,
    "optim.blr": _POSITIVE,
    "optim.accumulate_steps": _POSITIVE_INT,
    "optim.clip_grad": _NON_NEGATIVE,
    "optim.label_smoothing": Range(0, 1, high_open=True),
    "optim.mixup": _NON_NEGATIVE,
    "optim.cutmix": _NON_NEGATIVE,
    "optim.mixup_prob": _PROBABILITY,
    "optim.mixup_switch_prob": _PROBABILITY,
    "optim.scheduler.warmup_epochs": _NON_NEGATIVE,
    "optim.scheduler.min_lr": _NON_NEGATIVE,
    "optim.optimizer.weight_decay": _NON_NEGATIVE,
    "sparsity.keep_rate": Range(0, 1, low_open=True),
    "sparsity.ramp_start_epoch": _NON_NEGATIVE,
    "sparsity.ramp_epochs": _NON_NEGATIVE,
    "data.batch_size": _POSITIVE_INT,
    "data.num_workers": _COUNT,
    "data.num_classes": Range(1, None, integer=True),
    "data.num_frames": _POSITIVE_INT,
    "data.frame_interval": _POSITIVE_INT,
    "data.input_size": _POSITIVE_INT,
    "data.short_side_size": _POSITIVE_INT,
    "data.test_num_clips": _POSITIVE_INT,
    "data.test_num_crops": _POSITIVE_INT,
    "data.min_scale": Range(0, 1, low_open=True),
    "data.max_scale": Range(0, 1, low_open=True),
    "data.demo.num_train": _POSITIVE_INT,
    "data.demo.num_val": _POSITIVE_INT,
    "data.demo.num_test": _POSITIVE_INT,
    "data.demo.size": _POSITIVE_INT,
    "model.drop_path_rate": Range(0, 1, high_open=True),
    "model.drop_rate": Range(0, 1, high_open=True),
    "model.adapter_dim": _POSITIVE_INT,
    "model.num_classes": Range(1, None, integer=True),
}
"""Numeric settings and their allowed ranges (``deepspeed.stage`` is checked by its builder). ``null``
passes (where a key may be null its type says so); a key a config does not have, or whose value is an
interpolation (its source key is checked), is skipped."""


def _value(cfg: DictConfig, key: str, follow: bool = True) -> Any:
    """The value at ``key``; with ``follow=False`` None for an interpolation (its source key is checked)."""
    try:
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or name not in node:
            return None
        if not follow and OmegaConf.is_interpolation(node, name):
            return None
        return OmegaConf.select(cfg, key, throw_on_missing=False)
    except Exception:  # an interpolation that does not resolve: reported by the check that resolves it
        return None


def check_ranges(cfg: DictConfig) -> None:
    """Refuse a numeric setting outside its range (:data:`RANGES`), and settings that contradict each other.

    Raises:
        ConfigError: one line, e.g. ``epochs=0 must be an integer > 0``.
    """
    for key, allowed in RANGES.items():
        value = _value(cfg, key, follow=False)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # null, absent, or a type error reported by the type check
        if not allowed.holds(float(value)):
            raise ConfigError(f"{key}={value!r} must be {allowed.describe()}")
    epochs, warmup = _value(cfg, "epochs"), _value(cfg, "optim.scheduler.warmup_epochs")
    if isinstance(epochs, int) and isinstance(warmup, (int, float)) and warmup >= epochs:
        # legal (a short trial run of a long schedule): the rate rises over the whole run and never decays
        log.warning(
            "optim.scheduler.warmup_epochs=%r is not below epochs=%d: the learning rate warms up for the whole "
            "run and never decays",
            warmup,
            epochs,
        )
    low, high = _value(cfg, "data.min_scale"), _value(cfg, "data.max_scale")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
        raise ConfigError(f"data.min_scale={low!r} must not exceed data.max_scale={high!r}")
