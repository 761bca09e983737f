"""Multi-view testing: load trained weights, score every view, merge, report and write results."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..analysis.flops import count_gmacs, input_shape_of
from ..checkpoint import load_trained_weights
from ..checkpoint.io import atomic_write
from ..evaluation import format_flops_x_views, plot_confusion_matrix
from .builders import (build_dataset, build_model, compile_backend, compile_model, prepare_data,
                       resolve_precision)
from .distributed import DistInfo, barrier, init_distributed
from .evaluate import evaluate
from .logging_utils import setup_logging

log = logging.getLogger(__name__)


class NothingScoredError(RuntimeError):
    """A test in which no video could be scored (its summary is written first)."""


def run_multiview_test(forward: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, cfg: DictConfig,
                       dist_info: DistInfo, dtype: torch.dtype, output_dir: Path,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Test every view of the test split, merge per video and write ``results.json`` (rank 0).

    Returns:
        The results dictionary on rank 0 (metrics under ``"test"``, with ``failed_videos``; GFLOPs x
        views), ``{}`` elsewhere.

    Raises:
        NothingScoredError: on rank 0, after writing ``results.json``, when no video was scored.
    """
    results: dict[str, Any] = {"name": cfg.name, **(extra or {})}
    num_clips = num_crops = 1
    merged = None
    if cfg.test.enabled:
        test_set = build_dataset(OmegaConf.to_container(cfg.data, resolve=True), "test")
        num_clips, num_crops = getattr(test_set, "num_clips", 1), getattr(test_set, "num_crops", 1)
        ids = getattr(test_set, "video_paths", None) or getattr(test_set, "sample_ids", None)
        result = evaluate(forward, test_set, dist_info, batch_size=int(cfg.test.batch_size),
                          num_workers=int(cfg.data.num_workers), how=cfg.test.merge, dtype=dtype, desc="test",
                          out_dir=output_dir if dist_info.is_main else None, video_ids=ids)
        results["test"], merged = result.summary, result.merged
        if dist_info.is_main:
            results["test"]["failed_videos"] = [str(ids[i]) if ids else str(i) for i in sorted(result.failed)]
    if not dist_info.is_main:
        return {}
    if merged is not None and len(merged) and cfg.test.confusion_matrix:
        plot_confusion_matrix(output_dir / "confusion_matrix.png", merged.scores, merged.labels)
    reference = model.__class__(**model.model_args)  # FLOPs depend on shapes only, not on weights
    gmacs = count_gmacs(reference, torch.zeros(input_shape_of(reference))).gmacs
    results.update(gflops_per_view=gmacs, views=num_clips * num_crops,
                   flops_x_views=format_flops_x_views(gmacs, num_clips, num_crops))
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, default=str).encode()
    atomic_write(output_dir / "results.json", lambda f: f.write(text))
    test = results.get("test", {})
    log.info("test: top1 %.2f top5 %.2f mean-class %.2f on %s videos x %s views (%s failed to decode); "
             "GFLOPs x views %s", test.get("top1", float("nan")), test.get("top5", float("nan")),
             test.get("mean_class_acc", float("nan")), test.get("num_videos"), test.get("views_per_video"),
             test.get("num_failed"), results["flops_x_views"])
    if cfg.test.enabled and not test.get("num_videos"):
        failed = test.get("failed_videos", [])
        raise NothingScoredError(
            f"no test video could be scored: 0 scored, {len(failed)} failed to decode "
            f"({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''}); summary written to "
            f"{output_dir / 'results.json'}")
    return results


def run_test(cfg: DictConfig) -> dict[str, Any]:
    """``tools/test.py``: build the model, load ``cfg.checkpoint`` and run the multi-view test."""
    from ..adapters import count_parameters

    dist_info = init_distributed(cfg.device)
    output_dir = Path(cfg.output_dir)
    setup_logging(output_dir, dist_info.is_main)
    precision = resolve_precision(cfg.precision, dist_info.device)
    prepare_data(OmegaConf.to_container(cfg.data, resolve=True), dist_info.is_main)
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True),
                        OmegaConf.to_container(cfg.sparsity, resolve=True), cfg.pretrained)
    kind = load_trained_weights(model, cfg.checkpoint)
    log.info("loaded %s weights from %s", kind, cfg.checkpoint)
    model.to(dist_info.device).eval()
    backend = compile_backend(cfg.train.get("compile"))
    if backend:
        compile_model(model, backend)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(dist_info.device.type, dtype=dtype, enabled=dtype != torch.float32):
            return model(x.float())

    trainable, total = count_parameters(model)
    results = run_multiview_test(forward, model, cfg, dist_info, torch.float32, output_dir,
                                 extra={"checkpoint": str(cfg.checkpoint), "trainable_params": trainable,
                                        "total_params": total})
    barrier()
    return results
