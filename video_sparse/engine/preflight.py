"""Before a run starts: resolve paths, fill defaults, fit the workers to the CPUs, check what is cheap.

``tools/train.py`` and ``tools/test.py`` call :func:`prepare_run` on the composed config before any
process group, data generation or model construction, so a wrong class count, a missing list or a
checkpoint that does not fit the model ends the run in seconds with one line naming the setting.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import (
    InterpolationResolutionError,
    InterpolationToMissingValueError,
)

from ..checkpoint.files import check_path, read_torch
from ..data import DemoData
from ..data.lists import load_label_map
from ..errors import ConfigError
from .builders import build_model, build_optimizer, instantiate_group
from .config import REPO_DIR
from .logging_utils import setup_logging
from .schema import check_config

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]
# Input settings a registered model was pre-trained with, by name prefix (longest prefix wins).
MODEL_INPUTS: dict[str, dict[str, Any]] = {
    "sparse_videomae_nano": {"input_size": 64, "num_frames": 16, "mean": HALF, "std": HALF},  # the demo backbone
    "sparse_videomae": {"input_size": 224, "num_frames": 16, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "sparse_vit_small_patch14_dinov2": {"input_size": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "sparse_vit_nano": {"input_size": 64, "mean": HALF, "std": HALF},
    "sparse_vit": {"input_size": 224, "mean": HALF, "std": HALF},  # ViT-B/16 ImageNet-21k
}
INPUT_KEYS = ("input_size", "num_frames", "mean", "std")
_DATA_PATH_KEYS = ("root", "train_list", "val_list", "test_list", "label_map")
# checkpoint model_args key -> data key it comes from
_ARG_TO_DATA = {"img_size": "input_size", "num_frames": "num_frames", "num_classes": "num_classes"}


def resolve_user_path(value: str) -> str:
    """An absolute path for a path given in a config or on the command line.

    ``~`` is expanded; a relative path is taken from the current folder when it exists there, else
    from the repository (``assets/...``, ``data_lists/...``), else from the current folder (to be created).
    """
    path = Path(os.path.expanduser(str(value)))
    if path.is_absolute():
        return str(path)
    if path.exists():
        return str(path.resolve())
    if (REPO_DIR / path).exists():
        return str(REPO_DIR / path)
    return str(path.absolute())


#: What each path setting names, for error messages.
PATH_KINDS = {
    "pretrained": "backbone weights",
    "checkpoint": "trained weights",
    "backbone": "backbone weights",
    "label_map": "label map",
}


def find_file(value: str | os.PathLike, key: str, kind: str | None = None) -> str:
    """:func:`resolve_user_path` for a file that must exist; the one resolver of every tool.

    Args:
        value: the path as the user gave it.
        key: the setting or option that gave it (``pretrained``, ``--checkpoint``), named in the error.
        kind: what the file is (default: from ``PATH_KINDS`` by ``key``).

    Raises:
        FileNotFoundError: ``pretrained=assets/x.safetensors: backbone weights not found (looked in ...)``.
    """
    path = resolve_user_path(str(value))
    if not Path(path).exists():
        kind = kind or PATH_KINDS.get(key.lstrip("-").rsplit(".", 1)[-1], "file")
        where = (
            str(Path(path)) if Path(os.path.expanduser(str(value))).is_absolute() else f"{Path.cwd()} and {REPO_DIR}"
        )
        raise FileNotFoundError(f"{key}={value}: {kind} not found (looked in {where})")
    return path


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as the scheduler sees it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cap_workers(requested: int, processes_per_node: int = 1, cpus: int | None = None) -> int:
    """Data-loader workers per process that fit the CPUs: one core per process stays for the model."""
    per_process = max(1, (cpus or available_cpus()) // max(1, processes_per_node))
    return max(0, min(int(requested), per_process - 1))


def model_inputs(model_name: str) -> dict[str, Any]:
    """The pre-training input settings of ``model_name`` (``MODEL_INPUTS``, longest prefix), or ``{}``."""
    matches = [prefix for prefix in MODEL_INPUTS if model_name.startswith(prefix)]
    return dict(MODEL_INPUTS[max(matches, key=len)]) if matches else {}


def read_checkpoint_settings(path: str) -> dict[str, Any]:
    """Model arguments, saved data settings and head size of a trained-weights file (cheap: one load).

    Returns:
        ``{"model_args": dict | None, "data": dict, "head_classes": int | None}``.
    """
    payload = read_torch(check_path(path))
    if not isinstance(payload, dict):
        return {"model_args": None, "data": {}, "head_classes": None}
    state = payload.get("state_dict", payload.get("module", payload.get("model", payload)))
    head = state.get("head.weight") if isinstance(state, dict) else None
    extra = payload.get("extra") or {}
    return {
        "model_args": payload.get("model_args"),
        "data": dict(extra.get("data") or {}),
        "head_classes": int(head.shape[0]) if head is not None and head.ndim == 2 else None,
    }


def prepare_run(cfg: DictConfig, mode: str) -> None:
    """Complete and check ``cfg`` in place for ``mode`` ("train" or "test").

    Raises:
        ConfigError: a setting that cannot work, with the key to change.
        FileNotFoundError: a file the config names is missing.
    """
    if mode not in ("train", "test"):
        raise ValueError(f"mode must be train or test, got {mode!r}")
    setup_logging(None, int(os.environ.get("RANK", "0")) == 0)  # console only: the folder is not locked yet
    check_config(cfg)  # unknown keys and wrong types in the plain groups
    with open_dict(cfg):
        _resolve_paths(cfg, mode)
        _resolve_data(cfg)
        saved = read_checkpoint_settings(cfg.checkpoint) if mode == "test" else None
        _fill_data_defaults(cfg, saved)
        _cap_loader_workers(cfg)
    if saved is not None:
        _check_checkpoint_fits(cfg, saved)
    _check_objects(cfg)
    _check_lists(cfg, mode)


def _check_objects(cfg: DictConfig) -> None:
    """Every config group builds (the model on the meta device: no memory, no time), so a key or value
    that its class refuses stops the run before data are generated or weights are read."""
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.sparsity, freeze_backbone=cfg.train.freeze_backbone)
    optimizer = build_optimizer(cfg.optim.optimizer, model, lr=1.0)
    instantiate_group(cfg.optim.scheduler, "optim.scheduler")(optimizer, steps_per_epoch=1, epochs=int(cfg.epochs))
    instantiate_group(cfg.deepspeed, "deepspeed")(micro_batch=1, accumulate=1, clip_grad=None, precision="fp32")


def _resolve_data(cfg: DictConfig) -> None:
    """Resolve the data group's interpolations now, so that one that cannot resolve names its key."""
    try:
        OmegaConf.to_container(cfg.data, resolve=True)
    except InterpolationToMissingValueError:
        raise
    except InterpolationResolutionError as err:  # e.g. ${vtab_classes:...} of an unknown task
        key = getattr(err, "full_key", "") or "data"
        raise ConfigError(f"{key}: {str(err).splitlines()[0]}") from err


