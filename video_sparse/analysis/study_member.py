"""One member of the method study: train it through the training recipe, test it, measure it.

:func:`run_member` is what every member runs, in this process or (the default of a full study) in a
fresh one started as ``python -m video_sparse.analysis.study_member SPEC.json``, so that its peak
memory is its own. The spec (written by :mod:`video_sparse.analysis.study_run`) holds the member's
name, description, keep rate, Hydra overrides, output folder and what to measure; the record it
writes, ``OUTPUT_DIR/study.json``, is what the study's tables are built from.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from video_sparse.analysis.study import CURVE_KEEP_RATES
from video_sparse.safe_files import write_text

__all__ = ["inference_img_s", "run_member", "run_member_from_spec_file"]


def inference_img_s(model: Any, batch: int, device: Any, dtype: Any, reps: int) -> float:
    """Median images (or clips) per second of ``model`` in eval mode on one random batch.

    Two warm-up forwards, then ``reps`` timed ones; autocast to ``dtype`` where it is not fp32 (GPU).
    """
    import torch

    from video_sparse.analysis.flops import input_shape_of

    x = torch.randn(input_shape_of(model, batch), device=device)
    model.eval()
    times = []
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for i in range(reps + 2):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= 2:
                times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def _timing_after(path: Path, seconds: float, epochs_run: int, peak: float, base: float | None, exact: bool) -> dict:
    """The member's training timing summed over interrupted runs (``train_timing.json``)."""
    timing = json.loads(path.read_text()) if path.is_file() else {"seconds": 0.0, "epochs": 0, "peak_mib": 0.0}
    if epochs_run > 0:
        timing = {
            "seconds": timing["seconds"] + seconds,
            "epochs": timing["epochs"] + epochs_run,
            "peak_mib": max(timing["peak_mib"], peak),
            "base_mib": base,
            "exact_peak": exact,
            "added_mib": max(timing.get("added_mib") or 0.0, peak - base) if base is not None else None,
        }
        write_text(path, json.dumps(timing))
    return timing


def run_member(spec: dict[str, Any]) -> dict[str, Any]:
    """Train, test and measure one member; writes and returns its ``study.json`` record.

    Args:
        spec: ``name``, ``description``, ``keep_rate``, ``overrides`` (Hydra, the study experiment's
            included), ``output_dir``, ``isolated`` (a fresh process: its peak memory is its own),
            optional ``keep_curve`` (also test at :data:`CURVE_KEEP_RATES`) and ``infer_reps``.

    A member interrupted mid-training resumes from its last epoch checkpoint (the recipe's resume);
    its training seconds and epochs are summed over the runs in ``train_timing.json``.
    """
    import torch

    from video_sparse.analysis.memory import current_mib, peak_mib, reset_peak, return_freed_memory_at_once
    from video_sparse.engine.config import compose_config
    from video_sparse.engine.evaluate import evaluate
    from video_sparse.engine.finetune import FinetuneRecipe
    from video_sparse.evaluation.metrics import NonFiniteScoresError

    out = Path(spec["output_dir"])
    cfg = compose_config(spec["overrides"] + [f"output_dir={out}"])
    if spec["isolated"]:
        return_freed_memory_at_once()
    recipe = FinetuneRecipe(cfg)
    recipe.setup()
    module, device = recipe.engine.module, recipe.dist.device
    before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    start_epoch = recipe.epoch
    exact_peak = reset_peak(device)
    base_mib = current_mib(device)
    start = time.perf_counter()
    recipe.train()
    seconds = time.perf_counter() - start
    timing = _timing_after(
        out / "train_timing.json", seconds, recipe.epoch - start_epoch, peak_mib(device), base_mib, exact_peak
    )
    changed = sum(not torch.equal(before[n], p.detach()) for n, p in module.named_parameters() if n in before)
    results = recipe.test()
    record: dict[str, Any] = {
        "name": spec["name"],
        "description": spec["description"],
        "keep_rate": spec["keep_rate"],
        "lr": float(cfg.optim.lr),
        "seed": int(cfg.seed),
        "input_size": int(cfg.data.input_size),
        "overrides": spec["overrides"],
        "test": results.get("test", {}),
        "gmacs": results.get("gmacs_per_view"),
        "trainable_params": recipe.param_counts["trainable_params"],
        "total_params": recipe.param_counts["total_params"],
        "trainable_tensors": len(before),
        "trainable_changed": changed / max(len(before), 1),
        "train_s_per_epoch": timing["seconds"] / timing["epochs"] if timing["epochs"] else None,
        "train_peak_mib": timing["peak_mib"] or None,
        "mib_before_training": timing.get("base_mib"),
        "train_added_mib": timing.get("added_mib"),
        "memory_isolated": spec["isolated"] or device.type == "cuda",
        "memory_meter": "cuda max_memory_allocated" if device.type == "cuda" else "process RSS high-water mark",
        "device": str(device),
        "epochs": int(cfg.epochs),
        "history": recipe.history,
    }
    record["infer_img_s"] = inference_img_s(
        module, int(cfg.data.batch_size), device, recipe.dtype, reps=spec.get("infer_reps", 5)
    )
    if spec.get("keep_curve"):
        test_set = recipe.data.dataset("test")
        curve = {}
        for keep in CURVE_KEEP_RATES:
            result = evaluate(
                lambda x, k=keep: module(x, keep_rate=k),
                test_set,
                recipe.dist,
                batch_size=int(cfg.data.batch_size),
                num_workers=int(cfg.data.num_workers),
                dtype=recipe.dtype,
                desc=f"keep {keep}",
            )
            if result.summary.get("error"):
                raise NonFiniteScoresError(f"{spec['name']} at keep rate {keep}: {result.summary['error']}")
            curve[str(keep)] = float(result.summary["top1"])
        record["keep_curve"] = curve
    recipe.cleanup()
    write_text(out / "study.json", json.dumps(record, indent=1, default=str))
    recipe = module = before = None
    gc.collect()  # free this member's model before the next one (in-process runs)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return record


def run_member_from_spec_file(path: str | Path) -> dict[str, Any]:
    """:func:`run_member` on the JSON spec at ``path``, logging to its output folder."""
    from video_sparse.engine.logging_utils import setup_logging

    spec = json.loads(Path(path).read_text())
    setup_logging(spec["output_dir"], True)
    return run_member(spec)


if __name__ == "__main__":  # one member in a fresh process: python -m video_sparse.analysis.study_member SPEC
    if len(sys.argv) != 2:
        sys.exit("usage: python -m video_sparse.analysis.study_member SPEC.json")
    run_member_from_spec_file(sys.argv[1])
