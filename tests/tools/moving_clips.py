"""Small real H.264 clips for the tool tests: a bright square moving over noise."""

from pathlib import Path

import av
import numpy as np


def write_moving_clip(path: Path, dx: int, dy: int, seed: int = 0, frames: int = 12, size: int = 40) -> None:
    """A real H.264 clip: a bright square moving by (dx, dy) pixels per frame over noise."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            x, y = (4 + dx * t) % (size - 8), (4 + dy * t) % (size - 8)
            image[y : y + 8, x : x + 8] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
