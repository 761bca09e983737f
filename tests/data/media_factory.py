"""Small video files built like the ones users bring, for the reader conformance suite.

Every frame carries its index in its pixels (:func:`conftest.paint_frame`), so which frame a reader
returned can be read back after any lossy codec, resize or rotation. :data:`CASES` is the matrix:
codec x container x B-frames x variable frame rate x display rotation x odd or small sizes x
a mid-stream resolution change x a longer audio track.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from painted_frames import paint_frame


@dataclass(frozen=True)
class Case:
    """One generated file.

    Attributes:
        name: test id (also the file stem).
        codec: PyAV encoder name.
        ext: file extension; ``fmt`` overrides the container guessed from it.
        bframes: maximum consecutive B-frames (``None``: the encoder's default).
        vfr: irregular frame durations (timestamps in ms).
        rotation, hflip: display matrix written into the stream (counter-clockwise degrees).
        sizes: ``(width, height, frames)`` runs; more than one run changes resolution mid-stream.
        audio_s: seconds of an AAC/Opus track added (longer than the video when > 1.3 s).
        sar: sample (pixel) aspect ratio written into the stream (``None``: square pixels).
    """

    name: str
    codec: str
    ext: str
    bframes: int | None = 0
    vfr: bool = False
    rotation: int = 0
    hflip: bool = False
    sizes: tuple[tuple[int, int, int], ...] = ((64, 48, 32),)
    fmt: str | None = None
    pix_fmt: str = "yuv420p"
    audio_s: float = 0.0
    sar: Fraction | None = None
    options: dict = field(default_factory=dict, hash=False)

    @property
    def num_frames(self) -> int:
        return sum(n for _, _, n in self.sizes)

    @property
    def filename(self) -> str:
        return f"{self.name}{self.ext}"


CASES = (
    Case("h264_mp4_b", "libx264", ".mp4", bframes=3),
    Case("h264_mp4_vfr", "libx264", ".mp4", bframes=2, vfr=True),
    Case("h264_mkv_b_vfr", "libx264", ".mkv", bframes=3, vfr=True),
    Case("h264_avi_b", "libx264", ".avi", bframes=3),
    Case("mpeg4_avi_b", "mpeg4", ".avi", bframes=2),
    Case("mpeg4_mp4_b", "mpeg4", ".mp4", bframes=2),
    Case("h264_ts_b", "libx264", ".ts", bframes=3, fmt="mpegts"),
    Case("h264_raw_b", "libx264", ".h264", bframes=3, fmt="h264"),
    Case("hevc_mp4_b", "libx265", ".mp4", bframes=None, options={"x265-params": "log-level=error"}),
    Case("hevc_mkv_b", "libx265", ".mkv", bframes=None, options={"x265-params": "log-level=error"}),
    Case("vp8_webm", "libvpx", ".webm", bframes=None),
    Case("vp9_webm_odd", "libvpx-vp9", ".webm", bframes=None, sizes=((63, 47, 32),)),
    Case("av1_mkv", "libsvtav1", ".mkv", bframes=None, sizes=((64, 64, 24),)),
    Case("mjpeg_avi_odd", "mjpeg", ".avi", bframes=None, sizes=((63, 47, 24),), pix_fmt="yuvj420p"),
    Case("mjpeg_mov", "mjpeg", ".mov", bframes=None, pix_fmt="yuvj422p"),
    Case("h264_mp4_small", "libx264", ".mp4", bframes=2, sizes=((40, 32, 24),)),
    Case("h264_mp4_rot90", "libx264", ".mp4", bframes=2, rotation=90),
    Case("h264_mp4_rot180", "libx264", ".mp4", bframes=2, rotation=180),
    Case("h264_mp4_rot270", "libx264", ".mp4", bframes=2, rotation=270),
    Case("h264_mov_hflip", "libx264", ".mov", bframes=2, hflip=True),
    Case("vp8_webm_resize", "libvpx", ".webm", bframes=None, sizes=((64, 48, 12), (48, 64, 12))),
    Case("h264_mp4_sar", "libx264", ".mp4", bframes=2, sizes=((48, 48, 24),), sar=Fraction(4, 3)),
    Case("h264_mp4_long_audio", "libx264", ".mp4", bframes=2, audio_s=4.0),
    Case("vp9_webm_long_audio", "libvpx-vp9", ".webm", bframes=None, audio_s=4.0),
)


def _mux_audio(container, stream, seconds: float) -> None:
    rate, codec = 48000, stream.codec_context.name
    samples = 960 if codec == "libopus" else 1024
    t = 0
    while t < seconds * rate:
        tone = (0.1 * np.sin(np.arange(t, t + samples) / 20.0)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp" if codec == "aac" else "flt", layout="mono")
        frame.sample_rate, frame.pts = rate, t
        for packet in stream.encode(frame):
            container.mux(packet)
        t += samples
    for packet in stream.encode():
        container.mux(packet)


def _encoder_like(stream, width: int, height: int, case: Case):
    encoder = av.CodecContext.create(case.codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, case.pix_fmt
    encoder.time_base, encoder.framerate, encoder.gop_size = Fraction(1, 25), Fraction(25), 8
    encoder.open()
    return encoder


def _mux(container, stream, packets) -> None:
    for packet in packets:
        packet.stream = stream
        container.mux(packet)


def write_case(case: Case, folder: Path) -> Path:
    """Encode ``case`` into ``folder / case.filename``; return the path."""
    path = folder / case.filename
    width, height, _ = case.sizes[0]
    with av.open(str(path), "w", format=case.fmt) as container:
        stream = container.add_stream(case.codec, rate=25, options=dict(case.options))
        stream.width, stream.height, stream.pix_fmt = width, height, case.pix_fmt
        stream.codec_context.gop_size = 8
        if case.bframes is not None:
            stream.codec_context.max_b_frames = case.bframes
        if case.vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        if case.sar:
            stream.codec_context.sample_aspect_ratio = case.sar
        if case.rotation or case.hflip:
            stream.set_display_rotation(case.rotation, hflip=case.hflip)
        audio = None
        if case.audio_s:  # streams are declared before the first packet is written
            audio = container.add_stream("libopus" if case.ext == ".webm" else "aac", rate=48000)
            audio.layout = "mono"
        index, t_ms = 0, 0
        for run, (w, h, n) in enumerate(case.sizes):
            # a new resolution restarts the encoder (as a browser's recorder does) in the same stream
            encoder = stream.codec_context if run == 0 else _encoder_like(stream, w, h, case)
            for _ in range(n):
                frame = av.VideoFrame.from_ndarray(paint_frame(index, h, w), format="rgb24")
                if case.vfr:
                    frame.pts, frame.time_base = t_ms, Fraction(1, 1000)
                    t_ms += (20, 40, 80, 33)[index % 4]
                else:
                    frame.pts, frame.time_base = index, Fraction(1, 25)
                _mux(container, stream, encoder.encode(frame))
                index += 1
            _mux(container, stream, encoder.encode(None))
        if audio is not None:
            _mux_audio(container, audio, case.audio_s)
    return path


def sequential_reference(
    path: Path, hflip: bool = False, sar: Fraction | None = None
) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of a plain sequential PyAV decode, shown as a player shows it.

    Independent of the readers: a size change is resized to the first frame's size with PIL (its
    width times ``sar`` for non-square pixels), then the frame is rotated by PyAV's
    ``frame.rotation`` (counter-clockwise degrees) or, for a file written with ``hflip``, mirrored
    left-right.

    Returns:
        (frames as uint8 (H, W, 3), the index painted in each frame as decoded).
    """
    from painted_frames import read_index
    from PIL import Image

    out, painted, rotation, first = [], [], 0, None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            if first is None:
                first, rotation = rgb.shape[:2], int(frame.rotation)
                if sar:
                    first = (first[0], round(first[1] * sar))
            painted.append(read_index(rgb))
            if rgb.shape[:2] != first:
                rgb = np.asarray(Image.fromarray(rgb).resize(first[::-1], Image.Resampling.BILINEAR))
            out.append(np.ascontiguousarray(rgb[:, ::-1] if hflip else np.rot90(rgb, rotation // 90)))
    return out, painted
