"""Per clip: the fraction of tubes the static-tube filter removes and the GMACs with and without it.

    python tools/static_tubes.py --threshold 0.1 CLIP.mp4 [CLIP.avi ...]
    python tools/static_tubes.py --model sparse_videomae_nano_patch16_64 --size 64 --frame-interval 1 \\
        --mean 0.5 0.5 0.5 --std 0.5 0.5 0.5 demo_data/videos/test/test_00000.mp4

Each clip is read as the test split reads it (dense sampling, the centre clip, centre crop) and
normalised; GMACs come from forwards that really drop the tubes (video_sparse.analysis.flops).
Prints a Markdown table (progress per clip goes to the log). A file that cannot be read as a video
stops the tool with one line naming it (exit status 2).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import timm

import video_sparse  # noqa: F401  (registers the models)
from video_sparse.analysis.static_tubes import VIDEOMAE_MEAN, VIDEOMAE_STD, clip_report, load_clip
from video_sparse.data.reader_base import VideoReadError

log = logging.getLogger("static_tubes")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="+", type=Path, help="video files")
    p.add_argument("--model", default="sparse_videomae_base_patch16_224")
    p.add_argument("--threshold", type=float, default=0.1, help="static-tube threshold (normalised input)")
    p.add_argument("--keep-rate", type=float, default=0.7, help="Sparse-Tuning keep rate of the model")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--frame-interval", type=int, default=4)
    p.add_argument("--mean", type=float, nargs=3, default=VIDEOMAE_MEAN)
    p.add_argument("--std", type=float, nargs=3, default=VIDEOMAE_STD)
    return p


def main(argv: list[str] | None = None) -> str:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for clip in args.clips:
        if not clip.is_file():
            print(f"error: {clip}: file not found", file=sys.stderr)
            sys.exit(2)
    model = timm.create_model(
        args.model, num_classes=10, img_size=args.size, num_frames=args.num_frames, keep_rate=args.keep_rate
    ).eval()
    lines = [
        f"| clip | tubes | kept | removed | GMACs | GMACs, static tubes {args.threshold:g} | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for clip in args.clips:
        try:
            x = load_clip(clip, args.num_frames, args.frame_interval, args.size, args.mean, args.std)
        except VideoReadError as err:  # the message names the file
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        r = clip_report(model, x, args.threshold)
        lines.append(
            f"| {clip.name} | {r.tubes} | {r.kept} | {r.removed:.1%} | {r.gmacs:.1f} | {r.gmacs_filtered:.1f} "
            f"| {r.gmacs_filtered / r.gmacs:.2f} |"
        )
        log.info("%s: %d of %d tubes kept (%.1f%% removed)", clip.name, r.kept, r.tubes, 100 * r.removed)
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
