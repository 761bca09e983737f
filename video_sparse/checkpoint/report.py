"""Error type, load report and key listing shared by the checkpoint loaders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: How many keys an error or log message lists before summarising the rest as a count.
MAX_KEYS_SHOWN = 20


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model."""


def format_keys(keys: Sequence[str], limit: int = MAX_KEYS_SHOWN) -> str:
    """Render keys as an indented block, showing at most ``limit`` and a count of the rest."""
    shown = [f"  {k}" for k in list(keys)[:limit]]
    if len(keys) > limit:
        shown.append(f"  ... and {len(keys) - limit} more ({len(keys)} in total)")
    return "\n".join(shown)


@dataclass
class LoadReport:
    """What a checkpoint load did.

    Attributes:
        path: the checkpoint file.
        format: detected layout: ``"npz"`` (Google big_vision / AugReg), ``"timm"``,
            ``"videomae"``, ``"hf-transformers"`` (Hugging Face VideoMAE / ViT), ``"mmaction2"``,
            ``"sparse-tuning"`` (a fine-tuned checkpoint of the paper's release), ``"dinov2-onnx"``
            (weights read out of an ONNX graph) or ``"adapter"`` (an adapter-only
            checkpoint).
        loaded: number of model state-dict entries that received a tensor from the file.
        expected_missing: model keys the file is not supposed to hold (adapters and head for a
            backbone checkpoint; the frozen backbone for an adapter checkpoint).
        missing: model keys that should have been in the file but were not.
        unexpected: file keys (after name conversion) with no place in the model, left out because
            they are not part of the network (a pre-training decoder), were allowed to be dropped
            (``allow_dropped``) or the load was not strict.
        resized: keys whose position table was interpolated to the model's grid.
        dropped: file keys deliberately not loaded (a head of another class count, a fixed
            sin-cos position table the model rebuilds itself).
        folded: file keys merged into another tensor (a BatchNorm head folded into the linear head).
        args: the training arguments saved in the file (plain values), ``{}`` when absent.
    """

    path: str
    format: str
    loaded: int = 0
    expected_missing: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    folded: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for logs, in words: what loaded and what starts fresh or comes from elsewhere, e.g.
        ``backbone.safetensors (timm): backbone: 52 tensors loaded; adapters and head (42 tensors) start
        fresh, as expected``."""
        if self.format == "adapter":
            text = f"adapters and head: {self.loaded} tensors loaded"
            if self.expected_missing:
                text += f"; the frozen backbone ({len(self.expected_missing)} tensors) comes from the backbone weights"
        else:
            text = f"backbone: {self.loaded} tensors loaded"
            if self.expected_missing:
                fresh = _add_on_words(self.expected_missing)
                text += f"; {fresh} ({len(self.expected_missing)} tensors) start fresh, as expected"
        notes = [
            (self.missing, "missing from the file"),
            (self.unexpected, "in the file but left out"),
            (self.resized, "resized to the model's grid"),
            (self.dropped, "not loaded by rule"),
            (self.folded, "folded into the head"),
        ]
        text += "".join(
            f"; {len(keys)} {words} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for keys, words in notes
            if keys
        )
        return f"{self.path} ({self.format}): {text}"


def _add_on_words(keys: Sequence[str]) -> str:
    """``"adapters and head"``, ``"the head"`` or ``"adapters"`` for a list of add-on keys."""
    head = any(k.split(".", 1)[0] in ("head", "head_norm", "fc_norm") for k in keys)
    adapters = any(k.split(".", 1)[0] not in ("head", "head_norm", "fc_norm") for k in keys)
    return "adapters and head" if head and adapters else "the head" if head else "adapters"
