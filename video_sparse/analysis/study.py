"""The method study: which methods run, with what settings, and how their results are tabulated.

``tools/study.py`` trains every member of a grid through the training recipe
(:class:`~video_sparse.engine.finetune.FinetuneRecipe`, DeepSpeed included) on the same data for the
same epochs, and measures per member: test top-1 with a 95% interval, GMACs per image, trainable
parameters, training seconds per epoch (data loading included), training peak memory and inference
images/s. This module holds the grid, the learning-rate families, the interval, the claim check,
and the Markdown/CSV/plot writers; it parses no command line.

The grid (``image_grid``): linear probe (head only), full fine-tuning, AdaptFormer-style parallel
adapters, Dense Adapters at keep 1.0, EViT-style token sparsification with the head only,
Sparse-Tuning at keep 0.5 ... 0.9, the paper-figure Dense Adapter (``dense_paper``) at keep 0.7, and
Sparse-Tuning at keep 0.7 configured as the released code does (patch embedding in the first stage
sum, ``BatchNorm1d(dim, affine=False)`` before the head). Each member is a list of Hydra overrides
on top of the study's experiment, so any member can be rerun alone with ``tools/train.py``.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..safe_files import write_text, write_with

#: Learning rates per family (AdamW, the study's batch size); ``head`` for head-only methods.
LR_FAMILIES: dict[str, float] = {"head": 5.0e-3, "adapter": 1.0e-3, "full": 1.0e-4}
SPARSE_KEEP_RATES = (0.5, 0.6, 0.7, 0.8, 0.9)
#: Keep rates of the test-time curve (one model trained at 0.7, evaluated without retraining).
CURVE_KEEP_RATES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CLAIM = {"top1_gap": 1.0, "gmacs": 0.67, "time": 0.8, "memory": 0.8}
#: Table columns: (CSV key, Markdown header).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("method", "method"),
    ("keep_rate", "keep"),
    ("top1", "top-1 %"),
    ("top1_ci", "95% interval"),
    ("gmacs", "GMACs/img"),
    ("trainable_params", "trainable params"),
    ("train_s_per_epoch", "train s/epoch"),
    ("train_peak_mib", "train peak MiB"),
    ("infer_img_s", "inference img/s"),
)


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


def row_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """One table row from a member's ``study.json``.

    Raises:
        ValueError: the member's test has no accuracy (non-finite scores: a diverged model).
    """
    test = record.get("test", {})
    if test.get("error") or ("top1" in test and test["top1"] is None):
        raise ValueError(f"study member {record.get('name')}: {test.get('error') or 'no top-1'}; it has no row")
    n = int(test.get("num_videos") or 0)
    top1 = float(test.get("top1", float("nan")))
    low, high = wilson_interval(top1 / 100 * n, n)
    return {
        "method": record["name"],
        "description": record.get("description", ""),
        "keep_rate": record.get("keep_rate"),
        "top1": top1,
        "top1_ci": f"{low:.1f}-{high:.1f}",
        "top1_low": low,
        "top1_high": high,
        "test_images": n,
        "gmacs": record.get("gmacs"),
        "trainable_params": record.get("trainable_params"),
        "train_s_per_epoch": record.get("train_s_per_epoch"),
        "train_peak_mib": record.get("train_peak_mib"),
        "train_added_mib": record.get("train_added_mib"),
        "infer_img_s": record.get("infer_img_s"),
        "trainable_changed": record.get("trainable_changed"),
        "lr": record.get("lr"),
    }


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "trainable_params":
        return f"{value / 1e6:.3f} M"
    if key in ("top1", "gmacs"):
        return f"{value:.2f}" if key == "top1" else f"{value:.3f}"
    if key in ("train_s_per_epoch", "train_peak_mib", "infer_img_s"):
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return str(value)


def claim_check(rows: Sequence[dict[str, Any]], sparse: str = "sparse_0.7", dense: str = "dense_adapter") -> list[str]:
    """The paper's claim, ``sparse`` against ``dense``: top-1 within 1 point, and GMACs, training
    time per epoch and training memory at most 0.67 / 0.8 / 0.8 of the dense figures."""
    by_name = {r["method"]: r for r in rows}
    if sparse not in by_name or dense not in by_name:
        return [f"claim check needs both {sparse} and {dense} in the table"]
    s, d = by_name[sparse], by_name[dense]
    lines = []

    def ratio(key: str, limit: float, label: str) -> None:
        if s.get(key) and d.get(key):
            r = s[key] / d[key]
            lines.append(f"- {label}: {r:.3f} of {dense} (claim <= {limit}): {'holds' if r <= limit else 'FAILS'}")
        else:
            lines.append(f"- {label}: not measured")

    gap = d["top1"] - s["top1"]
    lines.append(
        f"- top-1: {s['top1']:.2f} vs {d['top1']:.2f}, {dense} ahead by {gap:+.2f} points (claim <= "
        f"{CLAIM['top1_gap']}): {'holds' if gap <= CLAIM['top1_gap'] else 'FAILS'}"
    )
    ratio("gmacs", CLAIM["gmacs"], "GMACs")
    ratio("train_s_per_epoch", CLAIM["time"], "training time per epoch")
    ratio("train_peak_mib", CLAIM["memory"], "training peak memory")
    ratio("train_added_mib", CLAIM["memory"], "memory training adds (peak - before training; the weights excluded)")
    return lines


def write_table(
    rows: Sequence[dict[str, Any]], md_path: str | os.PathLike, csv_path: str | os.PathLike, header: str = ""
) -> str:
    """Write the Markdown and CSV tables; returns the Markdown text."""
    keys = [k for k, _ in COLUMNS]
    lines = [header] if header else []
    lines += ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(k, r.get(k)) for k in keys) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    write_text(md_path, text)
    extra = ["description", "top1_low", "top1_high", "test_images", "train_added_mib", "trainable_changed", "lr"]
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=keys + extra, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(csv_path, handle.getvalue())
    return text


def write_keep_curve(curve: dict[str, float], md_path: str | os.PathLike, csv_path: str | os.PathLike) -> str:
    """The test-time keep-rate curve (keep rate -> top-1) as Markdown and CSV; returns the Markdown."""
    items = sorted((float(k), v) for k, v in curve.items())
    text = "| test keep rate | " + " | ".join(f"{k:g}" for k, _ in items) + " |\n"
    text += "|---|" + "---|" * len(items) + "\n"
    text += "| top-1 % | " + " | ".join(f"{v:.2f}" for _, v in items) + " |\n"
    write_text(md_path, text)
    write_text(csv_path, "keep_rate,top1\n" + "".join(f"{k:g},{v:.4f}\n" for k, v in items))
    return text


def plot_study(
    rows: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "", curve: dict[str, float] | None = None
) -> Path:
    """Accuracy against GMACs and against training s/epoch (one point per method, 95% bars), and
    the test-time keep-rate curve when given. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("gmacs", "GMACs per image"), ("train_s_per_epoch", "training s/epoch")]
    fig, axes = plt.subplots(1, len(panels) + (1 if curve else 0), figsize=(5.2 * (len(panels) + bool(curve)), 4.4))
    for ax, (key, label) in zip(axes, panels):
        for r in rows:
            if r.get(key) is None or math.isnan(r["top1"]):
                continue
            err = [[r["top1"] - r["top1_low"]], [r["top1_high"] - r["top1"]]]
            ax.errorbar(r[key], r["top1"], yerr=err, fmt="o", capsize=3)
            ax.annotate(r["method"], (r[key], r["top1"]), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 (%)")
        ax.grid(alpha=0.3)
    if curve:
        items = sorted((float(k), v) for k, v in curve.items())
        axes[-1].plot([k for k, _ in items], [v for _, v in items], "o-")
        axes[-1].set_xlabel("test-time keep rate (trained at 0.7)")
        axes[-1].set_ylabel("test top-1 (%)")
        axes[-1].grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    write_with(path, lambda f: fig.savefig(f, dpi=120, format=path.suffix.lstrip(".") or "png"))
    plt.close(fig)
    return path
