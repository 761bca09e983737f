"""Export a ``SparseViT`` to ONNX with its token selection, check it against PyTorch, time it in onnxruntime.

The graph is made by ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript): the top-k
selection, the gathers and the fused token are ordinary ONNX ops (``TopK``, ``GatherElements``,
``ScatterElements``, ``MatMul``), and the number of kept tokens is a constant fixed by the input size
and the keep rate, as in PyTorch. The batch axis is dynamic. The graph returns the logits and, per
dropping layer, the original patch index of each kept token (``-1``: the fused token), so a check
compares the selection itself, not only the logits. (The TorchScript exporter cannot trace the
selection: token counts become tensors there, and Python arithmetic on them fails.)

The exact video score (``mean_attn``) runs in query chunks whose size PyTorch picks from the batch
size; a graph with symbolic batch would bake the example's chunk count next to batch-dependent chunk
sizes. During export every attention's chunk size is therefore fixed to the batch-1 choice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..safe_files import ensure_dir, refuse_link

logger = logging.getLogger(__name__)

LOGITS = "logits"
INPUT = "input"


class WithKeptTokens(nn.Module):
    """``model(x)`` as a tuple ``(logits, kept_0, ..., kept_{L-1})`` for export; ``kept_l``: (B, K_l) int64."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x, return_kept=True)
        return (out.logits, *out.kept)


def kept_output_names(model: nn.Module) -> list[str]:
    """Output names of the kept-token indices, one per dropping layer: ``kept_block{i}``."""
    from video_sparse.analysis.token_maps import dropping_layers

    return [f"kept_block{i}" for i in dropping_layers(model)]


@contextlib.contextmanager
def batch_independent_score_chunks(model: nn.Module) -> Iterator[None]:
    """Fix ``score_chunk_size`` of every attention that has none to the batch-1 CPU choice, then restore it."""
    from video_sparse.layers.chunked_attention import score_chunk_rows

    num_tokens = model.patch_embed.num_patches + getattr(model, "num_prefix_tokens", 0)
    changed = []
    for module in model.modules():
        if hasattr(module, "score_chunk_size") and module.score_chunk_size is None:
            module.score_chunk_size = score_chunk_rows(module.num_heads, num_tokens, torch.device("cpu"))
            changed.append(module)
    try:
        yield
    finally:
        for module in changed:
            module.score_chunk_size = None


