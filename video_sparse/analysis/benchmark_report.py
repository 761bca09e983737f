"""Markdown tables, key ratios and JSON files for :mod:`video_sparse.analysis.benchmark` results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..safe_files import write_text
from .benchmark import PAPER_KEEP_RATE, BenchmarkResult, VariantResult


def save_json(result: BenchmarkResult, path: str | os.PathLike) -> Path:
    """Write ``result`` as indented JSON; returns the path."""
    path = Path(path)
    return write_text(path, json.dumps(result.to_dict(), indent=1) + "\n")


def load_json(path: str | os.PathLike) -> BenchmarkResult:
    """Read a result written by :func:`save_json`."""
    path = Path(path)
    try:
        return BenchmarkResult.from_dict(json.loads(path.read_text()))
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a benchmark result file ({err})") from err


def throughput(result: BenchmarkResult, row: VariantResult, cpu_time: bool = False) -> float | None:
    """Samples per second from the median inference time (wall-clock, or process CPU time)."""
    median = row.median("infer_cpu_s" if cpu_time else "infer_s")
    return result.config.batch_size / median if median else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def key_ratios(result: BenchmarkResult, keep_rate: float = PAPER_KEEP_RATE) -> dict[str, float | None]:
    """The ratios the targets are stated in, at ``keep_rate``.

    Returns:
        ``speedup_vs_dense_vit`` and ``speedup_vs_dense_adapter`` (inference throughput of Sparse-Tuning
        over the plain backbone / dense adapters), the same from CPU time (``*_cpu``, CPU runs only),
        ``gmacs_vs_dense_vit``, ``train_peak_vs_dense_adapter`` (peak memory of a training step),
        ``train_step_memory_vs_dense_adapter`` (the same, less the memory in use before the step),
        ``train_time_vs_dense_adapter``,
        ``speedup_vs_explicit`` and ``train_speedup_vs_explicit`` (explicit-attention time over ours),
        ``speedup_vs_chunked`` and ``train_speedup_vs_chunked`` (chunked-score-kernel time over ours).
        A value is None when a row or a measurement is missing.
    """
    sparse = result.get(f"sparse_{keep_rate:g}")
    dense_vit, dense_adapter = result.get("dense_vit"), result.get("dense_adapter")
    explicit = result.get(f"explicit_{keep_rate:g}")
    chunked = result.get(f"chunked_{keep_rate:g}")

    def med(row: VariantResult | None, key: str) -> float | None:
        return row.median(key) if row is not None else None

    def mem(row: VariantResult | None, mode: str) -> float | None:
        return row.memory.get(mode) if row is not None else None

    return {
        "gmacs_vs_dense_vit": _ratio(sparse and sparse.gmacs, dense_vit and dense_vit.gmacs),
        "speedup_vs_dense_vit": _ratio(med(dense_vit, "infer_s"), med(sparse, "infer_s")),
        "speedup_vs_dense_adapter": _ratio(med(dense_adapter, "infer_s"), med(sparse, "infer_s")),
        "speedup_vs_dense_vit_cpu": _ratio(med(dense_vit, "infer_cpu_s"), med(sparse, "infer_cpu_s")),
        "speedup_vs_dense_adapter_cpu": _ratio(med(dense_adapter, "infer_cpu_s"), med(sparse, "infer_cpu_s")),
        "train_time_vs_dense_adapter": _ratio(med(sparse, "train_s"), med(dense_adapter, "train_s")),
        "train_peak_vs_dense_adapter": _ratio(mem(sparse, "train"), mem(dense_adapter, "train")),
        "train_step_memory_vs_dense_adapter": _ratio(
            sparse and sparse.step_memory("train"), dense_adapter and dense_adapter.step_memory("train")
        ),
        "speedup_vs_explicit": _ratio(med(explicit, "infer_s"), med(sparse, "infer_s")),
        "train_speedup_vs_explicit": _ratio(med(explicit, "train_s"), med(sparse, "train_s")),
        "speedup_vs_chunked": _ratio(med(chunked, "infer_s"), med(sparse, "infer_s")),
        "train_speedup_vs_chunked": _ratio(med(chunked, "train_s"), med(sparse, "train_s")),
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _fmt_gmacs(value: float) -> str:
    return f"{value:.2f}" if value >= 1 else f"{value:.4f}"


def describe(result: BenchmarkResult) -> str:
    """One line naming the model, input, device, threads, precision and repetitions."""
    cfg, env = result.config, result.environment
    precision = cfg.amp + " autocast" if cfg.amp else "fp32"
    compiled = ", torch.compile" if cfg.compile else ""
    if cfg.sdpa_backend:
        compiled += f", SDPA backend {cfg.sdpa_backend} pinned"
    return (
        f"`{cfg.model}`, input {tuple(result.input_shape)}, {env['device']} ({env['device_name']}), "
        f"{env['threads']} threads, torch {env['torch']}, {precision}{compiled}; median of {cfg.reps} "
        f"inference and {cfg.train_reps} training rounds after {cfg.warmup} warm-up round(s), "
        f"variants interleaved; peak memory: {env['memory_meter']}, one fresh process per variant "
        "and mode"
    )


def to_markdown(result: BenchmarkResult, keep_rate: float = PAPER_KEEP_RATE) -> str:
    """The result as a Markdown table plus the key ratios at ``keep_rate``."""
    cfg = result.config
    dense_vit, dense_adapter = result.get("dense_vit"), result.get("dense_adapter")
    base_tp = throughput(result, dense_vit) if dense_vit else None
    adapter_tp = throughput(result, dense_adapter) if dense_adapter else None
    unit = "clips/s" if len(result.input_shape) == 5 else "img/s"
    header = [
        "variant",
        "keep",
        "attention",
        "GMACs",
        "GMACs / dense ViT",
        f"inference {unit}",
        "speed-up vs dense ViT",
        "speed-up vs dense adapters",
        "train step s",
        "infer peak MiB",
        "train peak MiB",
        "train peak / dense adapters",
        "train step MiB (peak - base)",
        "train step MiB / dense adapters",
    ]
    lines = [describe(result), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    adapter_peak = dense_adapter.memory.get("train") if dense_adapter else None
    adapter_step = dense_adapter.step_memory("train") if dense_adapter else None
    for row in result.results:
        v = row.variant
        tp = throughput(result, row)
        attention = "explicit" if v.attn_impl == "explicit" else "SDPA"
        if v.score_kernel == "chunked":
            attention += ", chunked score"
        cells = [
            v.name,
            f"{v.keep_rate:g}",
            attention,
            _fmt_gmacs(row.gmacs),
            _fmt(_ratio(row.gmacs, dense_vit and dense_vit.gmacs), 3),
            _fmt(tp),
            _fmt(_ratio(tp, base_tp)),
            _fmt(_ratio(tp, adapter_tp)),
            _fmt(row.median("train_s"), 3),
            _fmt(row.memory.get("infer"), 0),
            _fmt(row.memory.get("train"), 0),
            _fmt(_ratio(row.memory.get("train"), adapter_peak)),
            _fmt(row.step_memory("train"), 0),
            _fmt(_ratio(row.step_memory("train"), adapter_step)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    ratios = key_ratios(result, keep_rate)
    lines += ["", f"Key ratios at keep {keep_rate:g} (batch {cfg.batch_size}):", ""]
    lines += [
        f"- {name}: {_fmt(value, 3)}"
        for name, value in ratios.items()
        if value is not None or not (name.endswith("_cpu") or name.endswith("_chunked"))
    ]
    return "\n".join(lines) + "\n"


def summary_dict(result: BenchmarkResult, keep_rate: float = PAPER_KEEP_RATE) -> dict[str, Any]:
    """Per-variant medians and the key ratios, for logs and quick comparisons."""
    rows = {
        r.variant.name: {
            "gmacs": r.gmacs,
            "throughput": throughput(result, r),
            "train_s": r.median("train_s"),
            **{f"memory_{k}_mib": v for k, v in r.memory.items()},
        }
        for r in result.results
    }
    return {"rows": rows, "ratios": key_ratios(result, keep_rate)}
