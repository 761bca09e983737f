"""Where the configs live and how configuration mistakes reach the user."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from ..errors import ConfigError
from ..safe_files import write_text
from .overrides import explain_override_error, quote_path_overrides

REPO_DIR = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_DIR / "configs"

log = logging.getLogger(__name__)


def vtab_classes(task: str) -> int:
    """Class count of a VTAB-1K task (the ``${vtab_classes:...}`` config resolver)."""
    from ..data.vtab import VTAB_TASKS

    if task not in VTAB_TASKS:
        raise ValueError(
            f"data.task={task!r} is not a VTAB-1K task ({', '.join(sorted(VTAB_TASKS))}); "
            f"for another folder set data.num_classes explicitly"
        )
    return int(VTAB_TASKS[task][0])


def repo_path(relative: str = "") -> str:
    """Absolute path of ``relative`` inside the repository (the ``${repo:...}`` config resolver)."""
    return str(REPO_DIR / relative)


def register_resolvers() -> None:
    """Make ``${vtab_classes:task}`` and ``${repo:path}`` available to configs (idempotent)."""
    OmegaConf.register_new_resolver("vtab_classes", vtab_classes, replace=True)
    OmegaConf.register_new_resolver("repo", repo_path, replace=True)


register_resolvers()


def compose_raw(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Hydra's composition of ``config_name`` with ``overrides`` as given (Hydra's own errors)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def save_run_config(output_dir: str | Path, cfg: DictConfig, name: str = "config.yaml") -> None:
    """Write the resolved config to ``<output_dir>/<name>`` and, under Hydra, what Hydra would keep in
    ``<output_dir>/.hydra/`` (``config.yaml`` as composed, ``hydra.yaml``, ``overrides.yaml``).

    Hydra's own copy is off (``hydra.output_subdir: null`` in ``configs/train.yaml``): it would be written
    before the run holds its folder's lock, and through links. Call this after
    :func:`~video_sparse.engine.run_lock.lock_run_folder`; every file goes through
    :func:`~video_sparse.safe_files.write_text` (atomic, never through a link).
    """
    from hydra.core.hydra_config import HydraConfig

    output_dir = Path(output_dir)
    write_text(output_dir / name, OmegaConf.to_yaml(cfg, resolve=True))
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    files = {
        "config.yaml": OmegaConf.to_yaml(cfg),
        "hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})),
        "overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
    }
    for file, text in files.items():
        write_text(output_dir / ".hydra" / file, text)


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The config ``tools/train.py`` (``config_name="train"``) or ``tools/test.py`` (``"test"``) would run
    with these Hydra overrides, for tools that run the recipe in-process.

    Path values may hold ``~`` and spaces (:func:`~video_sparse.engine.overrides.quote_path_overrides`).

    Raises:
        ConfigError: an override Hydra refuses, in one line, with "did you mean" for a mistyped key.
    """
    overrides = quote_path_overrides(overrides)
    try:
        return compose_raw(overrides, config_name)
    except HydraException as err:
        raise ConfigError(override_error_line(err, overrides, config_name)) from err


def override_error_line(err: Exception, overrides: Sequence[str], config_name: str) -> str:
    """One line for an override Hydra refused: a "did you mean" when a key, group or option is close,
    else Hydra's message on one line."""
    message = str(err)
    explained = explain_override_error(message, overrides, config_name, CONFIG_DIR)
    return explained or "; ".join(line.strip() for line in message.splitlines() if line.strip())


# Hydra options that change what is composed or run: the early check leaves such a command to Hydra.
_HYDRA_MODE_OPTIONS = ("-m", "--multirun", "-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")
_HYDRA_HELP_OPTIONS = ("-h", "--help", "--hydra-help", "-i", "--info", "--version", "--shell-completion", "-sc")
_HYDRA_VALUE_OPTIONS = ("-c", "--cfg", "-p", "--package")


def prepare_hydra_argv(config_name: str, argv: list[str] | None = None) -> None:
    """Make ``sys.argv`` (or ``argv``, in place) ready for ``@hydra.main`` and check its overrides.

    Path values are quoted (``~`` expanded, spaces kept); then the overrides are composed once, so a
    mistyped key ends the command with one line (``error: data.batchsize is not a setting; did you mean
    data.batch_size? ...``, exit status 2) instead of Hydra's advice to add it with ``+``.
    """
    argv = sys.argv if argv is None else argv
    argv[1:] = quote_path_overrides(argv[1:])
    if any(a in _HYDRA_MODE_OPTIONS + _HYDRA_HELP_OPTIONS or a.startswith("--config") for a in argv[1:]):
        return
    overrides, skip = [], False
    for arg in argv[1:]:
        if skip or arg in _HYDRA_VALUE_OPTIONS:
            skip = not skip
            continue
        if arg.startswith("-") or arg.startswith(("hydra.", "hydra/", "+hydra", "++hydra")):
            continue
        overrides.append(arg)
    try:
        compose_raw(overrides, config_name)
    except HydraException as err:
        print(f"error: {override_error_line(err, overrides, config_name)}", file=sys.stderr)
        sys.exit(2)


def parse_with_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> tuple[argparse.Namespace, list[str]]:
    """The one way tools that run an experiment take its settings: their own options, then ``--`` and
    Hydra overrides (``-- optim.lr=1e-3 data.root=/d``), which Hydra parses when it composes.

    Returns:
        The parsed options and the overrides (empty without ``--``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser.usage = parser.format_usage().removeprefix("usage: ").rstrip() + " [-- KEY=VALUE ...]"
    return parser.parse_args(argv[:split]), argv[split + 1 :]


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The option names of a config group (its yaml files)."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def exit_on_user_error(task: Callable[..., None]) -> Callable[..., None]:
    """Wrap a Hydra task: a configuration, data or checkpoint mistake prints one clear line and exits 2.

    (Hydra itself reports unknown groups, options and keys, listing the valid options.)
    """

    @functools.wraps(task)
    def wrapper(*args, **kwargs):

        from ..checkpoint import CheckpointError

        try:
            return task(*args, **kwargs)
        except MissingMandatoryValue as err:
            key = getattr(err, "full_key", "") or str(err).splitlines()[0]
            logging.getLogger("video_sparse").error("%s must be set", key)
            print(f"error: {key} must be set (add {key}=... to the command)", file=sys.stderr)
            sys.exit(2)
        except InterpolationToMissingValueError as err:
            reason = str(err).splitlines()[0]
            logging.getLogger("video_sparse").error("%s: %s", err.full_key, reason)
            print(f"error: {err.full_key}: {reason}", file=sys.stderr)
            sys.exit(2)
        except (ConfigError, CheckpointError, FileNotFoundError, ConfigCompositionException) as err:
            logging.getLogger("video_sparse").error("%s", err)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
