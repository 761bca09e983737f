"""Several runs of the same study regime at different seeds, summarised: per member the top-1 of
each seed, the mean, the sample standard deviation and the range, and the claim check on them.

Each study folder holds one seed (``tools/study.py --seed S --out DIR``); the seed sets the
training initialisation and the class-balanced training subset. :func:`summarize_seeds` refuses
folders whose members differ in anything but the seed and the paths, so a summary never mixes
regimes or settings.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from video_sparse.analysis.study_report import CLAIM, load_records
from video_sparse.safe_files import write_text, write_with

__all__ = ["SeedSummary", "plot_seeds", "record_seed", "seed_claim_check", "summarize_seeds", "write_seed_table"]

#: Override keys that may differ between the seeds of one regime (the seed and the study's paths).
_PER_RUN_KEYS = ("seed", "data.root", "pretrained")


@dataclass
class SeedSummary:
    """One member over seeds: ``top1`` maps seed -> test top-1 (%), ``train_s`` seed -> s/epoch."""

    name: str
    top1: dict[int, float]
    train_s: dict[int, float]
    test_images: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.top1.values())

    @property
    def sd(self) -> float:
        """Sample standard deviation over the seeds (nan for one seed)."""
        return statistics.stdev(self.top1.values()) if len(self.top1) > 1 else math.nan

    def row(self) -> dict[str, Any]:
        values = list(self.top1.values())
        return {
            "method": self.name,
            "seeds": " ".join(str(s) for s in sorted(self.top1)),
            "top1_per_seed": " ".join(f"{self.top1[s]:.2f}" for s in sorted(self.top1)),
            "mean": self.mean,
            "sd": self.sd,
            "min": min(values),
            "max": max(values),
            "train_s_per_epoch_mean": statistics.fmean(self.train_s.values()) if self.train_s else None,
            "test_images": self.test_images,
        }


def record_seed(record: dict[str, Any]) -> int:
    """The seed of a member's record (its ``seed`` field, else its last ``seed=`` override).

    Raises:
        ValueError: a record that states no seed (naming the member).
    """
    if record.get("seed") is not None:
        return int(record["seed"])
    seeds = [o.split("=", 1)[1] for o in record.get("overrides", []) if o.startswith("seed=")]
    if not seeds:
        raise ValueError(f"study record of {record.get('name')!r} states no seed")
    return int(seeds[-1])


def _setting(record: dict[str, Any]) -> tuple[str, ...]:
    """The record's overrides without the per-run ones: what must match across seeds."""
    return tuple(o for o in record.get("overrides", []) if o.split("=", 1)[0].lstrip("+") not in _PER_RUN_KEYS)


def summarize_seeds(study_dirs: Sequence[str | os.PathLike]) -> list[SeedSummary]:
    """Every member finished in at least one of ``study_dirs``, summarised over their seeds.

    Raises:
        ValueError: no finished member in the folders; one member at the same seed twice; or one
            member run with different settings in two folders (naming both folders and the first
            override that differs).
    """
    summaries: dict[str, SeedSummary] = {}
    settings: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for folder in map(Path, study_dirs):
        for name, record in load_records(folder).items():
            seed, setting = record_seed(record), _setting(record)
            if name in settings and settings[name][1] != setting:
                first, other = settings[name]
                diff = next((a, b) for a, b in zip(setting + ("",), other + ("",)) if a != b)
                raise ValueError(
                    f"{name}: {folder} and {first} differ in more than the seed ({diff[0]!r} vs {diff[1]!r})"
                )
            settings.setdefault(name, (folder, setting))
            summary = summaries.setdefault(name, SeedSummary(name, {}, {}, int(record["test"].get("num_videos") or 0)))
            if seed in summary.top1:
                raise ValueError(f"{name}: seed {seed} appears twice (second time in {folder})")
            summary.top1[seed] = float(record["test"]["top1"])
            if record.get("train_s_per_epoch"):
                summary.train_s[seed] = float(record["train_s_per_epoch"])
    if not summaries:
        raise ValueError(f"no finished study member in {', '.join(map(str, study_dirs))}")
    return list(summaries.values())


