"""Atomic file writes: a temporary file next to the target, fsynced, then renamed onto it.

This module imports only the standard library, torch and :mod:`video_sparse.safe_files` (standard library
only), so data, engine and checkpoint code may all use :func:`atomic_write` without import cycles.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..safe_files import ensure_dir


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
    folders are created. A symbolic link at ``path`` is replaced, never written through; a parent
    folder that is a link is refused (:func:`video_sparse.safe_files.ensure_dir`).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    ensure_dir(path.parent)
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
