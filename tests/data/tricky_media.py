"""Video files whose container disagrees with the frames a player shows, built as users' files are.

- a JPEG thumbnail (cover art) muxed as an attached-picture MJPEG stream, placed before or after
  the real track (phone and drone MP4s);
- a one-frame still track and several real tracks in one Matroska file;
- MP4/MOV trimmed by stream copy at a non-keyframe: the lead-in frames stay in the file and an
  edit list hides them (packets with negative timestamps), or a start delay (positive ones);
- valid videos smaller than 1 KB.

Every frame carries its index (:func:`painted_frames.paint_frame`). The reference of each file is
:func:`displayed_frames`, a sequential decode of the stream the test names.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from painted_frames import paint_frame, read_index
from PIL import Image


def _encode(stream, num_frames: int, height: int, width: int, first: int = 0) -> list[av.Packet]:
    packets = []
    for i in range(num_frames):
        frame = av.VideoFrame.from_ndarray(paint_frame(first + i, height, width), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 25)
        packets += stream.encode(frame)
    return packets + list(stream.encode(None))


def _h264(container, width: int = 64, height: int = 48, bframes: int = 2, gop: int = 8):
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.max_b_frames, stream.codec_context.gop_size = bframes, gop
    return stream


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 200, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _mp4_boxes(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """(type, offset, size) of the boxes between ``start`` and ``end``."""
    out, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0] if size == 1 else (size or end - pos)
        out.append((kind.decode("latin-1"), pos, size))
        pos += size
    return out


def _move_udta_first(path: Path) -> None:
    """Put the ``udta`` box (holding ``covr``) before the tracks in ``moov``: FFmpeg then lists the
    thumbnail as stream 0. Chunk offsets point into ``mdat`` (before ``moov``) and do not move."""
    data = path.read_bytes()
    kind, start, size = next(b for b in _mp4_boxes(data, 0, len(data)) if b[0] == "moov")
    children = _mp4_boxes(data, start + 8, start + size)
    body = b"".join(data[p : p + n] for _, p, n in sorted(children, key=lambda b: b[0] != "udta"))
    path.write_bytes(data[: start + 8] + body + data[start + size :])


def write_with_thumbnail(path: Path, num_frames: int = 40, thumbnail_first: bool = True) -> Path:
    """A 64x48 H.264 track plus a 160x120 JPEG ``covr`` thumbnail (attached picture); in an MP4
    the thumbnail is stream 0 when ``thumbnail_first``, in a Matroska file it is an MJPEG track."""
    with av.open(str(path), "w") as container:
        thumb = container.add_stream("mjpeg", rate=1)
        thumb.width, thumb.height, thumb.pix_fmt = 160, 120, "yuvj420p"
        thumb.disposition = av.stream.Disposition.attached_pic
        video = _h264(container)
        packet = av.Packet(_jpeg(160, 120))
        packet.stream, packet.pts, packet.dts, packet.is_keyframe = thumb, 0, 0, True
        container.mux(packet)
        for packet in _encode(video, num_frames, 48, 64):
            container.mux(packet)
    if thumbnail_first and path.suffix in (".mp4", ".mov"):
        _move_udta_first(path)
    return path


def write_tracks(path: Path, tracks: list[tuple[int, int, int]], default: int | None = None) -> Path:
    """Several H.264 video tracks ``(width, height, frames)``; track ``k`` paints ``100 * k + i``
    into frame ``i``; only track ``default`` (if any) carries the default disposition."""
    with av.open(str(path), "w") as container:
        streams = [_h264(container, w, h) for w, h, _ in tracks]
        for k, stream in enumerate(streams):
            flag = av.stream.Disposition.default if k == default else av.stream.Disposition(0)
            stream.disposition = flag
        for k, (stream, (w, h, n)) in enumerate(zip(streams, tracks, strict=True)):
            for packet in _encode(stream, n, h, w, first=100 * k if n > 1 else 0):
                container.mux(packet)
    return path


def write_shifted(path: Path, shift: int, num_frames: int = 40, bframes: int = 2) -> Path:
    """A painted clip whose packets are muxed ``shift`` frames late (> 0: a start delay) or early
    (< 0: the first ``-shift`` frames get negative timestamps, which the MP4 muxer hides behind an
    edit list, as a stream-copy trim at a non-keyframe leaves them)."""
    with av.open(str(path), "w") as container:
        video = _h264(container, bframes=bframes)
        for packet in _encode(video, num_frames, 48, 64):
            step = packet.duration or int(1 / (25 * packet.time_base))
            packet.pts += shift * step
            packet.dts += shift * step
            container.mux(packet)
    return path


def write_tiny(path: Path) -> Path:
    """A valid three-frame 16x16 video under 1 KB: VP8 for ``.webm``, MPEG-4 Part 2 otherwise."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx" if path.suffix == ".webm" else "mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for packet in _encode(stream, 3, 16, 16):
            container.mux(packet)
    return path


def displayed_frames(path: Path, stream_index: int) -> tuple[list[np.ndarray], list[int]]:
    """The frames of a plain sequential decode of stream ``stream_index``, and their painted indices."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams[stream_index])]
    return frames, [read_index(f) for f in frames]


def write_avi_claiming(path: Path, claimed: int, num_frames: int = 24) -> Path:
    """An MPEG-4 AVI with B-frames whose headers (``avih`` total frames, ``strh`` length and the
    OpenDML ``dmlh`` count when present) claim ``claimed`` frames instead of ``num_frames``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.max_b_frames, stream.codec_context.gop_size = 2, 8
        for packet in _encode(stream, num_frames, 48, 64):
            container.mux(packet)
    data = bytearray(path.read_bytes())
    for tag, offset in ((b"avih", 8 + 16), (b"strh", 8 + 32), (b"dmlh", 8)):
        at = data.find(tag)
        if at >= 0:
            struct.pack_into("<I", data, at + offset, claimed)
    path.write_bytes(bytes(data))
    return path
