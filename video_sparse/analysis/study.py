"""The method study: which methods run, in which regime, with what settings.

``tools/study.py`` trains every member of a grid through the training recipe
(:class:`~video_sparse.engine.finetune.FinetuneRecipe`, DeepSpeed included) on the same data for the
same epochs, and measures per member: test top-1 with a 95% interval, GMACs per image, trainable
parameters, training seconds per epoch (data loading included), training peak memory and inference
images/s. The study lives in five modules:

- this one: the grid, the learning-rate families, the regimes, the interval and the time estimate;
- :mod:`~video_sparse.analysis.study_member`: one member trained, tested and measured;
- :mod:`~video_sparse.analysis.study_run`: the data, the plan and the loop over members;
- :mod:`~video_sparse.analysis.study_report`: the tables, the claim check and the plots;
- :mod:`~video_sparse.analysis.study_seeds`: several seeds of the same regime summarised.

The grid (``image_grid``): linear probe (head only), full fine-tuning, AdaptFormer-style parallel
adapters, Dense Adapters at keep 1.0, EViT-style token sparsification with the head only,
Sparse-Tuning at keep 0.5 ... 0.9, the paper-figure Dense Adapter (``dense_paper``) at keep 0.7, and
Sparse-Tuning at keep 0.7 configured as the released code does (patch embedding in the first stage
sum, ``BatchNorm1d(dim, affine=False)`` before the head). Each member is a list of Hydra overrides
on top of the study's experiment, so any member can be rerun alone with ``tools/train.py``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

#: Learning rates per family (AdamW, the study's batch size); ``head`` for head-only methods.
LR_FAMILIES: dict[str, float] = {"head": 5.0e-3, "adapter": 1.0e-3, "full": 1.0e-4}
SPARSE_KEEP_RATES = (0.5, 0.6, 0.7, 0.8, 0.9)
#: Keep rates of the test-time curve (one model trained at 0.7, evaluated without retraining).
CURVE_KEEP_RATES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: The experiment each task's members start from (``configs/experiment/``).
EXPERIMENTS = {"image": "study_fashion_mnist", "video": "study_video"}


class Regime(NamedTuple):
    """Input side (px), epochs, training images (video: clips), test images (None: the whole test
    set) and batch size of a study run."""

    resolution: int
    epochs: int
    train_images: int
    test_images: int | None
    batch_size: int


#: The full study's regime per task (the CPU regime of STUDY.md), and the quick one (tests).
FULL_REGIMES = {"image": Regime(84, 4, 1000, None, 32), "video": Regime(64, 5, 480, 96, 16)}
QUICK_REGIMES = {"image": Regime(28, 1, 40, 40, 8), "video": Regime(32, 1, 16, 8, 4)}


@dataclass(frozen=True)
class Member:
    """One row of the study.

    Attributes:
        name: row and folder name (``sparse_0.7``, ``linear`` ...).
        description: what the row is, for the table.
        overrides: Hydra overrides on top of the study experiment.
        keep_rate: training (and default test) keep rate.
        lr_family: key of :data:`LR_FAMILIES`.
        needs: SparseViT constructor arguments this member requires (skipped, with a note, if absent).
        keep_curve: also evaluate this member's model at :data:`CURVE_KEEP_RATES`.
    """

    name: str
    description: str
    overrides: tuple[str, ...]
    keep_rate: float
    lr_family: str
    needs: tuple[str, ...] = ()
    keep_curve: bool = False

    def all_overrides(self, lr_families: dict[str, float] | None = None) -> list[str]:
        """The member's overrides plus its keep rate and learning rate."""
        lr = (lr_families or LR_FAMILIES)[self.lr_family]
        return [*self.overrides, f"sparsity.keep_rate={self.keep_rate}", f"optim.lr={lr}"]


def _adapter(kind: str) -> tuple[str, ...]:
    return (f"model.adapter={kind}",)


