"""Multi-view testing: one test object for the end of training and for ``tools/test.py``.

Both score every view of the test split with the model's weights and inputs in the run's precision
(DeepSpeed's engine after training; the same cast of the model in ``tools/test.py``), merge the views per
sample, and write the score files and ``results.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..adapters import count_parameters
from ..analysis.flops import count_gmacs, input_shape_of
from ..checkpoint import load_trained_weights
from ..checkpoint.io import atomic_write
from ..evaluation import format_flops_x_views, plot_confusion_matrix
from ..evaluation.metrics import NonFiniteScoresError
from ..safe_files import ensure_dir
from .builders import DTYPES, build_model, compile_backend, compile_model, instantiate_group, resolve_precision
from .config import save_run_config
from .distributed import DistInfo, barrier, broadcast_object, init_distributed
from .evaluate import evaluate
from .logging_utils import setup_logging
from .run_lock import lock_run_folder

log = logging.getLogger(__name__)


class NothingScoredError(RuntimeError):
    """A test in which no sample could be scored (its summary is written first)."""


class NonFiniteTestError(NonFiniteScoresError):
    """A test whose scores hold NaN or infinity (its summary, naming the count, is written first)."""


def format_metrics(summary: dict[str, Any]) -> str:
    """``top1 81.25 top5 96.00 mean-class 80.10`` for the accuracies a summary holds (``-`` when ``None``)."""
    names = [k for k in summary if k.startswith("top") and k[3:].isdigit()] + ["mean_class_acc"]
    return " ".join(
        f"{'mean-class' if k == 'mean_class_acc' else k} "
        + ("-" if summary.get(k) is None else f"{float(summary.get(k, float('nan'))):.2f}")
        for k in names
    )


class MultiViewTest:
    """The multi-view test of the ``test`` group on the data module's test split.

    Args:
        cfg: the run config (``name``, ``test.*``).
        data: the data module (``data`` group, instantiated).
        dist_info: this process's rank and device.
        dtype: the run's precision; inputs are cast to it (the model's weights are in it already).
        output_dir: where ``results.json`` and the score files go (rank 0).
    """

    def __init__(self, cfg: DictConfig, data: Any, dist_info: DistInfo, dtype: torch.dtype, output_dir: Path) -> None:
        self.cfg, self.data, self.dist, self.dtype, self.output_dir = cfg, data, dist_info, dtype, Path(output_dir)

    def run(
        self, forward: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Test every view, merge per sample and write ``results.json`` (rank 0).

        Args:
            forward: the model's forward (an engine or the model itself), inputs ``(B, C, [T,] H, W)``.
            model: the bare model (its ``model_args`` give the GMACs per view).
            extra: more entries for ``results.json``.

        Returns:
            The results on rank 0 (metrics under ``"test"`` with ``failed_videos``; GMACs x views), ``{}``
            elsewhere.

        Raises:
            NothingScoredError: on rank 0, after writing ``results.json``, when no sample was scored.
            NonFiniteTestError: on rank 0, after writing ``results.json`` (with ``error`` and
                ``test.num_nonfinite``, accuracies ``null``), when a score is NaN or infinite.
        """
        cfg, dist_info = self.cfg, self.dist
        results: dict[str, Any] = {"name": cfg.name, **(extra or {})}
        num_clips = num_crops = 1
        merged = None
        if cfg.test.enabled:
            test_set = self.data.dataset("test")
            num_clips, num_crops, ids = test_set.num_clips, test_set.num_crops, list(test_set.sample_ids)
            result = evaluate(
                forward,
                test_set,
                dist_info,
                batch_size=int(cfg.test.batch_size),
                num_workers=int(self.data.num_workers),
                how=cfg.test.merge,
                dtype=self.dtype,
                desc="test",
                out_dir=self.output_dir if dist_info.is_main else None,
                video_ids=ids,
                class_names=_class_names(cfg, test_set.num_classes),
            )
            results["test"], merged = result.summary, result.merged
            if dist_info.is_main:
                results["test"]["failed_videos"] = [str(ids[i]) for i in sorted(result.failed)]
        if not dist_info.is_main:
            return {}
        if results.get("test", {}).get("error"):
            results["error"] = results["test"]["error"]
        if merged is not None and len(merged) and cfg.test.confusion_matrix and "error" not in results:
            plot_confusion_matrix(self.output_dir / "confusion_matrix.png", merged.scores, merged.labels)
        reference = model.__class__(**model.model_args)  # GMACs depend on shapes only, not on weights
        gmacs = count_gmacs(reference, torch.zeros(input_shape_of(reference))).gmacs
        results.update(
            gmacs_per_view=gmacs,
            views=num_clips * num_crops,
            flops_x_views=format_flops_x_views(gmacs, num_clips, num_crops),
        )
        self._write(results)
        return results

    def _write(self, results: dict[str, Any]) -> None:
        ensure_dir(self.output_dir)
        text = json.dumps(results, indent=1, default=str).encode()
        atomic_write(self.output_dir / "results.json", lambda f: f.write(text))
        test = results.get("test", {})
        log.info(
            "test: %s on %s videos x %s views (%s failed to decode); GMACs x views %s",
            format_metrics(test),
            test.get("num_videos"),
            test.get("views_per_video"),
            test.get("num_failed"),
            results["flops_x_views"],
        )
        if test.get("error"):
            raise NonFiniteTestError(f"{test['error']}; summary written to {self.output_dir / 'results.json'}")
        if self.cfg.test.enabled and not test.get("num_videos"):
            failed = test.get("failed_videos", [])
            raise NothingScoredError(
                f"no test video could be scored: 0 scored, {len(failed)} failed to decode "
                f"({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''}); summary written to "
                f"{self.output_dir / 'results.json'}"
            )


