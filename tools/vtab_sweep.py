"""Fine-tune and test every VTAB-1K task, then write one table with group and overall means.

    python tools/vtab_sweep.py --root /data/vtab-1k --out outputs/vtab -- pretrained=/w/ViT-B_16.npz
    python tools/vtab_sweep.py --root /data/vtab-1k --tasks cifar dtd --nproc 2 -- epochs=50

Each task runs `tools/train.py experiment=vtab data.task=TASK` in its own process (or `--nproc`
processes under torchrun) with the overrides given after `--`; a task whose results.json and adapter.pth
exist is skipped, so an interrupted sweep continues where it stopped (a task killed mid-way resumes).
The table goes to OUT/vtab.md and OUT/vtab.csv, with GFLOPs and trainable parameters beside the accuracies.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from video_sparse.data.vtab import VTAB_TASKS  # noqa: E402
from video_sparse.evaluation import summarize_vtab, write_vtab_table  # noqa: E402


def run_task(task: str, root: str, out: Path, nproc: int, overrides: list[str]) -> Path:
    """Train and test one task unless its results already exist; returns its results.json."""
    results = out / task / "results.json"
    if results.is_file() and (out / task / "adapter.pth").is_file():  # written last: the task ran to its end
        print(f"[{task}] done already: {results}")
        return results
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, str(ROOT / "tools" / "train.py"), "experiment=vtab", f"data.root={root}",
           f"data.task={task}", f"output_dir={out / task}", *overrides]
    print(f"[{task}] {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    if not results.is_file():
        raise RuntimeError(f"[{task}] finished without {results}")
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="VTAB-1K folder with one sub-folder per task")
    parser.add_argument("--out", default="outputs/vtab", help="sweep folder")
    parser.add_argument("--tasks", nargs="+", default=list(VTAB_TASKS), help="subset of tasks (default: all 19)")
    parser.add_argument("--nproc", type=int, default=1, help="processes per task (torchrun)")
    parser.add_argument("--name", default="Sparse-Tuning", help="row name in the table")
    args = parser.parse_args(argv)
    unknown = [t for t in args.tasks if t not in VTAB_TASKS]
    if unknown:
        parser.error(f"unknown VTAB-1K tasks {unknown}; choose from {sorted(VTAB_TASKS)}")
    out = Path(args.out)
    accuracies, costs = {}, {}
    for task in args.tasks:
        record = json.loads(run_task(task, args.root, out, args.nproc, overrides).read_text())
        accuracies[task] = float(record["test"]["top1"])
        costs[task] = (record.get("gflops_per_view"), record.get("trainable_params"))
    result = summarize_vtab(accuracies, name=args.name, allow_missing=len(accuracies) < len(VTAB_TASKS))
    table = write_vtab_table(result, out / "vtab.md", out / "vtab.csv")
    gflops = {round(c[0], 2) for c in costs.values() if c[0] is not None}
    params = {c[1] for c in costs.values() if c[1] is not None}
    footer = (f"\nGFLOPs per image: {', '.join(map(str, sorted(gflops)))}; trainable parameters (M): "
              f"{', '.join(f'{p / 1e6:.3f}' for p in sorted(params))}\n")
    with open(out / "vtab.md", "a") as handle:
        handle.write(footer)
    print(table + footer)


if __name__ == "__main__":
    main()
