"""Read checkpoint files into plain mappings without executing pickled code.

Supported containers (by file extension):

* ``.npz``: NumPy archive (Google ViT / AugReg / big_vision JAX releases), read with
  ``allow_pickle=False``;
* ``.pth``, ``.pt``, ``.bin``, ``.ckpt``: ``torch.save`` files, read with
  ``torch.load(map_location="cpu", weights_only=True)``; the one class allowed besides tensors and
  plain containers is ``argparse.Namespace`` (the ``args`` that training scripts save next to the
  weights), whose values go through the same restricted unpickler;
* ``.safetensors``;
* ``.onnx``: a DINOv2 ViT exported to ONNX, its weights read out of the graph into timm names by
  :func:`.onnx_vit.dinov2_state_dict_from_onnx` (needs the ``onnx`` package).

Beside the weights: the Hugging Face ``config.json`` in the same folder (:func:`read_config_json`) and a
safetensors file's string metadata (:func:`read_safetensors_metadata`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .onnx_vit import dinov2_state_dict_from_onnx
from .report import CheckpointError

logger = logging.getLogger(__name__)

NPZ_SUFFIXES: tuple[str, ...] = (".npz",)
TORCH_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES: tuple[str, ...] = (".safetensors",)
ONNX_SUFFIXES: tuple[str, ...] = (".onnx",)
SUPPORTED_SUFFIXES: tuple[str, ...] = NPZ_SUFFIXES + TORCH_SUFFIXES + SAFETENSORS_SUFFIXES + ONNX_SUFFIXES
#: Classes the restricted unpickler may rebuild besides tensors and plain containers.
SAFE_CLASSES: list[type] = [argparse.Namespace]
_TORCH_LOAD = torch.load  # the real loader, also while engine.safe_load guards torch.load


def check_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a ``Path`` after checking that it is an existing regular file.

    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointError: the path is a directory or has an unsupported extension.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, expected a file: {p}")
    if p.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise CheckpointError(
            f"unsupported checkpoint extension {p.suffix!r} for {p}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return p


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` archive (no pickles)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"cannot read NumPy checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} holds a single array, not a .npz archive of named arrays")
    try:
        with archive:
            return {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise CheckpointError(f"cannot read NumPy checkpoint {path}: {type(e).__name__}: {e}") from e


def read_torch(path: str | os.PathLike, allowed: Sequence[type] = SAFE_CLASSES, map_location: Any = "cpu") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``; never runs code from the file.

    Args:
        path: the file.
        allowed: classes allowed besides tensors and plain containers (default ``argparse.Namespace``,
            rebuilt as an attribute bag, nothing called; its values are restricted the same way).
        map_location: as for ``torch.load``.

    Raises:
        CheckpointError: the file holds any other object type (nothing of it is executed), or is
            unreadable; the message names the file.
    """
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return _TORCH_LOAD(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).splitlines()
        detail = next(
            (line.strip() for line in lines if "GLOBAL" in line or "Unsupported" in line),
            f"{e.__class__.__name__}: {lines[0] if lines else ''}",
        )
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors, plain containers and the allowed "
            f"types ({', '.join(c.__qualname__ for c in allowed) or 'none'}), which would require executing "
            f"pickled code ({detail})"
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"cannot read torch checkpoint {path}: {type(e).__name__}: {e}") from e


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file onto the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot read safetensors checkpoint {path}: {type(e).__name__}: {e}") from e


#: The architecture file a Hugging Face repository keeps next to ``model.safetensors`` / ``pytorch_model.bin``.
CONFIG_JSON = "config.json"


def read_config_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``config.json`` in the weights file's folder, as a dict; None when there is none.

    Raises:
        CheckpointError: the file exists but is not a JSON object (the message names it and the line).
    """
    config_path = Path(path).parent / CONFIG_JSON
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {config_path}: {type(e).__name__}: {e}") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_path}:{e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object, found {type(config).__name__}")
    return config


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """A ``.safetensors`` file's string metadata (``{}`` when it has none)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot read safetensors checkpoint {path}: {type(e).__name__}: {e}") from e


def read_checkpoint(path: str | os.PathLike) -> tuple[Any, str]:
    """Read a checkpoint file.

    Args:
        path: file with one of :data:`SUPPORTED_SUFFIXES`.

    Returns:
        ``(content, container)`` where ``container`` is ``"npz"``, ``"torch"``, ``"safetensors"`` or
        ``"onnx"``; ``content`` is a dict of arrays (npz), whatever the torch file holds (torch), or
        a dict of tensors (safetensors; onnx, already in timm names).

    Raises:
        FileNotFoundError: missing path.
        CheckpointError: unsupported extension or unreadable / corrupt file (the message names it).
        ModuleNotFoundError: an ``.onnx`` file without the ``onnx`` package installed.
    """
    p = check_path(path)
    suffix = p.suffix.lower()
    if suffix in NPZ_SUFFIXES:
        return read_npz(p), "npz"
    if suffix in SAFETENSORS_SUFFIXES:
        return read_safetensors(p), "safetensors"
    if suffix in ONNX_SUFFIXES:
        return dinov2_state_dict_from_onnx(p), "onnx"
    return read_torch(p), "torch"
