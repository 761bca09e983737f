"""Command-line overrides as a user types them: paths with ``~`` or spaces, and typos with a suggestion.

Hydra's override grammar rejects ``~`` and most punctuation in an unquoted value, and the shell does not
expand ``~`` after ``=`` (``data.root=~/my_clips`` reaches Python as typed). :func:`quote_path_overrides`
expands ``~`` and quotes the value of every path setting before Hydra parses it, so
``data.root=~/my_clips``, ``data.root=/data/my clips`` (one shell word) and ``pretrained=../w (1).pth``
all work. :func:`explain_override_error` turns Hydra's "use +key" advice for a mistyped key into
"did you mean ..." (``difflib`` close matches among the keys and groups at that level).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

#: Last components of the keys whose values are file or folder paths.
PATH_KEYS = frozenset(
    {"root", "train_list", "val_list", "test_list", "label_map", "pretrained", "checkpoint", "output_dir", "dir"}
)
#: Keys that take a path or a keyword (left as typed when they hold the keyword).
_PATH_OR_KEYWORD = {"resume": {"auto"}}
_NOT_A_PATH = {"", "null", "???"}
_OVERRIDE = re.compile(r"^(?P<prefix>\+{0,2})(?P<key>[A-Za-z_][\w.]*)=(?P<value>.*)$", re.DOTALL)


def _quote(value: str) -> str:
    """``value`` as a single-quoted Hydra string (backslashes and quotes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_path_override(text: str) -> str:
    """One override with a path value made safe for Hydra; any other text is returned unchanged.

    ``data.root=~/my clips`` -> ``data.root='/home/me/my clips'``. A value that is already quoted, holds an
    interpolation (``${...}``), a sweep (``a,b`` under ``--multirun`` is left alone only when quoted) or a
    keyword (``null``, ``resume=auto``) is left as typed.
    """
    match = _OVERRIDE.match(text)
    if match is None:
        return text
    key, value = match["key"], match["value"]
    leaf = key.rsplit(".", 1)[-1]
    if leaf not in PATH_KEYS and leaf not in _PATH_OR_KEYWORD:
        return text
    if value in _NOT_A_PATH or value in _PATH_OR_KEYWORD.get(leaf, ()) or "${" in value or value[:1] in "'\"":
        return text
    return f"{match['prefix']}{key}={_quote(os.path.expanduser(value))}"


def quote_path_overrides(overrides: Iterable[str]) -> list[str]:
    """:func:`quote_path_override` applied to each override (options such as ``--cfg`` pass through)."""
    return [quote_path_override(o) for o in overrides]


def _failing_override(message: str, overrides: Sequence[str]) -> tuple[int, str] | None:
    """The index and key of the override Hydra's ``message`` is about (``'data/custm'``, ``'data.batchsize'``)."""
    parsed = []
    for index, text in enumerate(overrides):
        match = _OVERRIDE.match(text) or re.match(r"^(?P<prefix>~?)(?P<key>[A-Za-z_][\w.]*)", text)
        if match is not None:
            parsed.append((index, match["key"], match.groupdict().get("value") or ""))
    for index, key, value in parsed:  # a group option first: 'data' also appears in "options in 'data'"
        if value and f"'{key.replace('.', '/')}/{value}'" in message:
            return index, key
    for index, key, _ in parsed:
        if f"'{key}'" in message:
            return index, key
    return None


def _close(word: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(set(options)), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, options: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean PREFIX.OPTION?"`` for the option closest to ``word`` (difflib), else ``""``."""
    close = _close(word, options)
    return f"; did you mean {prefix + '.' if prefix else ''}{close}?" if close else ""


def explain_override_error(message: str, overrides: Sequence[str], config_name: str, config_dir: Path) -> str | None:
    """A one-line "did you mean" for a mistyped key, group or option, or None when nothing is close.

    Args:
        message: Hydra's error text.
        overrides: the overrides that produced it.
        config_name: ``"train"`` or ``"test"``.
        config_dir: the configs folder (its sub-folders are the groups).

    Returns:
        e.g. ``"data.batchsize is not a setting; did you mean data.batch_size? (a new key: +data.batchsize=...)"``.
    """
    from .config import compose_raw, group_options

    found = _failing_override(message, overrides)
    if found is None:
        return None
    index, key = found
    groups = [p.name for p in config_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]
    value = overrides[index].split("=", 1)[1] if "=" in overrides[index] else ""
    if "Could not find" in message and key in groups:  # data=custm
        options = group_options(key, config_dir)
        option = _close(value, options)
        return (
            f"{key}={value} is not an option of {key}"
            + (f"; did you mean {key}={option}?" if option else "")
            + f" (Available options in '{key}': {', '.join(options)})"
        )
    rest = [o for i, o in enumerate(overrides) if i != index]
    try:
        cfg = compose_raw(rest, config_name)
    except Exception:  # noqa: BLE001 - another override is wrong too: Hydra's own message stands
        return None
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return None
    options = [str(k) for k in node] + (groups if not parent else [])
    suggestion = _close(leaf, options)
    if suggestion is None:
        return f"{key} is not a setting (to add a new key: +{key}={value})"
    full = f"{parent}.{suggestion}" if parent else suggestion
    return f"{key} is not a setting; did you mean {full}? (to add a new key: +{key}={value})"
