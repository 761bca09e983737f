"""Dense ViT vs dense adapters vs Sparse-Tuning vs explicit attention: GMACs, throughput, training
step time and peak memory in one run; writes <name>.json, <name>.md and a cost-curve <name>.png
(under outputs/benchmarks/ unless --out-dir). Without arguments it lists the presets and what each costs.

    python tools/benchmark.py                                 # the presets, their models and CPU times
    python tools/benchmark.py --preset tiny                   # the 4-block test model, seconds on a CPU
    python tools/benchmark.py --preset image                  # ViT-B/16 224 (batch 16 on CPU)
    python tools/benchmark.py --preset video                  # VideoMAE ViT-B 16x224 (batch 1 on CPU)
    python tools/benchmark.py --preset image video --device cuda   # GPU: bf16 autocast, batch 128 / 8
    python tools/benchmark.py --preset video32 video_large --device cuda --sdpa-backend flash --profile
    python tools/benchmark.py --model sparse_vit_small_patch16_224 --batch-size 8 --keep-rates 0.5 0.7
    python tools/benchmark.py --plot-from a.json b.json --plot docs/images/cost_curves.png
    python tools/benchmark.py --preset video --static-tubes 0.1 --clips CLIP.mp4 ...   # filter vs plain, real clips
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
from pathlib import Path

from tqdm import tqdm

from video_sparse.analysis.benchmark import (
    DEFAULT_KEEP_RATES,
    PAPER_KEEP_RATE,
    SDPA_BACKENDS,
    BenchmarkConfig,
    BenchmarkResult,
    default_variants,
    planned_calls,
    run_benchmark,
    static_tube_variants,
)
from video_sparse.analysis.benchmark_report import (
    load_json,
    save_json,
    summary_dict,
    to_markdown,
)
from video_sparse.analysis.cost_plots import plot_cost_curves
from video_sparse.safe_files import write_text

logger = logging.getLogger("benchmark")

# model, (batch on CPU, batch on GPU), reps, warm-up rounds, keep rates
PRESETS = {
    "image": ("sparse_vit_base_patch16_224", (16, 128), 5, 1, DEFAULT_KEEP_RATES),
    "video": ("sparse_videomae_base_patch16_224", (1, 8), 3, 1, (0.5, 0.7, 0.9)),
    "video32": ("sparse_videomae_base_patch16_224", (1, 32), 3, 1, (0.5, 0.7)),
    "video_large": ("sparse_videomae_large_patch16_224", (1, 8), 3, 1, (0.5, 0.7)),
    "tiny": ("sparse_vit_nano_patch16_64", (4, 64), 2, 1, (0.5, 0.7)),
}
# What one run of each preset took on 2 CPU cores (wall clock, the machine shared with other jobs).
PRESET_CPU_TIMES = {
    "tiny": "209 s",
    "image": "over 25 min (stopped unfinished at 25 min)",
    "video": "not measured (longer than image: 1568 tokens per clip)",
    "video32": "not measured (a GPU preset: the video model at batch 32 there, batch 1 on the CPU as video)",
    "video_large": "not measured (a GPU preset: VideoMAE ViT-L, about 3.5x the video preset's work)",
}


def describe_presets() -> str:
    """The presets as lines a person reads: name, model, batch on CPU / GPU, rounds, keep rates, CPU time."""
    lines = ["presets (python tools/benchmark.py --preset NAME [NAME ...]):"]
    for name, (model, (cpu_batch, gpu_batch), reps, _, keeps) in PRESETS.items():
        lines.append(
            f"  {name:11s} {model}, batch {cpu_batch} on CPU / {gpu_batch} on GPU, {reps} timed rounds, "
            f"keep rates {', '.join(f'{k:g}' for k in keeps)}; CPU: {PRESET_CPU_TIMES.get(name, 'not measured')}"
        )
    lines.append("or --model NAME [--batch-size N --keep-rates ...]; --help lists every option")
    return "\n".join(lines)


def _parse_arg(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--arg expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        nargs="+",
        help="model, batch, reps and keep rates of a standard run; several run one after another "
        "and add a combined cost-curve plot",
    )
    p.add_argument("--model", help="registered model name (overrides the preset)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--reps", type=int, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, help="untimed rounds first")
    p.add_argument("--train-reps", type=int, help="timed training rounds (default: --reps; 0: no training)")
    p.add_argument("--keep-rates", type=float, nargs="+", help="Sparse-Tuning keep rates")
    p.add_argument(
        "--explicit-keep-rates",
        type=float,
        nargs="*",
        default=[PAPER_KEEP_RATE],
        help="keep rates of the explicit-attention rows (none: no such row)",
    )
    p.add_argument(
        "--chunked-keep-rates",
        type=float,
        nargs="*",
        default=[],
        help="keep rates of rows scoring with the chunked explicit kernel instead of the fused one",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="torch threads (default: cores available)")
    p.add_argument(
        "--amp",
        choices=("auto", "bfloat16", "float16", "none"),
        default="auto",
        help="autocast dtype; auto = bf16 on CUDA, fp32 on CPU",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--compile", action="store_true", help="time torch.compile'd models (every variant)")
    p.add_argument(
        "--sdpa-backend",
        choices=sorted(SDPA_BACKENDS),
        help="pin one attention backend for every variant (torch.nn.attention.sdpa_kernel)",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="outputs/profile",
        metavar="DIR",
        help="write one torch.profiler trace per variant to DIR/<name>/<variant>.json (default DIR: outputs/profile)",
    )
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument(
        "--arg",
        action="append",
        type=_parse_arg,
        default=[],
        help="extra model constructor argument KEY=VALUE (repeatable)",
    )
    p.add_argument(
        "--static-tubes",
        type=float,
        help="measure Sparse-Tuning at the first keep rate without and with the static-tube filter at this threshold",
    )
    p.add_argument("--clips", nargs="+", default=[], help="video files making the batch instead of random inputs")
    p.add_argument(
        "--out-dir", default="outputs/benchmarks", help="folder for <name>.json/.md/.png (default: %(default)s)"
    )
    p.add_argument("--name", help="file stem (default: <preset or model>_<device>)")
    p.add_argument(
        "--plot",
        help="cost-curve PNG path (default: <out-dir>/<name>.png, or "
        "<out-dir>/cost_curves_<device>.png for several presets)",
    )
    p.add_argument("--plot-from", nargs="+", metavar="JSON", help="only draw --plot from earlier result files")
    return p


def _config(args: argparse.Namespace, preset_name: str | None, name: str) -> BenchmarkConfig:
    on_gpu = args.device.startswith("cuda")
    model, batches, reps, warmup, _ = PRESETS[preset_name] if preset_name else (None, (16, 128), 5, 1, None)
    return BenchmarkConfig(
        model=args.model or model,
        batch_size=args.batch_size or batches[on_gpu],
        reps=args.reps or reps,
        warmup=warmup if args.warmup is None else args.warmup,
        train_reps=args.train_reps,
        device=args.device,
        threads=args.threads,
        amp=None if args.amp == "none" else args.amp,
        memory=not args.no_memory,
        compile=args.compile,
        sdpa_backend=args.sdpa_backend,
        profile_dir=str(Path(args.profile) / name) if args.profile else None,
        num_classes=args.num_classes,
        model_kwargs=dict(args.arg),
        clips=tuple(args.clips),
    )


def run_one(args: argparse.Namespace, preset_name: str | None) -> tuple[BenchmarkResult, dict]:
    """Run one benchmark, write its JSON, Markdown and PNG, print the table."""
    name = args.name or f"{preset_name or args.model}_{args.device.replace(':', '')}"
    config = _config(args, preset_name, name)
    keep_rates = args.keep_rates or (PRESETS[preset_name][4] if preset_name else DEFAULT_KEEP_RATES)
    variants = (
        default_variants(keep_rates, args.explicit_keep_rates, args.chunked_keep_rates)
        if args.static_tubes is None
        else static_tube_variants(args.static_tubes, keep_rates[0])
    )
    out_dir = Path(args.out_dir)
    with tqdm(total=planned_calls(config, variants), desc=name, unit="call") as bar:

        def progress(text: str) -> None:
            bar.set_postfix_str(text[:60])
            bar.update(1)

        result = run_benchmark(config, variants, progress)
    json_path = save_json(result, out_dir / f"{name}.json")
    markdown = to_markdown(result)
    md_path = out_dir / f"{name}.md"
    write_text(md_path, markdown)
    single_plot = args.plot if args.plot and len(args.preset or [None]) == 1 else out_dir / f"{name}.png"
    plot_path = plot_cost_curves([result], single_plot)
    print(markdown)
    logger.info("wrote %s, %s, %s", json_path, md_path, plot_path)
    summary = summary_dict(result)
    logger.info("key ratios: %s", json.dumps(summary["ratios"]))
    return result, {"json": str(json_path), "markdown": str(md_path), "plot": str(plot_path), **summary}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.plot_from:
        if not args.plot:
            raise SystemExit("--plot-from needs --plot OUT.png")
        path = plot_cost_curves([load_json(p) for p in args.plot_from], args.plot)
        logger.info("wrote %s", path)
        return {"plot": str(path)}
    if not args.preset and not args.model:
        print(describe_presets())
        return {"presets": sorted(PRESETS)}
    if args.preset and len(args.preset) > 1 and (args.name or args.model):
        raise SystemExit("--name and --model take one run; give one --preset")
    runs = [run_one(args, preset) for preset in (args.preset or [None])]
    if len(runs) == 1:
        return runs[0][1]
    default_plot = Path(args.out_dir) / f"cost_curves_{args.device.replace(':', '')}.png"
    combined = plot_cost_curves([result for result, _ in runs], args.plot or default_plot)
    logger.info("wrote %s", combined)
    return {"runs": [summary for _, summary in runs], "plot": str(combined)}


if __name__ == "__main__":
    main()
