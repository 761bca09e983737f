"""Cost curves: GMACs and inference throughput against keep rate, from benchmark results.

Both panels are relative to the plain backbone of the same run (``dense_vit`` = 1), so image and
video models share the axes. The right panel also draws the FLOPs bound (dense GMACs / sparse
GMACs), the speed-up a run would reach if time were proportional to multiply-accumulates.
Needs matplotlib (the ``plots`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..safe_files import write_with
from .benchmark import BenchmarkResult
from .benchmark_report import throughput


def cost_curve(result: BenchmarkResult) -> dict[str, list[float]]:
    """Points of the adapter model's curve, dense adapters (keep 1) included, sorted by keep rate.

    Returns:
        ``{"keep", "gmacs", "gmacs_rel", "throughput", "speedup", "bound"}``; ``*_rel``, ``speedup``
        and ``bound`` are relative to ``dense_vit`` (NaN where it or a timing is missing).
    """
    dense = result.get("dense_vit")
    rows = sorted(
        (r for r in result.results if r.variant.adapter and r.variant.attn_impl == "sdpa"),
        key=lambda r: r.variant.keep_rate,
    )
    nan = float("nan")
    base_gmacs = dense.gmacs if dense else nan
    base_tp = (throughput(result, dense) if dense else None) or nan
    keys = ("keep", "gmacs", "gmacs_rel", "throughput", "speedup", "bound")
    curve: dict[str, list[float]] = {k: [] for k in keys}
    for r in rows:
        tp = throughput(result, r) or nan
        curve["keep"].append(r.variant.keep_rate)
        curve["gmacs"].append(r.gmacs)
        curve["gmacs_rel"].append(r.gmacs / base_gmacs)
        curve["throughput"].append(tp)
        curve["speedup"].append(tp / base_tp)
        curve["bound"].append(base_gmacs / r.gmacs)
    return curve


def _label(result: BenchmarkResult) -> str:
    shape = result.input_shape
    size = "x".join(str(s) for s in shape[2:])
    name = result.config.model.removeprefix("sparse_")
    return f"{name} {size} ({result.environment.get('device', '?')}, batch {shape[0]})"


def plot_cost_curves(
    results: Sequence[BenchmarkResult],
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw GMACs and throughput against keep rate for one or more runs and save a PNG.

    Args:
        results: benchmark runs (each needs a ``dense_vit`` row for the relative axes).
        path: output file (``.png``).
        labels: legend label per run (default: model, input size, device, batch).
        title: figure title.

    Returns:
        the written path.
    """
    from matplotlib import rcParams
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    if not results:
        raise ValueError("plot_cost_curves needs at least one result")
    labels = list(labels) if labels is not None else [_label(r) for r in results]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_flops, ax_speed = fig.subplots(1, 2)
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (result, label) in enumerate(zip(results, labels)):
        color = colors[index % len(colors)]
        curve = cost_curve(result)
        ax_flops.plot(curve["keep"], curve["gmacs_rel"], "o-", color=color, label=label)
        ax_speed.plot(curve["keep"], curve["speedup"], "o-", color=color, label=f"{label}: measured")
        ax_speed.plot(curve["keep"], curve["bound"], "--", color=color, alpha=0.6, label=f"{label}: FLOPs bound")
        for r in result.results:
            if r.variant.attn_impl == "explicit":
                base = result.get("dense_vit")
                tp, base_tp = throughput(result, r), throughput(result, base) if base else None
                if tp and base_tp:
                    ax_speed.plot(
                        [r.variant.keep_rate],
                        [tp / base_tp],
                        "x",
                        color=color,
                        markersize=9,
                        label=f"{label}: explicit attention",
                    )
    for ax in (ax_flops, ax_speed):
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xlabel("keep rate (at each sparsifying layer)")
        ax.grid(alpha=0.3)
    ax_flops.set_ylabel("GMACs / plain dense ViT")
    ax_flops.set_title("compute")
    ax_speed.set_ylabel("inference throughput / plain dense ViT")
    ax_speed.set_title("measured speed-up")
    ax_flops.legend(fontsize=7)
    ax_speed.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    path = Path(path)
    return write_with(path, lambda f: fig.savefig(f, dpi=110, format=path.suffix.lstrip(".") or "png"))
