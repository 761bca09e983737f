"""Export the sparse model (token selection included) to ONNX, check it against PyTorch, time it in onnxruntime.

    # a trained experiment; checked on real clips (the demo's test clips, or --inputs)
    python tools/export_onnx.py --experiment demo --checkpoint outputs/demo/adapter.pth --out outputs/onnx/demo
    # a registered model, with the dense export beside it and the onnxruntime / PyTorch throughput
    python tools/export_onnx.py --model sparse_vit_base_patch16_224 --dense --benchmark --batch-size 16
    python tools/export_onnx.py --model sparse_videomae_base_patch16_224 --dense --benchmark --batch-size 1

Writes ``<out>/sparse.onnx`` (logits + kept-token indices of every dropping layer, dynamic batch axis),
with ``--dense`` also ``<out>/dense.onnx`` (the same weights at keep rate 1), and ``<out>/report.json``.
The check runs onnxruntime and PyTorch (fp32) on the same inputs at two batch sizes and reports the
max abs logit difference and whether the kept-token indices are identical; exit status 1 when the
difference exceeds --atol or an index differs. A bare --model has random weights and is checked on
random inputs unless --inputs are given. Hydra overrides of the experiment follow ``--``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path

from video_sparse.analysis.onnx_export import MIN_ROUNDS, speedup

logger = logging.getLogger("export_onnx")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", help="experiment name (configs/experiment/) or a run's config.yaml")
    source.add_argument("--model", help="registered model name (random weights unless --pretrained)")
    p.add_argument("--checkpoint", help="adapter-only file or full state dict (with --experiment)")
    p.add_argument("--pretrained", help="backbone weights")
    p.add_argument("--keep-rate", type=float, help="override the model's keep rate")
    p.add_argument("--num-classes", type=int, default=400, help="head size of a bare --model")
    p.add_argument("--inputs", nargs="*", default=[], help="videos/images/folders to check on (real inputs)")
    p.add_argument("--out", default="outputs/onnx", help="output folder")
    p.add_argument("--dense", action="store_true", help="also export the dense model (keep rate 1)")
    p.add_argument("--atol", type=float, default=1e-4, help="allowed max abs logit difference (fp32)")
    p.add_argument("--benchmark", action="store_true", help="time onnxruntime and PyTorch, sparse and dense")
    p.add_argument("--batch-size", type=int, default=2, help="batch of the benchmark (and of the check)")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds of the benchmark, at least 5 (median, range)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for both runtimes (default: all)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _model_and_inputs(args, overrides):
    """The model and up to 4 real (or random) single-view inputs ``(N, C, [T,] H, W)``."""
    import timm
    import torch

    import video_sparse  # noqa: F401
    from video_sparse.data.datamodules import DemoData, data_module_class
    from video_sparse.inference import VideoClassifier, discover_inputs

    torch.manual_seed(args.seed)
    if args.experiment:
        clf = VideoClassifier.from_experiment(
            args.experiment, args.checkpoint, args.pretrained, overrides, device="cpu", precision="fp32"
        )
        model, inputs = clf.model, list(args.inputs)
        if not inputs and issubclass(data_module_class(clf.data_cfg), DemoData):
            from video_sparse.data.demo import make_demo_dataset

            lists = make_demo_dataset(
                clf.data_cfg["root"],
                num_frames=int(clf.data_cfg.get("num_frames", 16)),
                **(clf.data_cfg.get("demo") or {}),
            )
            inputs = [str(Path(lists["root"]) / "videos" / "test")]
        dataset = clf.dataset(discover_inputs(inputs, images=not clf.is_video) if inputs else [], single_view=True)
    else:
        from video_sparse.engine.preflight import find_file

        kwargs = {"num_classes": args.num_classes}
        if args.pretrained:
            kwargs["checkpoint"] = find_file(args.pretrained, "--pretrained")
        model = timm.create_model(args.model, **kwargs)
        dataset = None
        if args.inputs:
            from video_sparse.inference import PredictionDataset

            num_frames = model.model_args.get("num_frames")
            size = model.model_args.get("img_size", 224)
            dataset = PredictionDataset(
                discover_inputs(args.inputs, images=num_frames is None),
                num_frames,
                input_size=size,
                short_side_size=size,
            )
    if args.keep_rate is not None:
        model.keep_rate = float(args.keep_rate)
    model = model.eval().float()
    clips = []
    if dataset is not None:
        for i in range(dataset.num_videos):
            item = dataset[i]
            if "input" in item:
                clips.append(item["input"])
            if len(clips) == 4:
                break
    if clips:
        return model, torch.stack(clips), "real"
    from video_sparse.analysis.flops import input_shape_of

    shape = input_shape_of(model)
    return model, torch.randn(4, *shape[1:]), "random"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.benchmark and args.repeats < MIN_ROUNDS:
        parser.error(f"--repeats {args.repeats}: a benchmark needs at least {MIN_ROUNDS} rounds to show its spread")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    from video_sparse.analysis.onnx_export import (
        check_onnx,
        export_onnx,
        ort_session,
        time_interleaved,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    from hydra.errors import HydraException

    from video_sparse.checkpoint import CheckpointError
    from video_sparse.errors import ConfigError

    try:
        model, inputs, origin = _model_and_inputs(args, overrides)
    except (ConfigError, CheckpointError, HydraException, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    example = inputs[:2] if len(inputs) >= 2 else inputs.repeat(2, *([1] * (inputs.ndim - 1)))
    report: dict = {
        "model": model.model_args.get("name", args.model or args.experiment),
        "keep_rate": model.keep_rate,
        "input_shape": list(inputs.shape[1:]),
        "check_inputs": origin,
    }
    sparse_path = export_onnx(model, out / "sparse.onnx", example)
    session = ort_session(sparse_path, args.threads)
    batches = [inputs[:1], inputs[: min(len(inputs), 3)]] if len(inputs) > 1 else [inputs]
    check = check_onnx(sparse_path, model, batches, session)
    report["check"] = {**check.__dict__, "atol": args.atol, "passed": check.passed(args.atol)}
    print(
        f"sparse.onnx vs PyTorch on {origin} inputs, batches {check.batch_sizes}: max abs logit diff "
        f"{check.max_abs_diff:.2e}, kept-token indices {'identical' if check.kept_equal else 'DIFFER'} "
        f"(batch axis: {check.input_batch_axis})"
    )
    if not check.kept_equal:
        print(
            f"  {check.kept_mismatches} kept indices differ; rows with the same kept set: {check.rows_same_set:.1%}; "
            f"largest score gap between swapped tokens at the first dropping layer {check.first_layer_swap_gap:.2e} "
            f"(mean score {check.first_layer_mean_score:.2e})"
            + (
                ": near-ties resolved differently by float rounding"
                if check.first_layer_swap_gap < 1e-3 * check.first_layer_mean_score
                else ""
            )
        )
    runners = {}
    if args.dense or args.benchmark:
        dense = copy.deepcopy(model)
        dense.keep_rate = 1.0
        dense_path = export_onnx(dense, out / "dense.onnx", example, with_kept=False)
        dense_session = ort_session(dense_path, args.threads)
        dense_check = check_onnx(dense_path, dense, batches, dense_session)
        report["dense_check"] = {**dense_check.__dict__, "passed": dense_check.passed(args.atol)}
        print(f"dense.onnx vs PyTorch: max abs logit diff {dense_check.max_abs_diff:.2e}")
    if args.benchmark:
        x = (
            torch.randn(args.batch_size, *inputs.shape[1:])
            if origin == "random"
            else inputs[:1].repeat(args.batch_size, *([1] * (inputs.ndim - 1)))
        )
        feed = {"input": x.numpy()}

        def torch_run(m):
            def run():
                with torch.no_grad():
                    m(x)

            return run

        runners = {
            "ort_sparse": lambda: session.run(["logits"], feed),
            "ort_dense": lambda: dense_session.run(["logits"], feed),
            "torch_sparse": torch_run(model),
            "torch_dense": torch_run(dense),
        }
        timing = time_interleaved(runners, repeats=args.repeats)
        for t in timing.values():
            t["samples_per_s"] = args.batch_size / t["median_s"]
        ort_speedup, torch_speedup = (speedup(timing[f"{rt}_dense"], timing[f"{rt}_sparse"]) for rt in ("ort", "torch"))
        report["benchmark"] = {
            "batch_size": args.batch_size,
            "threads": args.threads or torch.get_num_threads(),
            "timing": timing,
            "speedup_definition": "dense time / sparse time per batch, same runtime (> 1: sparse is faster)",
            "ort_speedup": ort_speedup,
            "torch_speedup": torch_speedup,
        }
        for name, t in timing.items():
            print(
                f"{name:13s} {t['samples_per_s']:8.2f} samples/s  (median {t['median_s']:.3f} s, "
                f"range {t['min_s']:.3f}-{t['max_s']:.3f} s, {t['repeats']} rounds)"
            )
        print(
            f"speed-up of sparse over dense = dense time / sparse time in the same runtime (> 1: sparse is faster); "
            f"median of {args.repeats} interleaved rounds [range of the per-round ratios]:"
        )
        for label, ratio in (("onnxruntime", ort_speedup), ("PyTorch", torch_speedup)):
            noisy = ratio["max"] > 1.5 * ratio["min"]
            print(
                f"  {label:11s} {ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]"
                + ("  (noisy: more --repeats or a larger --batch-size)" if noisy else "")
            )
    from video_sparse.safe_files import write_text

    write_text(out / "report.json", json.dumps(report, indent=1, default=str))
    ok = report["check"]["passed"] and report.get("dense_check", {"passed": True})["passed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
