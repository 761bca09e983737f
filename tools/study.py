"""The method study in one command: every method trained through the training recipe on the same
data, one table (Markdown + CSV), plots and the paper's claim checked.

    python tools/study.py                          # image study: DINOv2 ViT-S/14 on Fashion-MNIST
    python tools/study.py --quick                  # the whole grid on a tiny subset (a minute or two)
    python tools/study.py --device cuda --resolution 224 --epochs 20
    python tools/study.py --methods 'sparse_*' dense_adapter --plan   # print the plan and time only
    python tools/study.py --task video             # the demo backbone on the demo's motion task
    python tools/study.py -- optim.optimizer.weight_decay=0  # Hydra overrides for every member after --

Each member is ``FinetuneRecipe`` (the engine of tools/train.py, DeepSpeed included) on the
experiment ``study_fashion_mnist`` or ``study_video`` plus the member's overrides (see
video_sparse/analysis/study.py). A member whose ``study.json`` exists is skipped, and a member
interrupted mid-training resumes from its last epoch checkpoint, so an interrupted study continues
where it stopped. By default every member runs in a fresh process so that its peak memory is its
own; ``--in-process`` (implied by ``--quick``) runs them in this process, faster to start.
Outputs: OUT/study.md, OUT/study.csv, OUT/study.png, OUT/keep_curve.{md,csv}, OUT/members/NAME/.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from video_sparse.analysis import study
from video_sparse.engine.config import REPO_DIR as ROOT
from video_sparse.engine.config import compose_config, parse_with_overrides
from video_sparse.engine.logging_utils import setup_logging

log = logging.getLogger("study")

EXPERIMENTS = {"image": "study_fashion_mnist", "video": "study_video"}
#: (resolution, epochs, train images, test images, batch) of the full and the quick study.
FULL = {"image": (84, 4, 1000, None, 32), "video": (64, 5, 480, 96, 16)}
QUICK = {"image": (28, 1, 40, 40, 8), "video": (32, 1, 16, 8, 4)}


# ------------------------------------------------------------------------------------------ member
def _inference_img_s(model: Any, batch: int, device: Any, dtype: Any, reps: int) -> float:
    """Median images/s of ``model`` in eval mode on a fixed batch (autocast to ``dtype`` on GPU)."""
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


def run_member(spec: dict[str, Any]) -> dict[str, Any]:
    """Train, test and measure one member; writes and returns its ``study.json`` record."""
    import torch

    from video_sparse.analysis.memory import (
        current_mib,
        peak_mib,
        reset_peak,
        return_freed_memory_at_once,
    )
    from video_sparse.engine.evaluate import evaluate
    from video_sparse.engine.finetune import FinetuneRecipe

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
    peak = peak_mib(device)
    timing_path = out / "train_timing.json"
    timing = (
        json.loads(timing_path.read_text()) if timing_path.is_file() else {"seconds": 0.0, "epochs": 0, "peak_mib": 0.0}
    )
    if recipe.epoch > start_epoch:
        timing = {
            "seconds": timing["seconds"] + seconds,
            "epochs": timing["epochs"] + recipe.epoch - start_epoch,
            "peak_mib": max(timing["peak_mib"], peak),
            "base_mib": base_mib,
            "exact_peak": exact_peak,
            "added_mib": max(timing.get("added_mib") or 0.0, peak - base_mib) if base_mib is not None else None,
        }
        timing_path.write_text(json.dumps(timing))
    changed = sum(not torch.equal(before[n], p.detach()) for n, p in module.named_parameters() if n in before)
    results = recipe.test()
    record: dict[str, Any] = {
        "name": spec["name"],
        "description": spec["description"],
        "keep_rate": spec["keep_rate"],
        "lr": float(cfg.optim.lr),
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
    record["infer_img_s"] = _inference_img_s(
        module, int(cfg.data.batch_size), device, recipe.dtype, reps=spec.get("infer_reps", 5)
    )
    if spec.get("keep_curve"):
        test_set = recipe.data.dataset("test")
        curve = {}
        for keep in study.CURVE_KEEP_RATES:
            result = evaluate(
                lambda x, k=keep: module(x, keep_rate=k),
                test_set,
                recipe.dist,
                batch_size=int(cfg.data.batch_size),
                num_workers=int(cfg.data.num_workers),
                dtype=recipe.dtype,
                desc=f"keep {keep}",
            )
            curve[str(keep)] = float(result.summary["top1"])
        record["keep_curve"] = curve
    recipe.cleanup()
    (out / "study.json").write_text(json.dumps(record, indent=1, default=str))
    recipe = module = before = None
    gc.collect()  # free this member's model before the next one (in-process runs)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return record


# ------------------------------------------------------------------------------------------- study
def prepare(args: argparse.Namespace, out: Path, settings: tuple) -> list[str]:
    """Data and weights of the study (written once under OUT); returns the overrides they need."""
    resolution, epochs, n_train, n_test, batch = settings
    common = [
        f"experiment={EXPERIMENTS[args.task]}",
        f"epochs={epochs}",
        f"data.input_size={resolution}",
        f"data.batch_size={batch}",
        f"data.num_workers={args.workers}",
        f"device={args.device}",
        f"seed={args.seed}",
    ]
    if args.task == "image":
        from video_sparse.checkpoint.onnx_vit import write_dinov2_safetensors
        from video_sparse.data.prepare.fashion_mnist import (
            DEFAULT_ROOT,
            write_fashion_mnist_vtab,
        )

        write_fashion_mnist_vtab(
            out / "data", n_train=n_train, n_test=n_test, seed=args.seed, source=args.fashion_mnist or DEFAULT_ROOT
        )
        weights = out / "dinov2_vits14.safetensors"
        if not weights.is_file():
            write_dinov2_safetensors(weights)
        return common + [f"data.root={out / 'data'}", f"pretrained={weights}"]
    n_test = n_test or 96
    return (
        common
        + [
            f"data.root={out / 'demo_data'}",
            f"pretrained={ROOT / 'assets/demo_backbone_nano.safetensors'}",
            f"data.demo.num_train={n_train}",
            f"data.demo.num_val={max(n_test // 2, 4)}",
            f"data.demo.num_test={n_test}",
            f"data.short_side_size={resolution}",
            f"data.demo.size={max(resolution, 32)}",
        ]
        + (
            ["data.test_num_clips=1", "data.test_num_crops=1", "data.num_frames=8", "model.num_frames=8"]
            if args.quick
            else []
        )
    )


def missing_arguments(member: study.Member) -> list[str]:
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


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(EXPERIMENTS), default="image")
    p.add_argument("--quick", action="store_true", help="the whole grid on a tiny subset, 1 epoch (tests)")
    p.add_argument("--out", type=Path, help="study folder (default outputs/study/TASK[_quick])")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--resolution", type=int, help="input side in pixels (default: 84 image, 64 video)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--train-images", type=int, help="training images (default 1000; video: clips)")
    p.add_argument("--test-images", type=int, help="test images (default: all 10,000)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int, default=2, help="data-loader workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads per process (default: torch's; --quick: 1, which "
        "is faster for its tiny matrices and on a shared machine)",
    )
    p.add_argument("--methods", nargs="+", help="member names or shell patterns (default: all)")
    p.add_argument("--fashion-mnist", type=Path, help="folder of the idx files (default /usr/share/datasets/...)")
    p.add_argument("--in-process", action="store_true", help="run members in this process (memory not isolated)")
    p.add_argument(
        "--no-keep-curve",
        action="store_true",
        help="skip the test-time keep-rate curve (5 extra test passes of sparse_0.7), e.g. for repeated seeds",
    )
    p.add_argument("--plan", action="store_true", help="print the plan and the estimated time, then stop")
    p.add_argument("--member", type=Path, help=argparse.SUPPRESS)
    return parse_with_overrides(p, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parse_args(argv)
    if args.member:  # one member in this (fresh) process
        spec = json.loads(args.member.read_text())
        setup_logging(spec["output_dir"], True)
        run_member(spec)
        return 0
    threads = args.threads or (1 if args.quick else None)
    if threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)  # member processes too
        torch.set_num_threads(threads)
    defaults = (QUICK if args.quick else FULL)[args.task]
    settings = tuple(
        v if v is not None else d
        for v, d in zip((args.resolution, args.epochs, args.train_images, args.test_images, args.batch_size), defaults)
    )
    out = args.out or ROOT / "outputs" / "study" / (args.task + ("_quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out, True)
    grid = study.image_grid() if args.task == "image" else study.video_grid()
    members = study.select(grid, args.methods)
    in_process = args.in_process or args.quick
    started = time.time()
    try:
        common = prepare(args, out, settings) + extra
    except (FileNotFoundError, ModuleNotFoundError) as err:  # the data package or the weights wheel
        log.error("%s", err)
        return 2

    plan = study.Plan(members)
    for m in members:
        if (out / "members" / m.name / "study.json").is_file():
            plan.done.append(m.name)
        elif missing_arguments(m):
            plan.skipped[m.name] = f"SparseViT has no argument {', '.join(missing_arguments(m))}"
    speed, gmacs = calibrate(common, [1.0] + [m.keep_rate for m in members])
    resolution, epochs, n_train, n_test, _ = settings
    n_test = n_test or 10000
    for m in members:
        if m.name not in plan.done and m.name not in plan.skipped:
            plan.estimate_s[m.name] = study.estimate_member_seconds(
                gmacs[m.keep_rate],
                n_train,
                epochs,
                n_test,
                len(study.CURVE_KEEP_RATES) - 1 if m.keep_curve and not args.no_keep_curve else 0,
                speed,
                overhead_s=5.0 if in_process else 20.0,
                train_factor=1.0 if m.lr_family == "head" else 3.0,
            )
    log.info(
        "study %s: %d px, %d epochs, %d training / %d test images, %s; measured %.1f forward GMAC/s\n%s",
        args.task,
        resolution,
        epochs,
        n_train,
        n_test,
        "in-process" if in_process else "one process per member",
        speed,
        plan.format(),
    )
    if args.plan:
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
            "keep_curve": m.keep_curve and not args.no_keep_curve,
            "isolated": not in_process,
            "infer_reps": 2 if args.quick else 10,
        }
        log.info("[%s] %s", m.name, " ".join(spec["overrides"]))
        member_start = time.time()
        error = run_in_process(spec) if in_process else run_in_subprocess(spec, out / "members" / m.name)
        if error:
            failures[m.name] = error
            log.error("[%s] FAILED: %s", m.name, error)
        else:
            log.info("[%s] done in %.1f min", m.name, (time.time() - member_start) / 60)
            write_report(args, out, grid, settings, argv, time.time() - started, failures, plots=False)  # so far
    failures.update({name: f"skipped: {why}" for name, why in plan.skipped.items()})
    (out / "failures.json").write_text(json.dumps(failures, indent=1))
    write_report(args, out, grid, settings, argv, time.time() - started, failures)
    return 1 if any(not v.startswith("skipped") for v in failures.values()) else 0


def run_in_process(spec: dict[str, Any]) -> str | None:
    """Run one member here; returns the error line of a failure (the study goes on), else None."""
    out = Path(spec["output_dir"]).parents[1]
    try:
        run_member(spec)
    except Exception as err:  # one failing member must not end the study; it is reported in the table
        log.exception("[%s] failed", spec["name"])
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        setup_logging(out, True)
    return None


def run_in_subprocess(spec: dict[str, Any], folder: Path) -> str | None:
    """Run one member in a fresh process; returns the last error line of a failure, else None."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--member", str(spec_path)],
        check=False,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    if result.returncode == 0:
        return None
    sys.stderr.write(result.stderr[-4000:])
    lines = [ln for ln in result.stderr.splitlines() if "Error" in ln or "error" in ln]
    return (lines[-1].strip() if lines else f"exit status {result.returncode}")[:300]