TRAINING_RECORDS = ("train.log", "checkpoints", "adapter.pth")
"""Entries that mark a folder as a training run's (``tools/test.py`` then writes into its ``test/`` subfolder)."""


def folder_for_test(output_dir: str | Path) -> Path:
    """Where ``tools/test.py`` writes: ``output_dir``, or ``<output_dir>/test`` when ``output_dir`` holds a
    training run (one of :data:`TRAINING_RECORDS`), whose ``results.json``, logs and config stay untouched."""
    output_dir = Path(output_dir)
    if any(os.path.lexists(output_dir / name) for name in TRAINING_RECORDS):
        return output_dir / "test"
    return output_dir


def run_test(cfg: DictConfig) -> dict[str, Any]:
    """``tools/test.py``: build the model, load ``cfg.checkpoint``, cast it to the run's precision and run
    :class:`MultiViewTest`.

    Results, ``test.log`` and the config go to :func:`folder_for_test`, held with a run lock
    (:func:`~video_sparse.engine.run_lock.lock_run_folder`) taken before anything is written there.

    Raises:
        RunLockedError: another live test writes into the same folder.
        UnsafeOutputError: that folder, or something inside it, is a symbolic link.
    """
    dist_info = init_distributed(cfg.device)
    output_dir = Path(broadcast_object(str(folder_for_test(cfg.output_dir)) if dist_info.is_main else None))
    lock = lock_run_folder(output_dir, dist_info.is_main)
    try:
        setup_logging(output_dir, dist_info.is_main, log_name="test.log")
        if output_dir != Path(cfg.output_dir):
            log.info("%s holds a training run: test results go to %s", cfg.output_dir, output_dir)
        if dist_info.is_main:
            save_run_config(output_dir, cfg)
        return _run_test(cfg, dist_info, output_dir)
    finally:
        if lock is not None:
            lock.release()


def _run_test(cfg: DictConfig, dist_info: DistInfo, output_dir: Path) -> dict[str, Any]:
    dtype = DTYPES[resolve_precision(cfg.precision, dist_info.device)]
    data = instantiate_group(cfg.data, "data")
    data.prepare(dist_info.is_main)
    barrier()
    model = build_model(cfg.model, cfg.sparsity, cfg.pretrained, cfg.train.freeze_backbone)
    kind = load_trained_weights(model, cfg.checkpoint)
    log.info("loaded %s weights from %s", kind, cfg.checkpoint)
    trainable, total = count_parameters(model)
    model.to(dist_info.device, dtype=dtype).eval()  # as DeepSpeed holds it after training
    backend = compile_backend(cfg.train.get("compile"))
    if backend:
        compile_model(model, backend)
    tester = MultiViewTest(cfg, data, dist_info, dtype, output_dir)
    results = tester.run(
        model, model, extra={"checkpoint": str(cfg.checkpoint), "trainable_params": trainable, "total_params": total}
    )
    barrier()
    return results


def _class_names(cfg: DictConfig, num_classes: int) -> list[str] | None:
    """Names of the score columns of ``video_scores.csv``: the label map's, the demo's or a shipped map's
    (None, and index columns, when a map does not fit the head)."""
    from ..inference.labels import class_names_for

    data = OmegaConf.to_container(cfg.data, resolve=True)
    try:
        return class_names_for(data, num_classes, str(cfg.get("name", "")))
    except ValueError as err:
        log.warning("video_scores.csv gets index columns: %s", err)
        return None
