"""Build video list files: from a folder with one sub-folder per class, or from the public
Kinetics-400 or Something-Something-v2 annotations.

Examples:
    python tools/build_lists.py folders /data/my_videos         # my_videos/<class>/<clip>.mp4
    # -> my_videos/{train,val,test}.txt and labels.txt (80/10/10 per class; --val/--test/--seed)
    python tools/build_lists.py kinetics --videos /data/k400/videos --out /data/k400/lists \
        --csv train=/data/k400/annotations/train.csv --csv val=/data/k400/annotations/validate.csv \
        --label-map data_lists/kinetics400_labels.txt
    python tools/build_lists.py ssv2 --videos /data/ssv2/videos --out /data/ssv2/lists \
        --labels /data/ssv2/labels/something-something-v2-labels.json \
        --split train=/data/ssv2/labels/something-something-v2-train.json \
        --split val=/data/ssv2/labels/something-something-v2-validation.json

For annotations: prints one summary line per split; videos missing on disk and unmappable labels are listed in
``<out>/<split>_missing.txt`` and ``<out>/<split>_unmapped.txt``. Exit status 1 when a split
ends up empty.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from video_sparse.data.prepare.annotations import build_kinetics_lists, build_ssv2_lists
from video_sparse.data.prepare.folders import build_folder_lists


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        split, sep, path = value.partition("=")
        if not sep or not split or not path:
            raise SystemExit(f"{flag} expects SPLIT=PATH, got {value!r}")
        out[split] = path
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "), formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    sub = parser.add_subparsers(dest="dataset", required=True)
    folders = sub.add_parser(
        "folders",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="one sub-folder per class (UCF-101/HMDB layout, most own data)",
    )
    folders.add_argument("root", help="folder holding one sub-folder of videos per class")
    folders.add_argument("--out", help="output folder for the lists (None: ROOT itself)")
    folders.add_argument("--val", type=float, default=0.1, help="share of each class for validation")
    folders.add_argument("--test", type=float, default=0.1, help="share of each class for the test")
    folders.add_argument("--seed", type=int, default=0, help="seed of the per-class shuffle")
    k400 = sub.add_parser("kinetics", help="Kinetics CSVs (label,youtube_id,time_start,time_end,...)")
    k400.add_argument("--csv", action="append", required=True, metavar="SPLIT=PATH", help="annotation CSV per split")
    k400.add_argument("--label-map", help="class names in index order (default: sorted labels of the CSVs)")
    ssv2 = sub.add_parser("ssv2", help="Something-Something-v2 JSON annotations")
    ssv2.add_argument("--labels", required=True, help="something-something-v2-labels.json")
    ssv2.add_argument("--split", action="append", required=True, metavar="SPLIT=PATH", help="split JSON")
    for p in (k400, ssv2):
        p.add_argument(
            "--videos", required=True, help="folder of the downloaded videos (list paths are relative to it)"
        )
        p.add_argument("--out", required=True, help="output folder for the lists and reports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.dataset == "folders":
        return _folders(args)
    try:
        if args.dataset == "kinetics":
            reports = build_kinetics_lists(_pairs(args.csv, "--csv"), args.videos, args.out, args.label_map)
        else:
            reports = build_ssv2_lists(args.labels, _pairs(args.split, "--split"), args.videos, args.out)
    except (ValueError, FileNotFoundError) as err:  # bad annotations, split names leaving --out
        print(f"error: {err}", file=sys.stderr)
        return 2
    for report in reports:
        print(report.summary())
        if report.missing:
            print(f"  missing on disk (first 5): {report.missing[:5]}")
        if report.unmapped:
            print(f"  unmapped labels: {dict(report.unmapped.most_common(5))}")
    return 1 if any(r.num_written == 0 for r in reports) else 0


def _folders(args: argparse.Namespace) -> int:
    try:
        result = build_folder_lists(args.root, args.out, args.val, args.test, args.seed)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    for name, path in result.files.items():
        print(f"  {name}: {path}")
    root = Path(args.root)
    lists = (
        ""
        if args.out is None
        else "".join(
            f" data.{split}_list={result.files[split]}" for split in ("train", "val", "test") if split in result.files
        )
        + f" data.label_map={result.files['labels']}"
    )
    print(f"next: python tools/train.py data=custom data.root={root}{lists} name={root.resolve().name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
