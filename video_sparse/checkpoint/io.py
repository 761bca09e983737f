"""Atomic checkpoint writes and adapter-only checkpoints.

An adapter-only checkpoint holds what Sparse-Tuning trains — Dense Adapters, the head and any
sparsifier parameters — a few MB for ViT-B instead of the ~330 MB backbone, which is loaded
separately from its pre-trained file.

Which tensors it holds (:func:`adapter_state_dict`): every state-dict entry whose name matches the
add-on rule of :func:`.report.is_add_on_key` (``head.*``, names containing ``adapter`` or
``sparsifier``), plus every parameter that currently has ``requires_grad=True``. The name rule makes
the file independent of when it is written (before or after freezing) and tells the loader which keys
must be there; the ``requires_grad`` part makes sure nothing that was trained is lost, even under
another name. A model whose backbone was never frozen therefore gives a full-size file; a warning
says so.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from .files import TORCH_SUFFIXES, check_path, read_torch
from .report import CheckpointError, LoadReport, format_keys, is_add_on_key

logger = logging.getLogger(__name__)

ADAPTER_FORMAT = "video_sparse.adapter"
ADAPTER_FORMAT_VERSION = 1
_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def _create_sibling_temp(path: Path) -> tuple[int, Path]:
    """Create a new, uniquely named temporary file next to ``path``, mode 0o666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file, then move it onto ``path``; never leaves a partial file.

    The temporary file lives in the same folder (so the final ``os.replace`` is atomic), is flushed
    and fsynced before the rename, gets the permissions of a normally created file (0o666 less the
    umask), and is removed if anything fails, leaving an existing ``path`` untouched. Missing parent
    folders are created.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_sibling_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not possible on every platform / file system
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through :func:`atomic_write`: a crash never leaves a partial file.

    Returns:
        ``path`` as a ``Path``.
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter-only part of ``model``'s state dict (see the module docstring for the rule).

    Returns:
        name -> detached tensor, in state-dict order.
    """
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    out = {k: v.detach() for k, v in model.state_dict().items() if is_add_on_key(k) or k in trainable}
    extra = [k for k in out if not is_add_on_key(k)]
    if extra:
        logger.warning(
            "adapter state dict includes %d trainable tensor(s) outside the adapter/head/sparsifier names "
            "(is the backbone frozen?):\n%s", len(extra), format_keys(extra))
    return out


def _check_plain(obj: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``obj`` can be read back with ``torch.load(weights_only=True)``."""
    if isinstance(obj, _PLAIN_TYPES):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_plain(k, f"{where} key")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple, set)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(obj).__name__}; checkpoints hold only tensors, numbers, strings, None "
        "and lists/tuples/dicts of them (so they load with weights_only=True)"
    )


def save_adapter_checkpoint(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write an adapter-only checkpoint atomically.

    The file is a dict with ``state_dict`` (:func:`adapter_state_dict`), ``model_args`` (the model's
    ``model_args`` attribute, or ``None``), ``extra`` (``extra`` or ``{}``, e.g. epoch and metrics),
    ``format`` and ``format_version``.

    Raises:
        TypeError: ``model_args`` or ``extra`` holds objects that ``weights_only`` loading refuses.
        CheckpointError: ``path`` does not end in one of the torch extensions (``.pth`` ...).
    """
    if Path(path).suffix.lower() not in TORCH_SUFFIXES:
        raise CheckpointError(f"adapter checkpoint {path} must end in one of {', '.join(TORCH_SUFFIXES)}")
    payload = {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "state_dict": adapter_state_dict(model),
        "model_args": getattr(model, "model_args", None),
        "extra": dict(extra or {}),
    }
    _check_plain(payload["model_args"], "model_args")
    _check_plain(payload["extra"], "extra")
    return atomic_save(payload, path)


def load_adapter_checkpoint(model: nn.Module, path: str | os.PathLike) -> LoadReport:
    """Load an adapter-only checkpoint written by :func:`save_adapter_checkpoint` into ``model``.

    Every add-on key of the model (adapters, head, sparsifier) must be in the file; the backbone keys
    are reported as expected missing. File keys the model lacks are an error (nothing trained is
    dropped silently).

    Returns:
        a :class:`LoadReport` with format ``"adapter"``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable file, not an adapter checkpoint, add-on keys missing (named),
            keys with no place in the model (named), or a shape mismatch (named). The model is
            unchanged when it raises.
    """
    p = check_path(path)
    payload = read_torch(p)
    if not isinstance(payload, Mapping) or not isinstance(payload.get("state_dict"), Mapping):
        raise CheckpointError(f"{p}: not an adapter checkpoint (no 'state_dict' entry)")
    if payload.get("format") not in (None, ADAPTER_FORMAT):
        raise CheckpointError(f"{p}: format {payload.get('format')!r}, expected {ADAPTER_FORMAT!r}")
    state_dict = dict(payload["state_dict"])
    report = LoadReport(path=str(p), format="adapter")

    stored_args, model_args = payload.get("model_args"), getattr(model, "model_args", None)
    if isinstance(stored_args, Mapping) and isinstance(model_args, Mapping) and stored_args != model_args:
        keys = sorted(set(stored_args) | set(model_args), key=str)
        diff = {k: (stored_args.get(k, "<unset>"), model_args.get(k, "<unset>")) for k in keys
                if stored_args.get(k, "<unset>") != model_args.get(k, "<unset>")}
        logger.warning("%s: saved with other model settings (saved -> this model): %s", p,
                       ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()))

    target = model.state_dict()
    report.unexpected = [k for k in state_dict if k not in target]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state_dict.items() if k in target and v.shape != target[k].shape
    ]
    if mismatched:
        raise CheckpointError(f"{p}: shape mismatch for {len(mismatched)} key(s):\n{format_keys(mismatched)}")
    report.missing = [k for k in target if is_add_on_key(k) and k not in state_dict]
    if report.missing:
        raise CheckpointError(
            f"{p}: {len(report.missing)} adapter/head key(s) of the model are missing from the "
            f"checkpoint:\n{format_keys(report.missing)}"
        )
    report.expected_missing = [k for k in target if not is_add_on_key(k) and k not in state_dict]
    if report.unexpected:  # trained tensors the model cannot hold: a different network
        raise CheckpointError(
            f"{p}: {len(report.unexpected)} key(s) of the adapter checkpoint have no place in the model (build it "
            f"with the checkpoint's model_args):\n{format_keys(report.unexpected)}"
        )
    to_load = {k: v for k, v in state_dict.items() if k in target}
    model.load_state_dict(to_load, strict=False)
    report.loaded = len(to_load)
    logger.info("%s", report.summary())
    return report
