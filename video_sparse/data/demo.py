"""A small synthetic video classification set that needs temporal order.

Each clip shows a randomly textured square (white outline) moving over a static, lower-contrast
textured background. The class is the direction of motion: ``left``, ``right``, ``up``, ``down``
(``classes="axis"``, or only the first two with ``num_classes=2``), or the four diagonals
(``classes="diagonal"``, the source task the demo backbone is pre-trained on). Start positions are
uniform over the frame, speeds random (3-5 px per frame at 64 px) and the square wraps around the
edges, so the frames of every class have the same distribution one by one: no single frame reveals
the class, a model must compare frames in order.

Clips are real H.264 ``.mp4`` files written with PyAV, listed in ``train.txt``, ``val.txt``
and ``test.txt`` (video-list format) with ``labels.txt`` naming the classes. Generation is
deterministic in ``seed`` and idempotent: finished files are reused (each file is written to a
temporary name of its own and renamed when complete, so two processes generating the same set at once
write identical files). ``demo.json`` is written last and removed before a set with other settings
is written over it: a set counts as complete only while it holds the record of its settings.
Note that a horizontal flip swaps ``left`` and ``right``: train on this set with ``hflip=False``, and
with mild crops (e.g. ``min_scale=0.5``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from video_sparse.checkpoint.io import atomic_write
from video_sparse.data.lists import write_label_map, write_list_file

logger = logging.getLogger(__name__)

DEMO_CLASSES = ("left", "right", "up", "down")
DIAGONAL_CLASSES = ("up-left", "up-right", "down-left", "down-right")
CLASS_SETS = {"axis": DEMO_CLASSES, "diagonal": DIAGONAL_CLASSES}
_DIRECTIONS = {
    "left": (0, -1),
    "right": (0, 1),
    "up": (-1, 0),
    "down": (1, 0),
    "up-left": (-1, -1),
    "up-right": (-1, 1),
    "down-left": (1, -1),
    "down-right": (1, 1),
}  # (dy, dx)
_SPLITS = ("train", "val", "test")
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}


def render_motion_clip(
    rng: np.random.Generator, label: int, num_frames: int = 16, size: int = 64, classes: str = "axis"
) -> np.ndarray:
    """Render one clip of class ``label`` (index into ``CLASS_SETS[classes]``).

    The square moves at a constant random speed and wraps around the frame edges, with a start
    position uniform over the whole frame; so in every frame its position is uniform whatever the
    class, and the reversed clip of one class is an equally likely clip of the opposite class:
    only the order of the frames tells the classes apart.

    Returns:
        uint8 frames ``(num_frames, size, size, 3)``.
    """
    cell = max(size // 16, 2)
    grid = rng.integers(80, 160, size=(size // cell + 1, size // cell + 1, 3), dtype=np.uint8)
    background = np.repeat(np.repeat(grid, cell, 0), cell, 1)[:size, :size]
    side = max(3 * size // 8, 4)
    obj_cell = max(side // 8, 1)
    tex = rng.integers(0, 256, size=(side // obj_cell + 1, side // obj_cell + 1, 3), dtype=np.uint8)
    obj = np.repeat(np.repeat(tex, obj_cell, 0), obj_cell, 1)[:side, :side].copy()
    obj[[0, 1, -2, -1], :] = 255
    obj[:, [0, 1, -2, -1]] = 255
    speed = rng.uniform(3.0, 5.0) * size / 64
    dy, dx = _DIRECTIONS[CLASS_SETS[classes][label]]
    y0, x0 = rng.uniform(0, size, 2)
    offsets = np.arange(side)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        y = int(round(y0 + dy * speed * t)) % size
        x = int(round(x0 + dx * speed * t)) % size
        frames[t] = background
        frames[t][np.ix_((y + offsets) % size, (x + offsets) % size)] = obj
    return frames


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: int = 8, codec: str = "libx264", crf: int = 18
) -> None:
    """Encode uint8 ``(T, H, W, 3)`` frames to a video file, atomically (container from the suffix).

    Raises:
        ValueError: a file suffix without a known container.
    """
    import av

    path = Path(path)
    container_format = _CONTAINERS.get(path.suffix.lower())
    if container_format is None:
        raise ValueError(f"{path}: unknown video container {path.suffix!r}; use one of {sorted(_CONTAINERS)}")
    t, h, w, _ = frames.shape

    def encode(f) -> None:
        with av.open(f, "w", format=container_format) as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            if codec in ("libx264", "libvpx-vp9"):
                stream.options = {"crf": str(crf)}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(path, encode)


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def make_demo_dataset(
    root: str | os.PathLike,
    num_train: int = 240,
    num_val: int = 48,
    num_test: int = 48,
    num_frames: int = 16,
    size: int = 64,
    seed: int = 0,
    num_classes: int = 4,
    fps: int = 8,
    classes: str = "axis",
) -> dict[str, str]:
    """Write (or reuse) the motion-direction demo set under ``root``.

    Args:
        root: output folder; videos go to ``root/videos/<split>/``.
        num_train, num_val, num_test: clips per split (classes are balanced, cycling 0..C-1).
        num_frames: frames per clip.
        size: frame side (even, >= 16).
        seed: generation seed (clip ``i`` of a split depends only on seed, split and ``i``).
        num_classes: 4 (left/right/up/down) or 2 (left/right).
        fps: nominal frame rate stored in the files.
        classes: ``"axis"`` (left/right/up/down) or ``"diagonal"`` (the four diagonals).

    Returns:
        ``{"root", "train", "val", "test", "labels"}``: the root and the list / label-map paths.
    """
    if classes not in CLASS_SETS:
        raise ValueError(f"classes must be one of {sorted(CLASS_SETS)}, got {classes!r}")
    if num_classes not in (2, 4):
        raise ValueError(f"num_classes must be 2 or 4, got {num_classes}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16, got {size}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    params = {
        "num_frames": num_frames,
        "size": size,
        "seed": seed,
        "num_classes": num_classes,
        "fps": fps,
        "classes": classes,
        "version": 3,
    }
    meta = root / "demo.json"
    counts = dict(zip(_SPLITS, (num_train, num_val, num_test)))
    record = {"params": params, "counts": counts}
    out = {
        "root": str(root),
        **{split: str(root / f"{split}.txt") for split in _SPLITS},
        "labels": str(root / "labels.txt"),
    }
    previous = _read_meta(meta)
    if previous == record and all(Path(out[key]).is_file() for key in (*_SPLITS, "labels")):
        return out  # complete: read nothing else, write nothing (safe with concurrent readers)
    reuse = previous is not None and previous.get("params") == params
    if previous is not None and previous != record:
        meta.unlink(missing_ok=True)  # the old record must not vouch for files being rewritten
    written = 0
    for split_id, split in enumerate(_SPLITS):
        entries = []
        for i in range(counts[split]):
            label = i % num_classes
            rel = f"videos/{split}/{split}_{i:05d}.mp4"
            file = root / rel
            if not (reuse and file.is_file() and file.stat().st_size > 0):
                rng = np.random.default_rng([seed, split_id, i])
                write_video(file, render_motion_clip(rng, label, num_frames, size, classes), fps=fps)
                written += 1
            entries.append((rel, label))
        write_list_file(out[split], entries)
    write_label_map(out["labels"], CLASS_SETS[classes][:num_classes])
    meta_text = json.dumps(record, indent=1).encode("utf-8")
    atomic_write(meta, lambda f: f.write(meta_text))
    logger.info(
        "demo set in %s: %s clips (%d written, %d reused)", root, counts, written, sum(counts.values()) - written
    )
    return out