def _resolve_paths(cfg: DictConfig, mode: str) -> None:
    for key in ("pretrained", "checkpoint") if mode == "test" else ("pretrained",):
        value = cfg.get(key)
        if value not in (None, "", "???"):
            cfg[key] = find_file(value, key)
    # keys(): a DictConfig answers `"root" in cfg.data` with False while the value is ???
    if "root" in cfg.data.keys() and OmegaConf.is_missing(cfg.data, "root"):  # noqa: SIM118
        raise ConfigError(f"data.root must be set (the data folder of {cfg.data.get('_target_')})")
    for key in _DATA_PATH_KEYS:
        if key not in cfg.data.keys() or OmegaConf.is_missing(cfg.data, key):  # noqa: SIM118
            continue
        value = cfg.data[key]
        if isinstance(value, str) and value and resolve_user_path(value) != value:
            cfg.data[key] = resolve_user_path(value)


def _fill_data_defaults(cfg: DictConfig, saved: dict[str, Any] | None) -> None:
    """Null data settings <- the label map (class count) <- the checkpoint under test <- the model's
    pre-training inputs; then every class count two sources give must agree."""
    data = cfg.data
    counts = _class_counts(cfg, saved)
    if "num_classes" in data and data.get("num_classes") is None:
        origin = next((o for o in counts if o != "data.num_classes"), None)
        if origin is None:
            raise ConfigError("data.num_classes is not set and there is no data.label_map to count classes from")
        data.num_classes = counts[origin]
        log.info("data.num_classes=%d (from %s)", data.num_classes, origin)
    sources = []
    if saved is not None:
        from_args = {_ARG_TO_DATA[k]: v for k, v in (saved["model_args"] or {}).items() if k in _ARG_TO_DATA}
        sources.append(("checkpoint", {**from_args, **saved["data"]}))
    sources.append((f"model {cfg.model.model_name}", model_inputs(str(cfg.model.model_name))))
    for key in INPUT_KEYS:
        if key not in data or data.get(key) is not None:
            continue
        for origin, values in sources:
            if values.get(key) is not None:
                data[key] = values[key]
                log.info("data.%s=%s (from the %s)", key, values[key], origin)
                break
    if "short_side_size" in data and data.get("short_side_size") is None:
        data.short_side_size = data.input_size
    missing = [key for key in INPUT_KEYS if key in data and data.get(key) is None]
    if missing:
        raise ConfigError(
            f"set {', '.join('data.' + k for k in missing)}: model {cfg.model.model_name} has no known "
            f"input settings (video_sparse.engine.preflight.MODEL_INPUTS)"
        )


