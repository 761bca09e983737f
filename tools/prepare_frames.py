"""Extract the frames of a folder of videos into frame folders and write the frame list.

Example:
    python tools/prepare_frames.py --videos /data/ssv2/videos --list /data/ssv2/lists/train.txt \
        --out /data/ssv2/frames --out-list /data/ssv2/lists/train_frames.txt \
        --short-side 256 --quality 90 --workers 8

Without ``--list`` every video under ``--videos`` is extracted and labelled by its parent folder
name through ``--label-map``. Rerunning skips folders proven complete by their ``.frames.json`` record
(frame count, written last) and extracts any other again. A second run into the same ``--out`` is
refused while the first lives (``--out/prepare_frames.lock``). Undecodable videos are listed in
``<out-list>.failures.txt`` (or ``--failures``) and left out of the list; the run continues.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from video_sparse.data.prepare.frames import prepare_frames
from video_sparse.engine.run_lock import RunLockedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--videos", required=True, help="folder of the videos")
    parser.add_argument("--out", required=True, help="output folder of the frame folders")
    parser.add_argument("--out-list", required=True, help="frame list to write (folder NUM_FRAMES LABEL)")
    parser.add_argument("--list", help="video list (path LABEL) selecting and labelling the videos")
    parser.add_argument("--label-map", help="class names (for name labels, or labels from folder names)")
    parser.add_argument("--short-side", type=int, default=256, help="resize the short side (0: keep size)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (0: none)")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("pyav", "decord", "torchcodec", "auto"),
        help="decoder; auto: per file, the first exact backend (as data.backend in training)",
    )
    parser.add_argument("--failures", help="failures file (default <out-list>.failures.txt)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = prepare_frames(
            args.videos,
            args.out,
            args.out_list,
            list_file=args.list,
            label_map=args.label_map,
            short_side=args.short_side or None,
            quality=args.quality,
            workers=args.workers,
            backend=args.backend,
            failures_file=args.failures,
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError, RunLockedError) as err:  # bad list lines, paths leaving --out, a live run
        print(f"error: {err}", file=sys.stderr)
        return 2
    stale = Path(args.failures or f"{args.out_list}.failures.txt")
    if not report.failures and stale.is_file():  # a clean re-run leaves no old failures behind
        stale.unlink()
    print(
        f"{report.num_extracted} extracted, {report.num_skipped} already complete, "
        f"{len(report.failures)} failed; frame list: {report.out_list}"
    )
    for path, error in report.failures[:5]:
        print(f"  failed: {path}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
