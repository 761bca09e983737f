"""The VTAB-1K results table: 19 task accuracies, three group means and the overall mean.

The overall ``Mean`` is the mean of the three group means (Natural, Specialized, Structured), the
number parameter-efficient fine-tuning papers report for VTAB-1K. It weighs the 7 Natural, 4
Specialized and 8 Structured tasks equally per group, so it differs from the plain mean over the
19 tasks, which is given as ``task_mean`` for reference.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from video_sparse.data.vtab import VTAB_GROUPS, VTAB_TASKS, vtab_tasks_in_group
from video_sparse.safe_files import write_text

__all__ = ["VTABResult", "summarize_vtab", "collect_vtab_sweep", "format_vtab_markdown", "write_vtab_table"]


@dataclass(frozen=True)
class VTABResult:
    """One row of the table.

    Attributes:
        name: row label (method or run name).
        accuracies: task -> test top-1 accuracy (percent).
        group_means: group -> mean over its tasks (``nan`` if it has none).
        mean: mean of the three group means (``nan`` if a group is empty).
        task_mean: plain mean over the tasks present.
        missing: tasks of :data:`VTAB_TASKS` without a result.
    """

    name: str
    accuracies: dict[str, float]
    group_means: dict[str, float]
    mean: float
    task_mean: float
    missing: tuple[str, ...]


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def _accuracy(value: object, where: str) -> float:
    """``value`` as a percentage; a missing, non-finite or out-of-range value is an error (never a '-' cell)."""
    try:
        acc = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: accuracy {value!r} is not a number (a failed or diverged run?)") from None
    if not math.isfinite(acc) or not 0.0 <= acc <= 100.0:
        raise ValueError(f"{where}: accuracy {value!r} is not a percentage in [0, 100] (a diverged run?)")
    return acc


def summarize_vtab(accuracies: Mapping[str, float], name: str = "", allow_missing: bool = False) -> VTABResult:
    """Computes the group means and the overall mean of a VTAB-1K sweep.

    Args:
        accuracies: task name -> test accuracy in percent.
        name: row label.
        allow_missing: accept a partial sweep (group means over the tasks present).

    Returns:
        The table row.

    Raises:
        ValueError: on an unknown task name, an accuracy that is not a finite percentage (named), or on
            missing tasks unless ``allow_missing``.
    """
    unknown = sorted(set(accuracies) - set(VTAB_TASKS))
    if unknown:
        raise ValueError(f"unknown VTAB-1K task(s) {unknown}; known: {list(VTAB_TASKS)}")
    missing = tuple(t for t in VTAB_TASKS if t not in accuracies)
    if missing and not allow_missing:
        raise ValueError(f"VTAB-1K sweep lacks {len(missing)} task(s): {list(missing)} (pass allow_missing=True)")
    accs = {t: _accuracy(accuracies[t], f"task {t}") for t in VTAB_TASKS if t in accuracies}
    groups = {g: _mean([accs[t] for t in vtab_tasks_in_group(g) if t in accs]) for g in VTAB_GROUPS}
    return VTABResult(
        name=name,
        accuracies=accs,
        group_means=groups,
        mean=_mean(list(groups.values())),
        task_mean=_mean(list(accs.values())),
        missing=missing,
    )


def _task_from_path(path: Path) -> str | None:
    for part in reversed(path.parts[:-1]):
        if part in VTAB_TASKS:
            return part
    return None


def collect_vtab_sweep(
    files: Iterable[str | os.PathLike], task_key: str = "task", metric_key: str = "top1"
) -> dict[str, float]:
    """Reads the per-task results of a sweep from JSON summary files.

    Each file holds a JSON object with the accuracy under ``metric_key`` and the task name under
    ``task_key``; without that key the task is the nearest parent folder named like a VTAB task.

    Args:
        files: one JSON file per task.
        task_key: key of the task name.
        metric_key: key of the accuracy (percent).

    Returns:
        task -> accuracy, ready for :func:`summarize_vtab`.

    Raises:
        ValueError: if a file lacks the keys, holds no finite percentage there (``null``/``NaN``: a failed
            run), names no task, or two files give the same task.
    """
    out: dict[str, float] = {}
    source: dict[str, Path] = {}
    for f in map(Path, files):
        with open(f, encoding="utf-8") as fh:
            try:
                record = json.load(fh)
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}:{e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(record, dict) or metric_key not in record:
            raise ValueError(f"{f}: expected a JSON object with key {metric_key!r}")
        task = record.get(task_key) or _task_from_path(f)
        if task is None:
            raise ValueError(f"{f}: no {task_key!r} key and no parent folder named like a VTAB-1K task")
        if task in out:
            raise ValueError(f"task {task!r} appears twice: {source[task]} and {f}")
        out[task], source[task] = _accuracy(record[metric_key], f"{f}: {metric_key}"), f
    return out


def _columns() -> list[str]:
    cols = []
    for g in VTAB_GROUPS:
        cols += vtab_tasks_in_group(g) + [g]
    return cols + ["Mean"]


def _cell(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _row_values(r: VTABResult) -> list[float]:
    values = []
    for g in VTAB_GROUPS:
        values += [r.accuracies.get(t, float("nan")) for t in vtab_tasks_in_group(g)] + [r.group_means[g]]
    return values + [r.mean]


def format_vtab_markdown(results: Sequence[VTABResult], digits: int = 1) -> str:
    """Formats rows as a Markdown table: tasks grouped, each group followed by its mean, then Mean.

    Args:
        results: rows of :func:`summarize_vtab`.
        digits: decimals shown.

    Returns:
        The Markdown text, ending with a note on how ``Mean`` is computed.
    """
    cols = _columns()
    lines = ["| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(_cell(v, digits) for v in _row_values(r)) + " |")
    lines.append("")
    lines.append(
        "Top-1 test accuracy (%). Mean is the mean of the three group means (Natural, Specialized, "
        "Structured), as reported in the parameter-efficient fine-tuning literature; the plain mean "
        "over tasks is " + ", ".join(f"{r.name or 'row'}: {_cell(r.task_mean, digits)}" for r in results) + "."
    )
    if any(r.missing for r in results):
        lines.append("'-' marks tasks without a result; group means then cover the tasks present.")
    return "\n".join(lines) + "\n"


def write_vtab_table(
    results: Sequence[VTABResult] | VTABResult,
    md_path: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    digits: int = 1,
) -> str:
    """Writes the table as Markdown and/or CSV.

    The CSV has one row per result with columns ``name``, the 19 tasks, the three group means,
    ``mean`` (of the group means) and ``task_mean``; missing values are empty cells.

    Args:
        results: one or several rows.
        md_path: Markdown output file, or ``None``.
        csv_path: CSV output file, or ``None``.
        digits: decimals in the Markdown table (the CSV keeps full precision).

    Returns:
        The Markdown text.
    """
    rows = [results] if isinstance(results, VTABResult) else list(results)
    text = format_vtab_markdown(rows, digits)
    if md_path is not None:
        write_text(md_path, text)
    if csv_path is not None:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(["name"] + _columns()[:-1] + ["mean", "task_mean"])
        for r in rows:
            values = _row_values(r) + [r.task_mean]
            writer.writerow([r.name] + ["" if math.isnan(v) else repr(v) for v in values])
        write_text(csv_path, buffer.getvalue())
    return text
