"""Frames that carry their index in the pixels (8 black/white blocks), and its decoder.

A plain module rather than conftest.py: helper modules import it by a name no other test folder uses.
"""

from __future__ import annotations

import numpy as np


def paint_frame(index: int, height: int = 64, width: int = 64) -> np.ndarray:
    """uint8 (H, W, 3) frame encoding ``index`` (0..255) in 8 blocks."""
    frame = np.full((height, width, 3), 128, dtype=np.uint8)
    frame[: height // 2] = 0
    block = width // 8
    for bit in range(8):
        if (index >> bit) & 1:
            frame[: height // 2, bit * block : (bit + 1) * block] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    """Decode the index painted by :func:`paint_frame` from an (H, W, 3) frame of any size."""
    h, w = frame.shape[:2]
    block = w / 8
    value = 0
    for bit in range(8):
        x0, x1 = int(bit * block + block / 4), int((bit + 1) * block - block / 4)
        if frame[h // 8 : 3 * h // 8, x0:x1].astype(float).mean() > 127:
            value |= 1 << bit
    return value
