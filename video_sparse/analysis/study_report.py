"""The method study's report: table rows from member records, the Markdown/CSV tables, the paper's
claim check, the test-time keep-rate curve and the plots.

Everything here reads the ``study.json`` records that :mod:`video_sparse.analysis.study_member`
writes, so a report can be rebuilt from a study folder at any time without running anything.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from video_sparse.analysis import study
from video_sparse.safe_files import open_append, write_text, write_with

log = logging.getLogger("study")

__all__ = [
    "CLAIM",
    "COLUMNS",
    "claim_check",
    "load_records",
    "plot_study",
    "row_from_record",
    "write_keep_curve",
    "write_report",
    "write_table",
]

#: The paper's claim: top-1 within 1 point; GMACs, training time and memory at most these ratios.
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


def load_records(study_dir: str | os.PathLike, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """The ``study.json`` records of a study folder's finished members, by member name.

    Args:
        study_dir: the study's output folder (members under ``members/NAME/``).
        names: member names in the order wanted (default: every finished member, sorted).

    Raises:
        ValueError: a record that is not valid JSON (naming the file).
    """
    members = Path(study_dir) / "members"
    paths = [members / n / "study.json" for n in names] if names is not None else sorted(members.glob("*/study.json"))
    records = {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            records[path.parent.name] = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a valid study record ({err})") from err
    return records


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
    low, high = study.wilson_interval(top1 / 100 * n, n)
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
        "seed": record.get("seed"),
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
    extra = [
        "description",
        "top1_low",
        "top1_high",
        "test_images",
        "train_added_mib",
        "trainable_changed",
        "lr",
        "seed",
    ]
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


def write_report(
    out: Path,
    grid: Sequence[study.Member],
    task: str,
    regime: study.Regime,
    command: str,
    wall_s: float,
    failures: dict[str, str],
    plots: bool = True,
) -> str:
    """``study.md``/``study.csv``, the claim check, the keep-rate curve and ``study.png`` from every
    finished member's ``study.json`` under ``out``; returns the table and the claim lines.

    Args:
        out: the study folder.
        grid: the members in table order (unfinished ones are left out of the table).
        task: ``image`` or ``video`` (the unit of the header).
        regime: the run's regime, for the header.
        command: the command line that ran the study, for the header.
        wall_s: this run's wall time in seconds.
        failures: member name -> error line, listed under the table.
        plots: also write ``study.png`` (needs matplotlib; skipped with a warning without it).
    """
    import torch

    from video_sparse.analysis.benchmark import _cpu_name

    records = load_records(out, [m.name for m in grid])
    rows = [row_from_record(r) for r in records.values()]
    device = next(iter(records.values()), {}).get("device", "?")
    machine = (
        torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else f"{_cpu_name()}, {torch.get_num_threads()} threads"
    )
    unit = "images" if task == "image" else "clips"
    header = (
        f"Command: `{command}`  \n"
        f"Machine: {machine} ({platform.system()}, torch {torch.__version__}); this run's wall time "
        f"{wall_s / 60:.1f} min  \n"
        f"Regime: {task}, {regime.resolution} px, {regime.epochs} epochs, {regime.train_images} training / "
        f"{rows[0]['test_images'] if rows else '?'} test {unit}, batch {regime.batch_size}\n"
    )
    table = write_table(rows, out / "study.md", out / "study.csv", header=header)
    claim = claim_check(rows)
    if any(not r.get("memory_isolated", True) for r in records.values()):
        claim.append(
            "- note: some members ran in one shared process (--in-process on CPU), so their training "
            "peak memory includes what earlier members left; rerun them without --in-process"
        )
    text = "\nClaim (Sparse-Tuning keep 0.7 vs Dense Adapters keep 1.0):\n" + "\n".join(claim) + "\n"
    if failures:
        text += "\nMembers without results:\n" + "".join(f"- {k}: {v}\n" for k, v in failures.items())
    curve = next((r["keep_curve"] for r in records.values() if r.get("keep_curve")), None)
    if curve:
        text += "\nTest-time keep rate, one model trained at 0.7:\n\n"
        text += write_keep_curve(curve, out / "keep_curve.md", out / "keep_curve.csv")
    with open_append(out / "study.md") as handle:
        handle.write(text)
    if rows and plots:
        try:
            plot_study(rows, out / "study.png", title=header.splitlines()[2], curve=curve)
        except ImportError:
            log.warning("matplotlib is not installed: no plots")
    return table + "\n".join(claim)
