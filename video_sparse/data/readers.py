"""Video readers behind one interface: decord, PyAV and JPEG frame folders.

Every reader exposes ``num_frames`` and ``get_frames(indices) -> uint8 (T, H, W, 3)`` with exact,
0-based frame indices (in presentation order), in any order and with repeats. Any failure to open
or decode raises :class:`VideoReadError`, so datasets can treat unreadable samples uniformly.

``backend="auto"`` picks decord when its wheel imports on this platform and PyAV otherwise.
decord readers are opened with ``num_threads=1`` (parallelism comes from DataLoader workers).
decord is known to hang in forked DataLoader workers on some platforms: build the DataLoader with
``multiprocessing_context="spawn"`` when ``backend`` resolves to decord (see
:func:`default_multiprocessing_context`).
"""

from __future__ import annotations

import bisect
import importlib
import logging
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator, Sequence

import av  # imported before decord on purpose: decord bundles its own FFmpeg/libvpx, and loading
# those first breaks PyAV's libvpx encoder (VP9/.webm writing) in the same process
import numpy as np

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")
MIN_VIDEO_BYTES = 1024
DEFAULT_FRAME_TMPL = "img_{:05d}.jpg"


class VideoReadError(RuntimeError):
    """A video (or frame folder) cannot be opened or decoded; the message names the path."""


def decord_available() -> bool:
    """Whether the decord wheel imports on this platform."""
    try:
        importlib.import_module("decord")
    except Exception:  # ImportError, or a broken native library
        return False
    return True


