"""The method study in one command: every method trained through the training recipe on the same
data, one table (Markdown + CSV), plots and the paper's claim checked.

    python tools/study.py                          # image study: DINOv2 ViT-S/14 on Fashion-MNIST
    python tools/study.py --quick                  # the whole grid on a tiny subset (a minute or two)
    python tools/study.py --device cuda --resolution 224 --epochs 20
    python tools/study.py --methods 'sparse_*' dense_adapter --plan   # print the plan and time only
    python tools/study.py --task video             # the demo backbone on the demo's motion task
    python tools/study.py -- optim.optimizer.weight_decay=0  # Hydra overrides for every member after --
    python tools/study.py --seeds A B C --out S    # studies A, B, C at three seeds: mean and spread

Each member is ``FinetuneRecipe`` (the engine of tools/train.py, DeepSpeed included) on the
experiment ``study_fashion_mnist`` or ``study_video`` plus the member's overrides (see
video_sparse/analysis/study.py). A member whose ``study.json`` exists is skipped, and a member
interrupted mid-training resumes from its last epoch checkpoint, so an interrupted study continues
where it stopped. By default every member runs in a fresh process so that its peak memory is its
own; ``--in-process`` (implied by ``--quick``) runs them in this process, faster to start.
Outputs: OUT/study.md, OUT/study.csv, OUT/study.png, OUT/keep_curve.{md,csv}, OUT/members/NAME/;
with --seeds: OUT/seeds.md, OUT/seeds.csv, OUT/seeds.png.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from video_sparse.analysis import study
from video_sparse.analysis.study_run import StudyOptions, run_study
from video_sparse.engine.config import parse_with_overrides
from video_sparse.engine.logging_utils import setup_logging
from video_sparse.safe_files import ensure_dir, open_append

log = logging.getLogger("study")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(study.EXPERIMENTS), default="image")
    p.add_argument("--quick", action="store_true", help="the whole grid on a tiny subset, 1 epoch (tests)")
    p.add_argument("--out", type=Path, help="study folder (default outputs/study/TASK[_quick])")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--resolution", type=int, help="input side in pixels (default: 84 image, 64 video)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--train-images", type=int, help="class-balanced training images (default 1000; video: clips)")
    p.add_argument("--test-images", type=int, help="class-balanced test subset (default: all 10,000)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int, default=2, help="data-loader workers")
    p.add_argument("--seed", type=int, default=0, help="training seed and seed of the image subsets")
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
    p.add_argument(
        "--seeds",
        nargs="+",
        type=Path,
        metavar="STUDY_DIR",
        help="summarise finished studies of one regime at different seeds into --out (runs nothing)",
    )
    p.add_argument("--member", type=Path, help=argparse.SUPPRESS)  # one member's spec, in this process
    return parse_with_overrides(p, argv)


def summarize(folders: list[Path], out: Path) -> int:
    """``--seeds``: the seed table, the claim check over seeds and the plot, written under ``out``."""
    from video_sparse.analysis.study_seeds import plot_seeds, seed_claim_check, summarize_seeds, write_seed_table

    ensure_dir(out)
    setup_logging(out, True)
    try:
        summaries = summarize_seeds(folders)
    except ValueError as err:
        log.error("%s", err)
        return 2
    header = "Studies: " + ", ".join(str(f) for f in folders) + "\n"
    table = write_seed_table(summaries, out / "seeds.md", out / "seeds.csv", header=header)
    claim = seed_claim_check(summaries)
    with open_append(out / "seeds.md") as handle:
        handle.write("\nClaim over seeds (Sparse-Tuning keep 0.7 vs Dense Adapters keep 1.0):\n" + "\n".join(claim))
        handle.write("\n")
    try:
        plot_seeds(summaries, out / "seeds.png", title=f"{len(folders)} studies, one seed each")
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
    log.info("seed summary (%s):\n%s%s", out / "seeds.md", table, "\n".join(claim))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, overrides = parse_args(argv)
    if args.member:
        from video_sparse.analysis.study_member import run_member_from_spec_file

        run_member_from_spec_file(args.member)
        return 0
    if args.seeds:
        if args.out is None:
            sys.exit("error: --seeds needs --out (the folder the summary is written to)")
        return summarize(args.seeds, args.out)
    options = StudyOptions(
        task=args.task,
        quick=args.quick,
        out=args.out,
        device=args.device,
        resolution=args.resolution,
        epochs=args.epochs,
        train_images=args.train_images,
        test_images=args.test_images,
        batch_size=args.batch_size,
        workers=args.workers,
        seed=args.seed,
        threads=args.threads,
        methods=args.methods,
        fashion_mnist=args.fashion_mnist,
        in_process=args.in_process,
        keep_curve=not args.no_keep_curve,
        plan_only=args.plan,
        overrides=overrides,
        command=f"python tools/study.py {shlex.join(argv)}".rstrip(),
    )
    try:
        return run_study(options)
    except ValueError as err:  # a --methods pattern that matches no member
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    sys.exit(main())
