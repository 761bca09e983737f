"""Where the configs live and how configuration mistakes reach the user."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from ..errors import ConfigError
from ..safe_files import write_text

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


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The config ``tools/train.py`` (``config_name="train"``) or ``tools/test.py`` (``"test"``) would run
    with these Hydra overrides, for tools that run the recipe in-process."""
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