def export_onnx(
    model: nn.Module, path: str | os.PathLike, example: torch.Tensor, with_kept: bool = True, max_batch: int = 4096
) -> Path:
    """Write ``model`` (in eval mode, fp32) as an ONNX file with a dynamic batch axis.

    Args:
        model: a ``SparseViT``.
        path: output ``.onnx`` file (weights inside; parent folders are created).
        example: an input batch ``(B, C, H, W)`` or ``(B, C, T, H, W)``; B >= 2 keeps the batch symbolic.
        with_kept: also output the kept-token indices of every dropping layer.
        max_batch: the largest batch the graph accepts.

    Returns:
        The written path.

    Raises:
        ValueError: ``example`` has a batch of 1 (the exporter would fix the batch to 1).
    """
    if example.shape[0] < 2:
        raise ValueError(
            f"export needs an example batch of at least 2 to keep the batch axis dynamic, got {tuple(example.shape)}"
        )
    path = Path(path)
    ensure_dir(path.parent)
    refuse_link(path)  # the exporter opens the file itself
    model = model.eval().float()
    module = (WithKeptTokens(model) if with_kept else model).eval()
    outputs = [LOGITS] + (kept_output_names(model) if with_kept else [])
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.no_grad(), batch_independent_score_chunks(model):
        program = torch.onnx.export(
            module,
            (example.float(),),
            dynamo=True,
            input_names=[INPUT],
            output_names=outputs,
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    program.save(str(path))
    logger.info("exported %s (%.1f MB), outputs %s", path, path.stat().st_size / 1e6, outputs)
    return path


def ort_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session with full graph optimisation; ``threads``: intra-op threads (None: all)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass
class OnnxCheck:
    """How the ONNX graph compares with PyTorch on the same inputs.

    Attributes:
        max_abs_diff: largest absolute logit difference over all checked batches.
        kept_equal: every kept-token index tensor is identical.
        kept_mismatches: number of differing kept indices (0 when equal).
        rows_same_set: fraction of (sample, layer) rows whose kept tokens are the same set.
        first_layer_swap_gap: at the first dropping layer (identical input sequence in both runtimes),
            the largest PyTorch score difference between the tokens the two runtimes put at the same
            rank, where they differ (0 when none differ); compare with ``first_layer_mean_score``:
            a gap at float precision means a near-tie, not a different selection rule.
        first_layer_mean_score: mean token score at that layer (``1/N`` for attention scores).
        batch_sizes: the batch sizes checked.
        input_batch_axis: the ONNX input's batch dimension (a name when dynamic).
    """

    max_abs_diff: float
    kept_equal: bool
    kept_mismatches: int
    rows_same_set: float
    first_layer_swap_gap: float
    first_layer_mean_score: float
    batch_sizes: list[int]
    input_batch_axis: Any

    def passed(self, atol: float = 1e-4) -> bool:
        return self.max_abs_diff <= atol and self.kept_equal


@torch.no_grad()
def check_onnx(
    path: str | os.PathLike, model: nn.Module, batches: Sequence[torch.Tensor], session: Any = None
) -> OnnxCheck:
    """Run each batch through onnxruntime and through ``model``; compare logits and kept indices.

    Args:
        path: the exported file.
        model: the PyTorch model it was exported from.
        batches: inputs of any batch size (the graph's batch axis is dynamic).
    """
    from video_sparse.analysis.token_maps import dropping_layers

    session = session or ort_session(path)
    model = model.eval().float()
    names = [o.name for o in session.get_outputs()]
    kept_names = [n for n in names if n != LOGITS]
    layers = dropping_layers(model)
    captured: dict[str, torch.Tensor] = {}
    hook = (
        model.blocks[layers[0]].register_forward_hook(
            lambda module, args, out: captured.__setitem__("scores", out[2].scores)
        )
        if layers
        else None
    )
    max_diff, mismatches, rows, same_rows, gap, mean_score = 0.0, 0, 0, 0, 0.0, 0.0
    try:
        for x in batches:
            outs = dict(zip(names, session.run(None, {INPUT: x.float().numpy()})))
            ref = model(x.float(), return_kept=True)
            max_diff = max(max_diff, float(np.abs(outs[LOGITS] - ref.logits.numpy()).max()))
            if len(kept_names) != len(ref.kept):
                mismatches += 1
                continue
            for layer, (name, kept) in enumerate(zip(kept_names, ref.kept)):
                mine, theirs = outs[name], kept.numpy()
                if mine.shape != theirs.shape:
                    mismatches += theirs.size
                    rows += theirs.shape[0]
                    continue
                mismatches += int((mine != theirs).sum())
                rows += theirs.shape[0]
                same_rows += sum(set(a.tolist()) == set(b.tolist()) for a, b in zip(mine, theirs))
                if layer == 0 and "scores" in captured:
                    scores = captured["scores"].numpy()
                    mean_score = float(scores.mean())
                    for b, (a_row, t_row) in enumerate(zip(mine, theirs)):
                        differ = (a_row != t_row) & (a_row >= 0) & (t_row >= 0)
                        if differ.any():
                            gap = max(gap, float(np.abs(scores[b, a_row[differ]] - scores[b, t_row[differ]]).max()))
    finally:
        if hook is not None:
            hook.remove()
    axis = session.get_inputs()[0].shape[0]
    return OnnxCheck(
        max_diff,
        mismatches == 0,
        mismatches,
        same_rows / rows if rows else 1.0,
        gap,
        mean_score,
        [int(x.shape[0]) for x in batches],
        axis,
    )


def time_interleaved(
    runners: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1
) -> dict[str, dict[str, float]]:
    """Time several callables in rounds (each round runs every callable once, in turn).

    Interleaving spreads the load of a shared machine over all of them alike.

    Returns:
        ``{name: {"median_s", "min_s", "max_s", "repeats", "times_s"}}`` seconds per call (``times_s``:
        one per round, in round order, so that two runners' ratios can be taken round by round).
    """
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "repeats": len(t), "times_s": t}
        for name, t in times.items()
    }


#: Fewer timed rounds than this give no usable spread; the ONNX benchmark refuses them.
MIN_ROUNDS = 5


def speedup(slow: dict[str, Any], fast: dict[str, Any]) -> dict[str, float]:
    """The speed-up of ``fast`` over ``slow``: ``slow`` time / ``fast`` time per call (> 1: ``fast`` is
    quicker), from two entries of :func:`time_interleaved`.

    Returns:
        ``{"median", "min", "max"}``: the ratio of the medians, and the range of the round-by-round
        ratios (both ran in the same round, so the load of the machine cancels in each).
    """
    per_round = [a / b for a, b in zip(slow["times_s"], fast["times_s"])]
    return {"median": slow["median_s"] / fast["median_s"], "min": min(per_round), "max": max(per_round)}
