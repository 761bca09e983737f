"""Atomic file writes: a temporary file next to the target, fsynced, then renamed onto it.

This module imports only the standard library, torch and :mod:`video_sparse.safe_files` (standard library
only), so data, engine and checkpoint code may all use :func:`atomic_write` without import cycles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..safe_files import atomic_write

__all__ = ["atomic_save", "atomic_write"]


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through :func:`atomic_write`: a crash never leaves a partial file.

    Returns:
        ``path`` as a ``Path``.
    """
    return atomic_write(path, lambda f: torch.save(obj, f))