def write_report(
    args: argparse.Namespace,
    out: Path,
    grid: list[study.Member],
    settings: tuple,
    argv: list[str],
    wall_s: float,
    failures: dict[str, str],
    plots: bool = True,
) -> None:
    """Tables, plots and the claim check from every finished member's ``study.json``."""
    import torch

    from video_sparse.analysis.benchmark import _cpu_name

    records = {
        m.name: json.loads((out / "members" / m.name / "study.json").read_text())
        for m in grid
        if (out / "members" / m.name / "study.json").is_file()
    }
    rows = [study.row_from_record(records[m.name]) for m in grid if m.name in records]
    device = next(iter(records.values()), {}).get("device", "?")
    machine = (
        torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else f"{_cpu_name()}, {torch.get_num_threads()} threads"
    )
    resolution, epochs, n_train, _, batch = settings
    unit = "images" if args.task == "image" else "clips"
    header = (
        f"Command: `python tools/study.py {shlex.join(argv)}`  \n"
        f"Machine: {machine} ({platform.system()}, torch {torch.__version__}); this run's wall time "
        f"{wall_s / 60:.1f} min  \n"
        f"Regime: {args.task}, {resolution} px, {epochs} epochs, {n_train} training / "
        f"{rows[0]['test_images'] if rows else '?'} test {unit}, batch {batch}\n"
    )
    table = study.write_table(rows, out / "study.md", out / "study.csv", header=header)
    claim = study.claim_check(rows)
    if any(not r.get("memory_isolated", True) for r in records.values()):
        claim.append(
            "- note: some members ran in one shared process (--in-process on CPU), so their training "
            "peak memory includes what earlier members left; rerun them without --in-process"
        )
    with open(out / "study.md", "a") as handle:
        handle.write("\nClaim (Sparse-Tuning keep 0.7 vs Dense Adapters keep 1.0):\n" + "\n".join(claim) + "\n")
    if failures:
        with open(out / "study.md", "a") as handle:
            handle.write("\nMembers without results:\n" + "".join(f"- {k}: {v}\n" for k, v in failures.items()))
    curve = next((r["keep_curve"] for r in records.values() if r.get("keep_curve")), None)
    if curve:
        with open(out / "study.md", "a") as handle:
            handle.write("\nTest-time keep rate, one model trained at 0.7:\n\n")
            handle.write(study.write_keep_curve(curve, out / "keep_curve.md", out / "keep_curve.csv"))
    if rows and plots:
        try:
            study.plot_study(rows, out / "study.png", title=header.splitlines()[2], curve=curve)
        except ImportError:
            log.warning("matplotlib is not installed: no plots")
    log.info("study table (%s):\n%s\n%s", out / "study.md", table, "\n".join(claim))


if __name__ == "__main__":
    sys.exit(main())
