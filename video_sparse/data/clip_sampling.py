"""Temporal clip sampling: dense (Kinetics-400) and segment-based (Something-Something-v2).

Both samplers return 0-based frame indices, clamped to ``[0, num_total - 1]``, so a video that
is shorter than the clip repeats its last frame (dense) or some frames (segment).
Randomness (training only) comes from ``torch``'s global generator unless one is passed, so
DataLoader worker seeding and ``torch.manual_seed`` make it reproducible.

Modes: ``"train"`` random, ``"val"`` one centred clip, ``"test"`` clip ``clip_index`` of
``num_clips`` deterministic clips that differ from each other.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MODES = ("train", "val", "test")
SAMPLINGS = ("dense", "segment")


def _check(num_total: int, num_frames: int, mode: str, clip_index: int, num_clips: int) -> None:
    if num_total <= 0:
        raise ValueError(f"cannot sample from a video with {num_total} frames")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if num_clips <= 0 or not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index {clip_index} out of range for num_clips={num_clips}")


def dense_indices(
    num_total: int,
    num_frames: int = 16,
    frame_interval: int = 4,
    mode: str = "train",
    clip_index: int = 0,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Dense sampling: ``num_frames`` frames ``frame_interval`` apart from one start frame.

    The clip spans ``(num_frames - 1) * frame_interval + 1`` frames. Training draws the start
    uniformly; validation centres the clip; test clip ``k`` of ``n`` starts at
    ``round(k * (num_total - span) / (n - 1))`` (evenly spread from the first to the last
    possible start; the centre when ``n == 1``).

    Returns:
        int64 array ``(num_frames,)``.
    """
    _check(num_total, num_frames, mode, clip_index, num_clips)
    if frame_interval <= 0:
        raise ValueError(f"frame_interval must be positive, got {frame_interval}")
    span = (num_frames - 1) * frame_interval + 1
    max_start = max(num_total - span, 0)
    if mode == "train":
        start = int(torch.randint(max_start + 1, (1,), generator=generator))
    elif mode == "val" or num_clips == 1:
        start = max_start // 2
    else:
        start = int(round(clip_index * max_start / (num_clips - 1)))
    idx = start + np.arange(num_frames, dtype=np.int64) * frame_interval
    return np.minimum(idx, num_total - 1)


def segment_indices(
    num_total: int,
    num_segments: int = 16,
    mode: str = "train",
    clip_index: int = 0,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Segment sampling: split the video into ``num_segments`` equal segments, one frame each.

    Segment ``j`` covers ``[j * L, (j + 1) * L)`` with ``L = num_total / num_segments``. Training
    takes a uniformly random position in each segment; validation the centre; test clip ``k`` of
    ``n`` the offset ``(k + 0.5) / n`` of each segment, so the ``n`` test clips are distinct
    whenever a segment holds at least ``n`` frames.

    Returns:
        int64 array ``(num_segments,)``.
    """
    _check(num_total, num_segments, mode, clip_index, num_clips)
    length = num_total / num_segments
    if mode == "train":
        offsets = torch.rand(num_segments, generator=generator, dtype=torch.float64).numpy()
    elif mode == "val":
        offsets = np.full(num_segments, 0.5)
    else:
        offsets = np.full(num_segments, (clip_index + 0.5) / num_clips)
    pos = (np.arange(num_segments) + offsets) * length
    idx = np.array([math.floor(p) for p in pos], dtype=np.int64)
    return np.clip(idx, 0, num_total - 1)


def sample_indices(
    sampling: str,
    num_total: int,
    num_frames: int,
    frame_interval: int,
    mode: str,
    clip_index: int = 0,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Dispatch to :func:`dense_indices` or :func:`segment_indices` (``frame_interval`` unused there)."""
    if sampling == "dense":
        return dense_indices(num_total, num_frames, frame_interval, mode, clip_index, num_clips, generator)
    if sampling == "segment":
        return segment_indices(num_total, num_frames, mode, clip_index, num_clips, generator)
    raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
