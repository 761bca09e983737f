"""Checksums that prove a checkpoint is the one that was written.

``torch.load`` does not check the CRCs of its zip archive, so a flipped bit in a tensor's bytes loads
silently as other weights. Two kinds of proof:

* :func:`manifest` / :func:`check_manifest`: the sha256 and size of every file of a folder (training
  checkpoints; the manifest lives in the folder's ``meta.json``).
* :func:`state_digest`: a sha256 over the names, dtypes, shapes and bytes of a state dict's tensors
  and any plain values, embedded in a single file (the exported ``adapter.pth`` / ``model_final.pth``),
  so it travels with the file when it is copied alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{relative posix path: {"sha256": hex, "size": bytes}}`` of every file under ``folder``.

    Args:
        exclude: relative paths left out (the file that will hold the manifest).
    """
    folder = Path(folder)
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in exclude:
            out[rel] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    return out


def check_manifest(folder: str | os.PathLike, files: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Compare the files of ``folder`` with a :func:`manifest`; returns the first difference, None if equal.

    A missing file, a size or a sha256 that differs is a difference; files the manifest does not list
    are ignored.
    """
    folder = Path(folder)
    for rel, want in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        size = path.stat().st_size
        if size != int(want["size"]):
            return f"{rel} has {size} bytes, {want['size']} were written"
        if file_sha256(path) != want["sha256"]:
            return f"{rel} does not match its sha256 (damaged)"
    return None


def json_digest(record: Mapping[str, Any]) -> str:
    """Hex sha256 of a JSON-able mapping in canonical form (sorted keys, no spaces)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _update(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for key in sorted(obj, key=str):
            h.update(repr(key).encode())
            _update(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _update(h, item)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def state_digest(obj: Any) -> str:
    """Hex sha256 of a nest of dicts, lists, tensors and plain values (tensor bytes, dtypes and shapes
    included; dict keys in sorted order, so it does not depend on insertion order)."""
    h = hashlib.sha256()
    _update(h, obj)
    return h.hexdigest()
