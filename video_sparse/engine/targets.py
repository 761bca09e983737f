"""A config file is data, not code: the ``_target_`` names a config may instantiate.

A run's ``config.yaml`` travels (shared runs, downloaded experiments) and is given to ``tools/predict.py``,
``tools/export_onnx.py`` and the Python API. Hydra would build whatever ``_target_`` it names
(``os.system``, ``builtins.eval``, ``torch.load``, ``pickle.loads``, ``builtins.open``), at any depth. So
every ``_target_`` of a config, nested ones included, must be one of :data:`ALLOWED_TARGETS`: the project's
own model, data modules, schedule and DeepSpeed-config builders, and torch's optimizers. None of them
runs code from the config, loads pickles (checkpoints are read with ``weights_only=True``) or opens a file
for writing that the config names. :func:`check_targets` refuses any other target with one line naming
the key, before anything is imported or built; it is called where a config is loaded
(``load_experiment_config``), where the tools start, and again by every ``instantiate_group``.
Interpolations are resolved first (``${oc.decode:...}`` can produce a mapping); the project's own
resolvers (``${repo:...}``, ``${vtab_classes:...}``) compute strings and numbers and do no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError

_DATA_MODULES = ("VideoData", "DemoData", "VTABData", "CIFAR100Data", "SVHNData", "Food101Data")
_OPTIMIZERS = ("AdamW", "Adam", "SGD", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta")

ALLOWED_TARGETS: frozenset[str] = frozenset(
    [
        "video_sparse.models.create_model",
        "video_sparse.models.factory.create_model",
        "video_sparse.engine.builders.build_ds_config",
        "video_sparse.engine.schedules.warmup_cosine_scheduler",
        *(f"video_sparse.data.{name}" for name in _DATA_MODULES),
        *(f"video_sparse.data.datamodules.{name}" for name in _DATA_MODULES),
        *(f"torch.optim.{name}" for name in _OPTIMIZERS),
    ]
)
"""Every ``_target_`` a config may name (exact dotted paths)."""


def _importable(target: str) -> bool:
    """False only for a misspelt name of the package (``video_sparse.data.VidoData``), left to the import's
    own error; anything outside the package is never imported here."""
    if not target.startswith("video_sparse."):
        return True
    from hydra.utils import get_object

    try:
        get_object(target)
    except Exception:  # ImportError, AttributeError, ValueError from Hydra's locate
        return False
    return True


def _walk(node: Any, path: str) -> None:
    if isinstance(node, Mapping):
        if "_target_" in node:
            target = node["_target_"]
            if not isinstance(target, str) or (target not in ALLOWED_TARGETS and _importable(target)):
                key = f"{path}._target_" if path else "_target_"
                raise ConfigError(
                    f"{key}={target!r} is not one of the project's targets (a config is data: only "
                    f"{', '.join(sorted(t for t in ALLOWED_TARGETS if '.datamodules.' not in t))} are built)"
                )
        for key, value in node.items():
            _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]")


def check_targets(node: DictConfig | ListConfig | Mapping[str, Any] | Any, where: str = "") -> None:
    """Refuse a config (or part of one) that names a ``_target_`` outside :data:`ALLOWED_TARGETS`.

    Args:
        node: a config, a plain mapping or list.
        where: the key path of ``node`` in its config, for messages (``"data"``).

    Raises:
        ConfigError: naming the first offending key, e.g. ``data.root._target_='os.system' is not ...``.
            (A ``video_sparse.*`` name that does not exist is left to the import, whose error names it.)
    """
    if OmegaConf.is_config(node):
        _walk(OmegaConf.to_container(node, resolve=False), where)  # before any resolver runs
        try:
            resolved = OmegaConf.to_container(node, resolve=True)
        except OmegaConfBaseException:
            return  # a broken interpolation fails later, naming its key; nothing it names was built
        _walk(resolved, where)
    else:
        _walk(node, where)