def resolve_backend(backend: str = "auto") -> str:
    """Resolve ``"auto"`` to ``"decord"`` when available, else ``"pyav"``; validate the name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "decord" if decord_available() else "pyav"
    if backend == "decord" and not decord_available():
        raise ImportError("backend='decord' requested but decord does not import; use 'pyav'")
    return backend


def default_multiprocessing_context(backend: str) -> str | None:
    """DataLoader ``multiprocessing_context`` to use with a video backend.

    Returns ``"spawn"`` for decord (forked workers may hang), ``None`` (platform default) otherwise.
    """
    return "spawn" if resolve_backend(backend) == "decord" else None


class VideoReader(ABC):
    """Random access to the frames of one video.

    Use as a context manager, or call :meth:`close`.
    """

    path: str

    @property
    @abstractmethod
    def num_frames(self) -> int:
        """Number of frames that can be requested."""

    @property
    def fps(self) -> float | None:
        """Average frame rate, when known."""
        return None

    @abstractmethod
    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        """Decode the given sorted unique indices; return index -> (H, W, 3) uint8."""

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Return the frames at ``indices``.

        Args:
            indices: 0-based frame indices, any order, repeats allowed.

        Returns:
            uint8 array ``(T, H, W, 3)``, RGB, ``T = len(indices)``.
        """
        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError("get_frames needs at least one index")
        n = self.num_frames
        bad = [i for i in idx if i < 0 or i >= n]
        if bad:
            raise VideoReadError(f"{self.path}: frame indices {bad[:5]} out of range for {n} frames")
        frames = self._read(sorted(set(idx)))
        return np.stack([frames[i] for i in idx])

    def iter_frames(self, chunk: int = 32) -> Iterator[np.ndarray]:
        """Yield every frame in order, as ``(H, W, 3)`` uint8 arrays."""
        for start in range(0, self.num_frames, chunk):
            yield from self.get_frames(range(start, min(start + chunk, self.num_frames)))

    def close(self) -> None:
        """Release the underlying file."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, num_frames={self.num_frames})"


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise VideoReadError(f"{path}: video file not found")
    size = os.path.getsize(path)
    if size < MIN_VIDEO_BYTES:
        raise VideoReadError(f"{path}: file too small to be a video ({size} bytes)")


class DecordReader(VideoReader):
    """decord-backed reader (``num_threads=1``)."""

    def __init__(self, path: str | os.PathLike, num_threads: int = 1):
        self.path = str(path)
        _check_file(self.path)
        decord = importlib.import_module("decord")
        try:
            self._vr = decord.VideoReader(self.path, num_threads=num_threads, ctx=decord.cpu(0))
            self._len = len(self._vr)
        except Exception as e:
            raise VideoReadError(f"{self.path}: decord cannot open the video ({_short(e)})") from None
        if self._len <= 0:
            raise VideoReadError(f"{self.path}: no video frames")

    @property
    def num_frames(self) -> int:
        return self._len

    @property
    def fps(self) -> float | None:
        try:
            return float(self._vr.get_avg_fps())
        except Exception:
            return None

    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        try:
            batch = self._vr.get_batch(indices)
            arr = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        except Exception as e:
            raise VideoReadError(f"{self.path}: decord failed to decode frames ({_short(e)})") from None
        if arr.shape[0] != len(indices) or arr.ndim != 4:
            raise VideoReadError(f"{self.path}: decord returned shape {arr.shape} for {len(indices)} frames")
        return {i: arr[k] for k, i in enumerate(indices)}

    def close(self) -> None:
        self._vr = None


class PyAVReader(VideoReader):
    """PyAV-backed reader with exact frame indexing.

    On open the video stream is demuxed (no decoding) to list every frame's presentation
    timestamp; frame ``i`` is the ``i``-th smallest timestamp. Reading seeks to the closest
    keyframe before the first requested frame and decodes forward, matching decoded frames to
    indices by timestamp; if a requested frame does not appear it falls back to decoding from the
    start. A decoding error raises :class:`VideoReadError`, and so does opening a file cut short
    (a truncated download): an MP4/MOV whose header declares more frames than the file holds, or a
    Matroska/WebM whose frames cover less than 3/4 of the duration in its header. decord does not
    make the second check: it reads a cut WebM as a shorter video.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1):
        self.path = str(path)
        _check_file(self.path)
        self._container = None
        try:
            self._container = av.open(self.path)
            if not self._container.streams.video:
                raise VideoReadError(f"{self.path}: no video stream")
            stream = self._container.streams.video[0]
            stream.thread_count = max(1, num_threads)
            pts, key_pts = [], []
            for packet in self._container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
            self._fps = float(stream.average_rate) if stream.average_rate else None
            self._check_complete(stream, pts)
        except VideoReadError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise VideoReadError(f"{self.path}: PyAV cannot open the video ({_short(e)})") from None
        self._pts = sorted(set(pts))
        self._key_pts = sorted(set(key_pts))
        if not self._pts:
            self.close()
            raise VideoReadError(f"{self.path}: no video frames")
        self._index_of = {p: i for i, p in enumerate(self._pts)}

    def _check_complete(self, stream, pts: list[int]) -> None:
        """Reject files cut short: MP4/MOV headers count every sample; Matroska/WebM headers
        give the duration (a file whose frames cover less than 3/4 of it is taken as cut)."""
        fmt = self._container.format.name
        declared = stream.frames
        if declared and pts and len(pts) < declared and "mp4" in fmt:
            raise VideoReadError(f"{self.path}: truncated file ({len(pts)} of {declared} frames present)")
        duration = self._container.duration
        if "matroska" in fmt and duration and pts and stream.time_base and self._fps:
            covered = (max(pts) - min(pts)) * float(stream.time_base) + 1 / self._fps
            if covered < 0.75 * duration / av.time_base:
                raise VideoReadError(f"{self.path}: truncated file (frames cover {covered:.2f} s of "
                                     f"{duration / av.time_base:.2f} s)")

    @property
    def num_frames(self) -> int:
        return len(self._pts)

    @property
    def fps(self) -> float | None:
        return self._fps

    def _decode(self, seek_pts: int | None):
        stream = self._container.streams.video[0]
        self._container.seek(self._pts[0] if seek_pts is None else seek_pts, stream=stream,
                             backward=True, any_frame=False)
        for frame in self._container.decode(stream):
            yield frame

    def _collect(self, wanted: set[int], seek_pts: int | None) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        last = max(wanted)
        for frame in self._decode(seek_pts):
            i = self._index_of.get(frame.pts)
            if i is None:
                continue
            if i in wanted and i not in out:
                out[i] = frame.to_ndarray(format="rgb24")
                if len(out) == len(wanted):
                    break
            if i >= last:  # frames come out in presentation order: nothing wanted can follow
                break
        return out

    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        if self._container is None:
            raise VideoReadError(f"{self.path}: reader is closed")
        wanted = set(indices)
        first_pts = self._pts[indices[0]]
        k = bisect.bisect_right(self._key_pts, first_pts) - 1
        seek_pts = self._key_pts[k] if k >= 0 else None
        try:
            out = self._collect(wanted, seek_pts)
            if len(out) < len(wanted) and seek_pts is not None and seek_pts != self._pts[0]:
                out.update(self._collect(wanted - set(out), None))
        except VideoReadError:
            raise
        except Exception as e:
            raise VideoReadError(f"{self.path}: PyAV failed to decode frames ({_short(e)})") from None
        missing = sorted(wanted - set(out))
        if missing:
            raise VideoReadError(f"{self.path}: frames {missing[:5]} could not be decoded "
                                 f"({len(missing)} missing of {len(wanted)})")
        return out

    def iter_frames(self, chunk: int = 32) -> Iterator[np.ndarray]:
        """Decode the whole stream sequentially (faster than random access)."""
        seen = 0
        try:
            for frame in self._decode(None):
                if frame.pts in self._index_of:
                    seen += 1
                    yield frame.to_ndarray(format="rgb24")
        except Exception as e:
            raise VideoReadError(f"{self.path}: PyAV failed after {seen} frames ({_short(e)})") from None
        if seen < self.num_frames:
            raise VideoReadError(f"{self.path}: decoded {seen} of {self.num_frames} frames")

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None


