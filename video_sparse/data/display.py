"""How a player shows a decoded frame: first frame's size, sample aspect ratio, display matrix.

Used by every reader (and so by ``tools/prepare_frames.py``), so a video file and its extracted
frame folder give the same clip. Orientation follows FFmpeg's command line (fftools' autorotate
rules for the display matrix: rotations by multiples of 90 degrees, with or without a flip).
"""

from __future__ import annotations

from typing import NamedTuple

import av
import numpy as np


class Display(NamedTuple):
    """How a player shows the stream: first frame's coded size, sample aspect ratio, display matrix.

    Attributes:
        width, height: coded size of the first frame (pixels).
        sar: sample (pixel) aspect ratio; 1.0 when unknown.
        matrix: the 3x3 display matrix (9 ints, FFmpeg's layout) or ``None``.
    """

    width: int
    height: int
    sar: float = 1.0
    matrix: tuple[int, ...] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the frames after :func:`to_display`."""
        w = max(1, round(self.width * self.sar))
        ops = orientation_ops(self.matrix)
        return (w, self.height) if "transpose" in ops or "rot90" in ops or "rot270" in ops else (self.height, w)


def orientation_ops(matrix: tuple[int, ...] | None) -> tuple[str, ...]:
    """Operations that show a frame as FFmpeg's command line does (fftools' autorotate rules)."""
    if not matrix:
        return ()
    a, b, c, d = (float(v) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    scale0, scale1 = np.hypot(a, c), np.hypot(b, d)
    if scale0 == 0 or scale1 == 0:
        return ()
    theta = float(np.degrees(np.arctan2(b / scale1, a / scale0)))  # -av_display_rotation_get
    theta -= 360 * np.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return ("transpose",) if matrix[3] > 0 else ("rot270",)  # cclock_flip / clock
    if abs(theta - 180) < 1:
        return tuple(op for op, flag in (("hflip", matrix[0] < 0), ("vflip", matrix[4] < 0)) if flag)
    if abs(theta - 270) < 1:
        return ("antitranspose",) if matrix[3] < 0 else ("rot90",)  # clock_flip / cclock
    if abs(theta) < 1 and matrix[4] < 0:
        return ("vflip",)
    return ()


def to_display(frame: np.ndarray, display: Display) -> np.ndarray:
    """Show a decoded RGB frame as a player does.

    Args:
        frame: uint8 ``(h, w, 3)`` as decoded (any size: a size change mid-stream is resized).
        display: the stream's :class:`Display` (from its first frame).

    Returns:
        uint8 ``display.size + (3,)``: resized (bilinear) to the first frame's size with the
        width scaled by the sample aspect ratio, then rotated/flipped by the display matrix.
    """
    target = (display.height, max(1, round(display.width * display.sar)))
    if frame.shape[:2] != target:
        from PIL import Image

        frame = np.asarray(Image.fromarray(frame).resize(target[::-1], Image.Resampling.BILINEAR))
    for op in orientation_ops(display.matrix):
        if op == "transpose":
            frame = frame.transpose(1, 0, 2)
        elif op == "antitranspose":
            frame = np.rot90(frame, 2).transpose(1, 0, 2)
        elif op == "rot90":  # counterclockwise
            frame = np.rot90(frame, 1)
        elif op == "rot270":  # clockwise
            frame = np.rot90(frame, -1)
        elif op == "hflip":
            frame = frame[:, ::-1]
        elif op == "vflip":
            frame = frame[::-1]
    return np.ascontiguousarray(frame)


def display_of(frame: av.VideoFrame, stream) -> Display:
    matrix = None
    try:
        side = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
        if side is not None:
            matrix = tuple(int(v) for v in np.frombuffer(bytes(side), dtype="<i4")[:9])
    except Exception:  # no side data API or malformed entry: show the frame as coded
        matrix = None
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    sar_value = float(sar) if sar and float(sar) > 0 else 1.0
    return Display(frame.width, frame.height, sar_value, matrix)
