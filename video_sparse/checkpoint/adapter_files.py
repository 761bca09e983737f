"""Adapter-only checkpoints: write, recognise and load them; load either kind of trained weights.

An adapter-only checkpoint holds what Sparse-Tuning trains — the adapters and the head — a few MB
for ViT-B instead of the ~330 MB backbone, which is loaded separately from its pre-trained file.

Which tensors it holds (:func:`adapter_state_dict`): every state-dict entry whose name matches the
add-on rule of :func:`video_sparse.adapters.is_add_on_key` (adapters, ``head``, ``head_norm``), plus
every parameter that currently has ``requires_grad=True``. The name rule makes the file independent
of when it is written (before or after freezing) and tells the loader which keys must be there; the
``requires_grad`` part makes sure nothing that was trained is lost, even under another name. A model
whose backbone was never frozen therefore gives a full-size file; a warning says so.

The file is a dict marked ``format: "video_sparse.adapter"`` (:func:`is_adapter_checkpoint`). It
embeds ``digest``, a sha256 over its tensors and settings (:func:`~video_sparse.checkpoint.digest.state_digest`):
``torch.load`` does not check the archive's CRCs, so a flipped bit would otherwise load as other
weights; every load recomputes it (:func:`check_digest`) and refuses a file that differs. The full
``model_final.pth`` of training carries the same ``digest`` over its ``model`` and ``model_args``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..adapters.peft import is_add_on_key
from .digest import state_digest
from .files import TORCH_SUFFIXES, check_path, read_torch
from .io import atomic_save
from .report import CheckpointError, LoadReport, format_keys

logger = logging.getLogger(__name__)

ADAPTER_FORMAT = "video_sparse.adapter"
ADAPTER_FORMAT_VERSION = 2  # 2: with ``digest``
#: Top-level keys of a full checkpoint under which the state dict may sit (else the file is the state dict).
FULL_STATE_KEYS: tuple[str, ...] = ("module", "model")
_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def is_adapter_checkpoint(payload: Any) -> bool:
    """Whether a loaded checkpoint is one that :func:`save_adapter_checkpoint` wrote: a dict marked
    ``format == "video_sparse.adapter"`` with a ``state_dict`` mapping."""
    return (
        isinstance(payload, Mapping)
        and payload.get("format") == ADAPTER_FORMAT
        and isinstance(payload.get("state_dict"), Mapping)
    )


DIGEST_KEY = "digest"


def with_digest(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` plus ``digest``: the :func:`state_digest` of every other entry."""
    body = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    return {**body, DIGEST_KEY: state_digest(body)}


def check_digest(payload: Any, path: str | os.PathLike) -> bool:
    """Verify the ``digest`` a file carries; returns False (with a warning) when it carries none.

    Raises:
        CheckpointError: the contents differ from the digest written with them (a damaged file).
    """
    if not isinstance(payload, Mapping) or DIGEST_KEY not in payload:
        logger.warning("%s carries no digest (written by an older version); it cannot be verified", path)
        return False
    body = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    if state_digest(body) != payload[DIGEST_KEY]:
        raise CheckpointError(
            f"{path}: damaged: its contents do not match the digest written with them (a changed byte); "
            "export it again or use another copy"
        )
    return True


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
            "adapter state dict includes %d trainable tensor(s) outside the adapter/head names "
            "(is the backbone frozen?):\n%s",
            len(extra),
            format_keys(extra),
        )
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
    return atomic_save(with_digest(payload), path)


def load_adapter_checkpoint(model: nn.Module, path: str | os.PathLike) -> LoadReport:
    """Load an adapter-only checkpoint written by :func:`save_adapter_checkpoint` into ``model``.

    Every add-on key of the model (adapters, head) must be in the file; the backbone keys
    are reported as expected missing. File keys the model lacks are an error (nothing trained is
    dropped silently).

    Returns:
        a :class:`LoadReport` with format ``"adapter"``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable file, not an adapter checkpoint, contents that differ from the
            embedded digest (damaged), add-on keys missing (named),
            keys with no place in the model (named), or a shape mismatch (named). The model is
            unchanged when it raises.
    """
    p = check_path(path)
    payload = read_torch(p)
    if not is_adapter_checkpoint(payload):
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(
            f"{p}: not an adapter checkpoint (format {found!r}, expected {ADAPTER_FORMAT!r} with a 'state_dict')"
        )
    check_digest(payload, p)
    state_dict = dict(payload["state_dict"])
    report = LoadReport(path=str(p), format="adapter")

    stored_args, model_args = payload.get("model_args"), getattr(model, "model_args", None)
    if isinstance(stored_args, Mapping) and isinstance(model_args, Mapping) and stored_args != model_args:
        keys = sorted(set(stored_args) | set(model_args), key=str)
        diff = {
            k: (stored_args.get(k, "<unset>"), model_args.get(k, "<unset>"))
            for k in keys
            if stored_args.get(k, "<unset>") != model_args.get(k, "<unset>")
        }
        logger.warning(
            "%s: saved with other model settings (saved -> this model): %s",
            p,
            ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()),
        )

    target = model.state_dict()
    report.unexpected = [k for k in state_dict if k not in target]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state_dict.items()
        if k in target and v.shape != target[k].shape
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


def load_trained_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Load trained weights of this model: an adapter-only checkpoint or a full state dict.

    A full file is a state dict, or a dict holding it under ``module`` or ``model`` (the
    ``model_final.pth`` of training); it must match the model key for key.

    Returns:
        ``"adapter"`` or ``"full"``: which kind the file was.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable file, or weights that do not fit the model (named).
    """
    p = check_path(path)
    payload = read_torch(p)
    if is_adapter_checkpoint(payload):
        load_adapter_checkpoint(model, p)
        return "adapter"
    state = payload
    if isinstance(payload, Mapping) and DIGEST_KEY in payload:
        check_digest(payload, p)
    if isinstance(payload, Mapping):
        state = next((payload[k] for k in FULL_STATE_KEYS if isinstance(payload.get(k), Mapping)), payload)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: neither an adapter checkpoint nor a state dict of tensors")
    result = model.load_state_dict(dict(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{p}: does not match the model: missing {result.missing_keys[:10]} "
            f"({len(result.missing_keys)}), unexpected {result.unexpected_keys[:10]} "
            f"({len(result.unexpected_keys)})"
        )
    return "full"
