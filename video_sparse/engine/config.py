"""Where the configs live and how configuration mistakes reach the user."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_DIR / "configs"

log = logging.getLogger(__name__)


def vtab_classes(task: str) -> int:
    """Class count of a VTAB-1K task (the ``${vtab_classes:...}`` config resolver)."""
    from ..data.vtab import VTAB_TASKS

    if task not in VTAB_TASKS:
        raise ValueError(f"data.task={task!r} is not a VTAB-1K task ({', '.join(sorted(VTAB_TASKS))}); "
                         f"for another folder set data.num_classes explicitly")
    return int(VTAB_TASKS[task][0])


def repo_path(relative: str = "") -> str:
    """Absolute path of ``relative`` inside the repository (the ``${repo:...}`` config resolver)."""
    return str(REPO_DIR / relative)


def register_resolvers() -> None:
    """Make ``${vtab_classes:task}`` and ``${repo:path}`` available to configs (idempotent)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("vtab_classes", vtab_classes, replace=True)
    OmegaConf.register_new_resolver("repo", repo_path, replace=True)


register_resolvers()


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The option names of a config group (its yaml files)."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def exit_on_user_error(task: Callable[..., None]) -> Callable[..., None]:
    """Wrap a Hydra task: a configuration, data or checkpoint mistake prints one clear line and exits 2.

    (Hydra itself reports unknown groups, options and keys, listing the valid options.)
    """
    import functools

    @functools.wraps(task)
    def wrapper(*args, **kwargs):
        from omegaconf.errors import (
            InterpolationToMissingValueError,
            MissingMandatoryValue,
        )

        from ..checkpoint import CheckpointError
        from ..errors import ConfigError

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
        except (ConfigError, CheckpointError, FileNotFoundError) as err:
            logging.getLogger("video_sparse").error("%s", err)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
