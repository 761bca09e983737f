"""Fixtures for the video data tests: real encoded clips whose frames carry their own index.

Frame ``i`` shows the bits of ``i`` as 8 black/white blocks across the top half (bit 0 on the
left), which survives lossy encoding, resizing and normalisation; the bottom half is mid grey.
"""

from __future__ import annotations

import types
from pathlib import Path

import av  # noqa: F401  (load PyAV's FFmpeg before decord's bundled copy; see readers.py)
import pytest
import torch
from painted_frames import paint_frame, read_index  # noqa: F401  (used by the tests here)

CODECS = {".mp4": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def clip_indices(clip: torch.Tensor, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> list[int]:
    """Painted indices of a normalised (C, T, H, W) clip."""
    m = torch.tensor(mean).view(3, 1, 1, 1)
    s = torch.tensor(std).view(3, 1, 1, 1)
    pixels = ((clip * s + m) * 255).clamp(0, 255).permute(1, 2, 3, 0).numpy()
    return [read_index(f) for f in pixels]


def write_video(
    path: Path,
    num_frames: int,
    height: int = 64,
    width: int = 64,
    fps: int = 25,
    faststart: bool = False,
    gop: int = 10,
) -> Path:
    """Encode a painted clip with PyAV (codec from the extension), a keyframe every ``gop`` frames.

    Short GOPs make readers seek to keyframes other than the first, so exactness tests cover seeking.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(CODECS[path.suffix], rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(paint_frame(i, height, width), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frames(folder: Path, num_frames: int, height: int = 64, width: int = 64) -> Path:
    """Write painted JPEG frames img_00001.jpg ... into ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(paint_frame(i, height, width)).save(folder / f"img_{i + 1:05d}.jpg", quality=95)
    return folder


def truncate(path: Path, fraction: float = 0.6) -> Path:
    """Cut a file to ``fraction`` of its size, in place."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.fixture
def painted():
    """Helpers to write and read painted clips."""
    return types.SimpleNamespace(
        paint_frame=paint_frame,
        read_index=read_index,
        clip_indices=clip_indices,
        write_video=write_video,
        write_frames=write_frames,
        truncate=truncate,
    )


@pytest.fixture(scope="session")
def decord_ok() -> bool:
    from video_sparse.data.readers import decord_available

    return decord_available()