_HEAD_ONLY = ("model.adapter=null", "train.freeze_backbone=true")


def image_grid(keep_rates: Sequence[float] = SPARSE_KEEP_RATES, released: bool = True) -> list[Member]:
    """The image study's members, in table order."""
    members = [
        Member("linear", "linear probe (head only)", _HEAD_ONLY, 1.0, "head"),
        Member("full", "full fine-tuning", ("model.adapter=null", "train.freeze_backbone=false"), 1.0, "full"),
        Member("adaptformer", "AdaptFormer parallel adapters", _adapter("parallel"), 1.0, "adapter"),
        Member("dense_adapter", "Dense Adapters, no sparsification", _adapter("dense"), 1.0, "adapter"),
        Member("evit_0.7", "token sparsification, head only (EViT-style)", _HEAD_ONLY, 0.7, "head"),
    ]
    members += [
        Member(
            f"sparse_{k}", f"Sparse-Tuning keep {k}", _adapter("dense"), k, "adapter", keep_curve=math.isclose(k, 0.7)
        )
        for k in keep_rates
    ]
    members.append(
        Member("dense_paper_0.7", "Sparse-Tuning, paper-figure Dense Adapter", _adapter("dense_paper"), 0.7, "adapter")
    )
    if released:
        members.append(
            Member(
                "released_0.7",
                "Sparse-Tuning as the released code (embedding in stage 1 sum, BatchNorm head)",
                (*_adapter("dense"), "+model.dense_include_embedding=true", "model.head_norm=batchnorm"),
                0.7,
                "adapter",
                needs=("head_norm",),
            )
        )
    return members


def video_grid(keep_rates: Sequence[float] = SPARSE_KEEP_RATES) -> list[Member]:
    """The video study's members: the image grid without the released-code head (no CLS token)."""
    return image_grid(keep_rates, released=False)


def select(members: Sequence[Member], patterns: Sequence[str] | None) -> list[Member]:
    """Members whose name matches any of the shell patterns (all when ``patterns`` is empty).

    Raises:
        ValueError: a pattern that matches no member (naming the known members).
    """
    if not patterns:
        return list(members)
    for pattern in patterns:
        if not any(fnmatch.fnmatch(m.name, pattern) for m in members):
            raise ValueError(f"--methods {pattern!r} matches no member; known: {', '.join(m.name for m in members)}")
    return [m for m in members if any(fnmatch.fnmatch(m.name, p) for p in patterns)]


def wilson_interval(correct: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion, in percent; ``(nan, nan)`` for ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


@dataclass
class Plan:
    """What a study run will do, with its estimated time."""

    members: list[Member]
    done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    estimate_s: dict[str, float] = field(default_factory=dict)

    def format(self) -> str:
        lines = []
        for m in self.members:
            state = (
                "done"
                if m.name in self.done
                else f"skipped: {self.skipped[m.name]}"
                if m.name in self.skipped
                else f"~{self.estimate_s.get(m.name, float('nan')) / 60:.1f} min"
            )
            lines.append(f"  {m.name:<16} {m.description:<62} lr {LR_FAMILIES[m.lr_family]:.0e}  {state}")
        todo = sum(v for k, v in self.estimate_s.items() if k not in self.done and k not in self.skipped)
        lines.append(f"estimated time for the members left: {todo / 60:.1f} min")
        return "\n".join(lines)


def estimate_member_seconds(
    gmacs: float,
    train_images: int,
    epochs: int,
    test_images: int,
    curve_points: int,
    gmacs_per_s: float,
    overhead_s: float = 15.0,
    train_factor: float = 3.0,
) -> float:
    """Rough time of one member: training at ``train_factor`` x the forward cost, the test (and the
    keep-rate curve) at the forward cost, plus a fixed set-up overhead."""
    forward_images = train_images * epochs * train_factor + test_images * (1 + curve_points)
    return overhead_s + forward_images * gmacs / max(gmacs_per_s, 1e-9)
