"""Fine-tune and test every VTAB-1K task, then write one table with group and overall means.

    python tools/vtab_sweep.py --root /data/vtab-1k --out outputs/vtab -- pretrained=/w/ViT-B_16.npz
    torchrun --nproc_per_node 2 tools/vtab_sweep.py --root /data/vtab-1k --tasks cifar dtd -- epochs=50

A thin loop over the training recipe: each task is ``tools/train.py experiment=vtab data.task=TASK`` plus
the overrides after ``--``, run in this process (under torchrun, every process runs the loop together).
A task whose results.json and adapter.pth exist is skipped, so an interrupted sweep continues where it
stopped (a task killed mid-way resumes). The table goes to OUT/vtab.md and OUT/vtab.csv, with GMACs and
trainable parameters beside the accuracies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from video_sparse.data.vtab import VTAB_TASKS
from video_sparse.engine.config import compose_config, exit_on_user_error, parse_with_overrides
from video_sparse.evaluation import summarize_vtab, write_vtab_table
from video_sparse.safe_files import open_append


def run_task(task: str, root: str, out: Path, overrides: list[str]) -> Path:
    """Train and test one task unless its results already exist; returns its results.json."""
    from video_sparse.engine.finetune import run_training

    results = out / task / "results.json"
    if results.is_file() and (out / task / "adapter.pth").is_file():  # written last: the task ran to its end
        print(f"[{task}] done already: {results}")
        return results
    task_overrides = [
        "experiment=vtab",
        f"data.root={root}",
        f"data.task={task}",
        f"output_dir={out / task}",
        *overrides,
    ]
    print(f"[{task}] {' '.join(task_overrides)}", flush=True)
    run_training(compose_config(task_overrides))
    if not results.is_file():
        raise RuntimeError(f"[{task}] finished without {results}")
    return results


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="VTAB-1K folder with one sub-folder per task")
    parser.add_argument("--out", default="outputs/vtab", help="sweep folder")
    parser.add_argument("--tasks", nargs="+", default=list(VTAB_TASKS), help="subset of tasks (default: all 19)")
    parser.add_argument("--name", default="Sparse-Tuning", help="row name in the table")
    args, overrides = parse_with_overrides(parser, argv)
    unknown = [t for t in args.tasks if t not in VTAB_TASKS]
    if unknown:
        parser.error(f"unknown VTAB-1K tasks {unknown}; choose from {sorted(VTAB_TASKS)}")
    out = Path(args.out).expanduser()  # `--out=~/x` reaches here unexpanded
    args.root = str(Path(args.root).expanduser())
    accuracies, costs = {}, {}
    for task in args.tasks:
        record = json.loads(run_task(task, args.root, out, overrides).read_text())
        accuracies[task] = float(record["test"]["top1"])
        costs[task] = (record.get("gmacs_per_view"), record.get("trainable_params"))
    result = summarize_vtab(accuracies, name=args.name, allow_missing=len(accuracies) < len(VTAB_TASKS))
    table = write_vtab_table(result, out / "vtab.md", out / "vtab.csv")
    gmacs = {round(c[0], 2) for c in costs.values() if c[0] is not None}
    params = {c[1] for c in costs.values() if c[1] is not None}
    footer = (
        f"\nGMACs per image: {', '.join(map(str, sorted(gmacs)))}; trainable parameters (M): "
        f"{', '.join(f'{p / 1e6:.3f}' for p in sorted(params))}\n"
    )
    with open_append(out / "vtab.md") as handle:
        handle.write(footer)
    print(table + footer)


if __name__ == "__main__":
    main()
