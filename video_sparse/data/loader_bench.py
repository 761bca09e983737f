"""Throughput of a training DataLoader (clips per second), for ``tools/bench_loader.py``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from video_sparse.data.collate import collate_samples
from video_sparse.data.demo import write_video
from video_sparse.data.lists import write_list_file
from video_sparse.data.readers import PyAVReader, open_video


@dataclass
class LoaderTiming:
    """Result of :func:`benchmark_loader`.

    Attributes:
        clips: clips timed (the second epoch).
        seconds: wall time for those clips.
        first_batch_s: time to the first batch (includes worker start-up).
    """

    clips: int
    seconds: float
    first_batch_s: float

    @property
    def clips_per_s(self) -> float:
        """Steady-state throughput."""
        return self.clips / self.seconds if self.seconds > 0 else float("inf")


def benchmark_loader(
    dataset: Dataset,
    num_workers: int = 0,
    batch_size: int = 4,
    num_batches: int = 10,
    multiprocessing_context: str | None = None,
    seed: int = 0,
) -> LoaderTiming:
    """Time one epoch of ``num_batches`` batches of a shuffling DataLoader, after a warm-up epoch.

    Workers are persistent, so the warm-up epoch absorbs worker start-up (imports, first file
    opens) and the timed epoch measures steady-state throughput.

    Args:
        dataset: the dataset (sampled with replacement, so it may hold fewer items than drawn).
        num_workers: DataLoader workers.
        batch_size: clips per batch.
        num_batches: batches per epoch.
        multiprocessing_context: e.g. ``"spawn"`` for decord.
        seed: sampler seed.
    """
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=num_batches * batch_size, generator=torch.Generator().manual_seed(seed)
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        persistent_workers=num_workers > 0,
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
    )
    start = time.perf_counter()
    first = None
    for _ in loader:
        if first is None:
            first = time.perf_counter() - start
    start, clips = time.perf_counter(), 0
    for batch in loader:
        clips += int(batch["label"].numel())
    seconds = time.perf_counter() - start
    del loader
    return LoaderTiming(clips=clips, seconds=seconds, first_batch_s=first or 0.0)


def link_videos(sources: list[str | os.PathLike], out_root: str | os.PathLike) -> str:
    """Link real videos, as they are, into ``out_root`` and write their list (``name 0`` lines).

    Returns:
        Path of the list file.
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    for src in sources:
        link = out_root / Path(src).name
        if not link.exists():
            link.symlink_to(Path(src).resolve())
    list_file = out_root / "videos.txt"
    write_list_file(list_file, [(Path(s).name, 0) for s in sources])
    return str(list_file)


def make_benchmark_clips(
    sources: list[str | os.PathLike],
    out_root: str | os.PathLike,
    num_clips: int = 32,
    num_frames: int = 64,
    short_side: int = 256,
    size: tuple[int, int] | None = None,
) -> str:
    """Cut real videos into ``num_clips`` H.264 clips of ``num_frames`` frames (short side resized,
    or every frame resized to ``size = (width, height)``, e.g. Kinetics' 340x256).

    Segments are taken in turn from the sources (consecutive, non-overlapping) and reused
    cyclically when there are fewer segments than clips. Existing clips are kept.

    Returns:
        Path of the written video list (``clip_XXXX.mp4 0`` lines) under ``out_root``.
    """
    from PIL import Image

    out_root = Path(out_root)
    segments: list[np.ndarray] = []
    wanted = [out_root / f"clip_{i:04d}.mp4" for i in range(num_clips)]
    if not all(p.is_file() for p in wanted):
        for src in sources:
            with PyAVReader(src) as reader:
                buffer = []
                for frame in reader.iter_frames():
                    img = Image.fromarray(frame)
                    scale = short_side / min(img.size)
                    out_size = size or (2 * round(img.size[0] * scale / 2), 2 * round(img.size[1] * scale / 2))
                    buffer.append(np.asarray(img.resize(out_size, Image.Resampling.BILINEAR)))
                    if len(buffer) == num_frames:
                        segments.append(np.stack(buffer))
                        buffer = []
        if not segments:
            raise ValueError(f"no source video has {num_frames} frames: {[str(s) for s in sources]}")
        for i, path in enumerate(wanted):
            if not path.is_file():
                write_video(path, segments[i % len(segments)], fps=25, crf=23)
    list_file = out_root / "clips.txt"
    write_list_file(list_file, [(p.name, 0) for p in wanted])
    return str(list_file)


def cpu_ms_per_clip(
    paths: list[str | os.PathLike],
    backends: list[str],
    num_frames: int = 16,
    frame_interval: int = 4,
    rounds: int = 3,
    seed: int = 0,
) -> dict[str, list[float]]:
    """CPU time (this process, so little affected by other jobs) to open a video and read one
    training clip (dense sampling), per backend, interleaved round by round.

    Args:
        paths: video files; each round reads one random clip of every file with every backend.
        backends: names for :func:`open_video` (``"frames"`` is not a video backend).
        num_frames, frame_interval: the clip (dense sampling).
        rounds: rounds; backends alternate inside a round so load changes hit them alike.
        seed: clip start seed.

    Returns:
        ``{backend: [median ms per clip of each round]}``.
    """
    from video_sparse.data.clip_sampling import dense_indices

    out: dict[str, list[float]] = {b: [] for b in backends}
    gen = torch.Generator().manual_seed(seed)
    for _ in range(rounds):
        per_file: dict[str, list[float]] = {b: [] for b in backends}
        for path in paths:
            start_seed = int(torch.randint(1 << 30, (1,), generator=gen))
            for backend in backends:
                t0 = time.process_time()
                with open_video(path, backend) as reader:
                    idx = dense_indices(
                        reader.num_frames,
                        num_frames,
                        frame_interval,
                        "train",
                        generator=torch.Generator().manual_seed(start_seed),
                    )
                    reader.get_frames(idx)
                per_file[backend].append(1000 * (time.process_time() - t0))
        for backend in backends:
            out[backend].append(float(np.median(per_file[backend])))
    return out