def seed_claim_check(
    summaries: Sequence[SeedSummary], sparse: str = "sparse_0.7", dense: str = "dense_adapter"
) -> list[str]:
    """The accuracy part of the claim over seeds: the mean gap and the gap at each shared seed."""
    by_name = {s.name: s for s in summaries}
    if sparse not in by_name or dense not in by_name:
        return [f"claim check needs both {sparse} and {dense}"]
    s, d = by_name[sparse], by_name[dense]
    shared = sorted(set(s.top1) & set(d.top1))
    if not shared:
        return [f"claim check: {sparse} and {dense} share no seed"]
    gaps = [d.top1[k] - s.top1[k] for k in shared]
    mean = statistics.fmean(gaps)
    spread = f", sd {statistics.stdev(gaps):.2f}" if len(gaps) > 1 else ""
    holds = sum(g <= CLAIM["top1_gap"] for g in gaps)
    lines = [
        f"- top-1 over seeds {', '.join(map(str, shared))}: {sparse} {statistics.fmean(s.top1[k] for k in shared):.2f}"
        f" vs {dense} {statistics.fmean(d.top1[k] for k in shared):.2f}; {dense} ahead by {mean:+.2f} points on "
        f"average (per seed {', '.join(f'{g:+.2f}' for g in gaps)}{spread}; claim <= {CLAIM['top1_gap']}): "
        f"{'holds' if mean <= CLAIM['top1_gap'] else 'FAILS'} on the mean, holds at {holds} of {len(gaps)} seeds"
    ]
    if all(k in s.train_s and k in d.train_s for k in shared):
        ratios = [s.train_s[k] / d.train_s[k] for k in shared]
        lines.append(
            f"- training time per epoch: {statistics.fmean(ratios):.3f} of {dense} on average "
            f"(range {min(ratios):.3f}-{max(ratios):.3f}; claim <= {CLAIM['time']})"
        )
    return lines


def write_seed_table(
    summaries: Sequence[SeedSummary], md_path: str | os.PathLike, csv_path: str | os.PathLike, header: str = ""
) -> str:
    """The per-member seed table as Markdown and CSV; returns the Markdown."""
    rows = [s.row() for s in summaries]
    lines = [header] if header else []
    lines += [
        "| method | seeds | top-1 % per seed | mean | sd | range | train s/epoch (mean) | test images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sd = "-" if math.isnan(r["sd"]) else f"{r['sd']:.2f}"
        train = "-" if r["train_s_per_epoch_mean"] is None else f"{r['train_s_per_epoch_mean']:.1f}"
        lines.append(
            f"| {r['method']} | {r['seeds']} | {r['top1_per_seed']} | {r['mean']:.2f} | {sd} | "
            f"{r['min']:.2f}-{r['max']:.2f} | {train} | {r['test_images']} |"
        )
    text = "\n".join(lines) + "\n"
    write_text(md_path, text)
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(csv_path, handle.getvalue())
    return text


def plot_seeds(summaries: Sequence[SeedSummary], path: str | os.PathLike, title: str = "") -> Path:
    """Top-1 of each seed (dots) and the mean with one standard deviation (bar) per member. Needs
    matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(summaries), 4.0))
    for i, s in enumerate(summaries):
        ax.plot([i] * len(s.top1), list(s.top1.values()), "o", color="0.6", markersize=4)
        ax.errorbar(i + 0.15, s.mean, yerr=0 if math.isnan(s.sd) else s.sd, fmt="s", capsize=4, color="C0")
    ax.set_xticks(range(len(summaries)), [s.name for s in summaries], fontsize=8)
    ax.set_xlim(-0.6, len(summaries) - 0.4)
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    write_with(path, lambda f: fig.savefig(f, dpi=120, format=path.suffix.lstrip(".") or "png"))
    plt.close(fig)
    return path