def _class_counts(cfg: DictConfig, saved: dict[str, Any] | None) -> dict[str, int]:
    """The class count of every source that gives one, in the order a null ``data.num_classes`` is
    filled from; raises when two of them differ.

    Sources: ``data.num_classes`` (when set), the label map's names, ``model.num_classes`` (when set
    apart from the data), the head of the checkpoint under test and the class count it was built with.

    Raises:
        ConfigError: two counts differ, naming every source and its count.
    """
    data, counts = cfg.data, {}
    if "num_classes" in data and data.get("num_classes") is not None:
        counts["data.num_classes"] = int(data.num_classes)
    label_map = None if OmegaConf.is_missing(data, "label_map") else data.get("label_map")
    if isinstance(label_map, str) and label_map and (Path(label_map).is_file() or "num_classes" not in counts):
        counts[f"data.label_map={label_map}"] = len(load_label_map(label_map))
    if "num_classes" in cfg.model and not _interpolates(cfg.model, "num_classes"):
        value = cfg.model.get("num_classes")
        if value is not None:
            counts["model.num_classes"] = int(value)
    if saved is not None:
        if saved["head_classes"] is not None:
            counts[f"checkpoint={cfg.checkpoint} (its head)"] = saved["head_classes"]
        built = (saved["model_args"] or {}).get("num_classes")
        if built is not None and saved["head_classes"] is None:
            counts[f"checkpoint={cfg.checkpoint} (model_args)"] = int(built)
    if len(set(counts.values())) > 1:
        listed = "; ".join(f"{origin}: {n}" for origin, n in counts.items())
        raise ConfigError(
            f"the class counts disagree ({listed}); use the labels, data settings and checkpoint of one task"
        )
    return counts


def _interpolates(node: DictConfig, key: str) -> bool:
    """Whether ``node.key`` is an interpolation (e.g. ``${data.num_classes}``), not a value of its own."""
    value = node._get_node(key)
    return value is not None and value._is_interpolation()


def _cap_loader_workers(cfg: DictConfig) -> None:
    requested = int(cfg.data.get("num_workers") or 0)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    capped = cap_workers(requested, per_node)
    if capped < requested:
        log.info(
            "data.num_workers=%d lowered to %d: %d CPU(s) for %d process(es) on this machine",
            requested,
            capped,
            available_cpus(),
            per_node,
        )
        cfg.data.num_workers = capped


def _check_checkpoint_fits(cfg: DictConfig, saved: dict[str, Any]) -> None:
    classes = int(cfg.model.num_classes)
    if saved["head_classes"] is not None and saved["head_classes"] != classes:
        raise ConfigError(
            f"checkpoint={cfg.checkpoint} has a {saved['head_classes']}-class head but "
            f"model.num_classes={classes} (from data.num_classes); test with the data settings "
            f"it was trained with, or set data.num_classes={saved['head_classes']}"
        )
    model = OmegaConf.to_container(cfg.model, resolve=True)
    differing = {}
    for key, value in (saved["model_args"] or {}).items():
        if key in model and model[key] is not None and key != "num_classes" and model[key] != value:
            differing[f"model.{key}"] = (value, model[key])
    for key, value in saved["data"].items():
        if key in cfg.data and cfg.data[key] is not None and _plain(cfg.data[key]) != value:
            differing[f"data.{key}"] = (value, _plain(cfg.data[key]))
    if differing:
        log.warning(
            "%s was trained with different settings: %s",
            cfg.checkpoint,
            "; ".join(f"{k}: trained {a}, now {b}" for k, (a, b) in differing.items()),
        )


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _check_lists(cfg: DictConfig, mode: str) -> None:
    """Every list the run will read exists and its labels fit ``data.num_classes`` (video data)."""
    data = instantiate_group(cfg.data, "data")  # cheap: the constructor checks values, reads nothing
    if not data.is_video or isinstance(data, DemoData):  # the demo's lists are written at setup
        return
    if not Path(data.root).is_dir():
        raise FileNotFoundError(f"data.root={data.root}: folder not found")
    splits = ("test",) if mode == "test" else ("train", "val") + (("test",) if cfg.test.enabled else ())
    counts = data.check_lists(splits, require=True)
    if "train" in counts:
        _fit_batch(cfg, counts["train"])


def _fit_batch(cfg: DictConfig, num_train: int) -> None:
    """A training list shorter than one batch on every process lowers the batch (small own data)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batch = int(cfg.data.batch_size)
    if num_train >= batch * world:
        return
    if num_train < world:
        raise ConfigError(f"data.train_list has {num_train} video(s), fewer than the {world} processes")
    with open_dict(cfg):
        cfg.data.batch_size = num_train // world
    log.info(
        "data.batch_size=%d lowered to %d: the training list has %d videos for %d process(es)",
        batch,
        cfg.data.batch_size,
        num_train,
        world,
    )