class FrameFolderReader(VideoReader):
    """Reader over a folder of JPEG frames named ``img_00001.jpg`` ... (1-based by default).

    Args:
        path: the frame folder.
        num_frames: frame count from the list file; counted from the folder when ``None``.
        filename_tmpl: ``str.format`` template of a frame file name.
        start_index: number of the first frame file.
    """

    def __init__(self, path: str | os.PathLike, num_frames: int | None = None,
                 filename_tmpl: str = DEFAULT_FRAME_TMPL, start_index: int = 1):
        self.path = str(path)
        self.filename_tmpl = filename_tmpl
        self.start_index = start_index
        if not os.path.isdir(self.path):
            raise VideoReadError(f"{self.path}: frame folder not found")
        self._len = count_frames(self.path, filename_tmpl) if num_frames is None else int(num_frames)
        if self._len <= 0:
            raise VideoReadError(f"{self.path}: no frames")

    @property
    def num_frames(self) -> int:
        return self._len

    def frame_path(self, index: int) -> str:
        """File of 0-based frame ``index``."""
        return os.path.join(self.path, self.filename_tmpl.format(index + self.start_index))

    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        from PIL import Image

        out = {}
        for i in indices:
            file = self.frame_path(i)
            try:
                with Image.open(file) as img:
                    out[i] = np.asarray(img.convert("RGB"))
            except FileNotFoundError:
                raise VideoReadError(f"{file}: frame file missing") from None
            except Exception as e:
                raise VideoReadError(f"{file}: cannot read frame ({_short(e)})") from None
        shapes = {a.shape for a in out.values()}
        if len(shapes) > 1:
            raise VideoReadError(f"{self.path}: frames of different sizes {sorted(shapes)}")
        return out


def count_frames(folder: str | os.PathLike, filename_tmpl: str = DEFAULT_FRAME_TMPL) -> int:
    """Count files in ``folder`` whose names match ``filename_tmpl`` (e.g. ``img_{:05d}.jpg``)."""
    pattern = _template_regex(filename_tmpl)
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    return sum(1 for n in names if pattern.fullmatch(n))


def _template_regex(filename_tmpl: str) -> re.Pattern:
    prefix, _, rest = filename_tmpl.partition("{")
    _, _, suffix = rest.partition("}")
    return re.compile(re.escape(prefix) + r"\d+" + re.escape(suffix))


def open_video(path: str | os.PathLike, backend: str = "auto", num_frames: int | None = None,
               filename_tmpl: str = DEFAULT_FRAME_TMPL, start_index: int = 1,
               num_threads: int = 1) -> VideoReader:
    """Open a video file (decord or PyAV) or a frame folder.

    Args:
        path: a video file, or a folder of frames.
        backend: ``"auto"``, ``"decord"`` or ``"pyav"`` (ignored for frame folders).
        num_frames: frame count of a frame folder (from its list file).
        filename_tmpl: frame file name template for folders.
        start_index: number of the first frame file.
        num_threads: decoder threads (1 inside DataLoader workers).

    Raises:
        VideoReadError: the path cannot be opened.
    """
    path = Path(path)
    if path.is_dir():
        return FrameFolderReader(path, num_frames, filename_tmpl, start_index)
    if resolve_backend(backend) == "decord":
        return DecordReader(path, num_threads=num_threads)
    return PyAVReader(path, num_threads=num_threads)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
