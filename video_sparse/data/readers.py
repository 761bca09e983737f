"""Video readers behind one interface: PyAV, decord, torchcodec and JPEG frame folders.

Every reader exposes ``num_frames`` and ``get_frames(indices) -> uint8 (T, H, W, 3)``. Frame ``i``
is the ``i``-th displayed frame of a sequential decode of the video stream, whatever the
container says: container timestamps, keyframe flags and durations are used only to go faster,
never to decide which frame is ``i``. Frames come out as a player shows them (see
:func:`to_display`): every frame at the first frame's size (a stream that changes resolution
mid-way is resized, not an error), the sample aspect ratio applied to the width, then the
stream's display matrix (rotation, flips). Any failure to open or decode raises
:class:`VideoReadError` naming the path.

The video is the stream FFmpeg's command line decodes (:func:`choose_video_stream`): never an
attached picture (the JPEG thumbnail or cover art that phones, drones and MKVs list as a video
stream, often as stream 0), and among several tracks the one ``av_find_best_stream`` picks.
A file is judged by opening and decoding it, never by its byte size.

Indexing per container (PyAV):
- MP4/MOV and Matroska/WebM carry a presentation timestamp per packet: the sorted timestamps of
  the packets that are shown index the frames (lead-in frames an MP4 edit list hides, as a
  stream-copy trim at a non-keyframe leaves them, are decoded but are no frames) and reads seek
  to the keyframe before the first wanted frame. Each read checks
  that the decoder returns exactly the consecutive frames the index predicts; if not, the read is
  redone by decoding from the start (and an index that disagrees with the stream is an error).
- Every other container (AVI, MPEG-TS, raw elementary streams, ...) is decoded sequentially from
  the start; its frame count comes from one counting decode at open (cached per file).

decord and torchcodec index frames by container timestamps and mis-read AVI/MPEG-TS files with
B-frames; decord also mis-reads HEVC and MPEG-4 Part 2 and fails on rotated videos and on
non-square pixels; decord cannot choose the stream of a file with several video streams
(thumbnails) and shows edit-list-hidden frames. Each refuses at open what it cannot read exactly
(:meth:`Probe.problem`; a frame count other than the shown packets is refused too), and
``backend="auto"`` takes, per file, the first backend of :data:`AUTO_ORDER` that imports and can
read it (PyAV reads all; a refusal at open is logged and PyAV reads the file).
decord readers use ``num_threads=1``; decord may hang in forked DataLoader workers: use
``multiprocessing_context="spawn"`` (see :func:`default_multiprocessing_context`).
"""

from __future__ import annotations

import bisect
import importlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

# av is imported before decord on purpose: decord bundles its own FFmpeg/libvpx, and loading
# those first breaks PyAV's libvpx encoder (VP9/.webm writing) in the same process
import av
import numpy as np

from video_sparse.data.display import Display, display_of, to_display
from video_sparse.data.images import load_image
from video_sparse.data.reader_base import (
    INDEXED_FORMATS,
    Probe,
    VideoReader,
    VideoReadError,
    check_file,
    file_key,
    format_names,
    open_video_stream,
    probe_video,
    reduce_frame,
    remember,
    short_error,
)

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav", "torchcodec")
#: ``backend="auto"``: the first of these that imports and can read the file exactly
AUTO_ORDER = ("torchcodec", "pyav")  # by CPU time per clip (BENCHMARKS_loader.md); decord: on request
DEFAULT_FRAME_TMPL = "img_{:05d}.jpg"
_COUNT_CACHE: dict[tuple[str, int, int], _StreamInfo] = {}  # sequential-decode results per file


class _StreamInfo(NamedTuple):
    num_frames: int
    display: Display


def decord_available() -> bool:
    """Whether the decord wheel imports on this platform."""
    try:
        importlib.import_module("decord")
    except Exception:  # ImportError, or a broken native library
        return False
    return True


def torchcodec_available() -> bool:
    """Whether torchcodec imports with this torch and the FFmpeg libraries found at run time."""
    try:
        importlib.import_module("torchcodec.decoders")
    except Exception:  # ImportError, or FFmpeg/torch ABI mismatch raised as another error
        return False
    return True


def backend_available(name: str) -> bool:
    """Whether backend ``name`` (``"pyav"``, ``"decord"``, ``"torchcodec"``) imports here."""
    return {"pyav": lambda: True, "decord": decord_available, "torchcodec": torchcodec_available}[name]()


def resolve_backend(backend: str = "auto") -> str:
    """Validate a backend name; ``"auto"`` resolves to the first of :data:`AUTO_ORDER` that
    imports (the choice for MP4/MKV/WebM files; per file, :func:`open_video` may fall back further)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return next(name for name in AUTO_ORDER if backend_available(name))
    if not backend_available(backend):
        raise ImportError(f"backend={backend!r} requested but {backend} does not import; use 'pyav'")
    return backend


def default_multiprocessing_context(backend: str) -> str | None:
    """DataLoader ``multiprocessing_context`` to use with a video backend.

    Returns ``"spawn"`` when decord may be used (forked workers may hang), ``None`` otherwise.
    """
    return "spawn" if resolve_backend(backend) == "decord" else None


def _decode_error(path: str, exc: BaseException, done: int) -> VideoReadError:
    return VideoReadError(f"{path}: decoding failed after {done} frames ({short_error(exc)})")


class PyAVReader(VideoReader):
    """PyAV reader with exact frame indexing (see the module docstring for the rules).

    A file cut short (a truncated download) is rejected at open: an MP4/MOV whose header declares
    more video frames than the file holds, or a Matroska/WebM in which no stream (video or audio)
    reaches 3/4 of the duration in its header. A longer audio track, a long last frame or a
    variable frame rate are not truncation.

    Args:
        path: the video file.
        num_threads: decoder threads.
        seek: use the container's timestamps to seek (MP4/MOV, Matroska/WebM only); ``False``
            always decodes from the start.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, seek: bool = True):
        self.path = str(path)
        check_file(self.path)
        self._threads = max(1, int(num_threads))
        self._container = None
        self._indexed = False
        try:
            self._container, self._stream_index = open_video_stream(self.path)
            self._stream.thread_count = self._threads
            stream = self._stream
            self._fps = float(stream.average_rate) if stream.average_rate else None
            pts, key_pts = self._demux(stream)
            self._indexed = (
                seek
                and bool(format_names(self._container) & INDEXED_FORMATS)
                and bool(pts)
                and None not in pts
                and len(set(pts)) == len(pts)
            )
            if self._indexed:
                self._pts = sorted(pts)
                self._key_pts = sorted(set(key_pts))
                self._index_of = {p: i for i, p in enumerate(self._pts)}
                self._len = len(self._pts)
                self.display = self._first_display()
            else:
                info = self._count()
                self._len, self.display = info.num_frames, info.display
        except VideoReadError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise VideoReadError(f"{self.path}: PyAV cannot open the video ({short_error(e)})") from None
        if self._len <= 0:
            self.close()
            raise VideoReadError(f"{self.path}: no video frames")

    def _open(self):
        container = av.open(self.path)
        container.streams[self._stream_index].thread_count = self._threads
        return container

    @property
    def _stream(self):
        """The decoded video stream (:func:`choose_video_stream`: never a thumbnail)."""
        return self._container.streams[self._stream_index]

    def _demux(self, stream) -> tuple[list[int | None], list[int]]:
        """Timestamps of the packets whose frames are shown (no decoding), and of the keyframes
        (shown or not: a seek may start at a hidden one); rejects MP4/Matroska files cut short.

        Packets the demuxer flags as discarded (lead-in frames an MP4 edit list hides, as a
        stream-copy trim at a non-keyframe leaves them) decode but are never shown: they are no
        frames of the index, as in a sequential decode.
        """
        pts: list[int | None] = []
        key_pts: list[int] = []
        hidden = 0
        ends: dict[int, float] = {}
        for packet in self._container.demux():
            if packet.size == 0:
                continue
            s = packet.stream
            if packet.pts is not None and s.time_base:
                end = float((packet.pts + (packet.duration or 0)) * s.time_base)
                ends[s.index] = max(ends.get(s.index, end), end)
            if s.index != stream.index:
                continue
            if packet.is_keyframe and packet.pts is not None:
                key_pts.append(packet.pts)
            if packet.is_discard:
                hidden += 1
                continue
            pts.append(packet.pts)
        names = format_names(self._container)
        declared = stream.frames  # samples in the header, hidden ones included
        if names & {"mov", "mp4"} and declared and len(pts) + hidden < declared:
            raise VideoReadError(f"{self.path}: truncated file ({len(pts) + hidden} of {declared} frames present)")
        duration = self._container.duration
        if "matroska" in names and duration and ends:
            start = (self._container.start_time or 0) / av.time_base
            covered = max(ends.values()) - start
            if self._fps and ends.get(stream.index) == max(ends.values()):
                covered += 1 / self._fps  # the last frame's display time, when no packet gives it
            if covered < 0.75 * duration / av.time_base:
                raise VideoReadError(
                    f"{self.path}: truncated file (streams end at {covered:.2f} s of {duration / av.time_base:.2f} s)"
                )
        return pts, key_pts

    def _first_display(self) -> Display:
        stream = self._stream
        self._container.seek(self._pts[0], stream=stream, backward=True, any_frame=False)
        for frame in self._container.decode(stream):
            return display_of(frame, stream)
        raise VideoReadError(f"{self.path}: no video frame decodes")

    def _count(self) -> _StreamInfo:
        """Count displayed frames by a full sequential decode (cached by path, size, mtime)."""
        key = file_key(self.path)
        info = _COUNT_CACHE.get(key)
        if info is None:
            n, display = 0, None
            for frame in self._sequential():
                if display is None:
                    display = display_of(frame, self._stream)
                n += 1
            if display is None:
                raise VideoReadError(f"{self.path}: no video frame decodes")
            info = _StreamInfo(n, display)
            remember(_COUNT_CACHE, key, info)
        return info

    @property
    def num_frames(self) -> int:
        return self._len

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def indexed(self) -> bool:
        """Whether reads seek through the container's timestamps (else: decode from the start)."""
        return self._indexed

    def _rgb(self, frame) -> np.ndarray:
        return reduce_frame(to_display(frame.to_ndarray(format="rgb24"), self.display), self.short_side)

    def _sequential(self) -> Iterator[av.VideoFrame]:
        """Every displayed frame from the start, on a freshly opened container."""
        if self._container is not None:
            self._container.close()
        self._container = self._open()
        done = 0
        try:
            for frame in self._container.decode(self._stream):
                yield frame
                done += 1
        except av.error.FFmpegError as e:
            raise _decode_error(self.path, e, done) from None

    def _read_sequential(self, wanted: set[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        last = max(wanted)
        for i, frame in enumerate(self._sequential()):
            if i in wanted:
                out[i] = self._rgb(frame)
            if i >= last:
                break
        return out

    def _read_indexed(self, indices: list[int]) -> dict[int, np.ndarray] | None:
        """Seek and decode; ``None`` when the decoder disagrees with the index."""
        stream = self._stream
        k = bisect.bisect_right(self._key_pts, self._pts[indices[0]]) - 1
        seek_pts = self._key_pts[k] if k >= 0 else self._pts[0]
        expected = self._index_of.get(seek_pts, 0) if k >= 0 else 0
        wanted, last = set(indices), indices[-1]
        out: dict[int, np.ndarray] = {}
        self._container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
        for frame in self._container.decode(stream):
            i = self._index_of.get(frame.pts) if frame.pts is not None else None
            if i is not None and i < expected:  # leading frames of an open GOP before the seek point
                continue
            if i != expected:
                return None
            if i in wanted:
                out[i] = self._rgb(frame)
            if i >= last:
                return out
            expected += 1
        return None

    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        if self._container is None:
            raise VideoReadError(f"{self.path}: reader is closed")
        try:
            out = self._read_indexed(indices) if self._indexed else None
            if out is None and self._indexed:
                logger.warning(
                    "%s: container timestamps disagree with the decoded stream; decoding from the start", self.path
                )
                count = sum(1 for _ in self._sequential())
                if count != self._len:
                    raise VideoReadError(
                        f"{self.path}: the container lists {self._len} frames but the video stream decodes {count}"
                    )
                self._indexed = False
            if out is None:
                out = self._read_sequential(set(indices))
        except VideoReadError:
            raise
        except Exception as e:
            raise VideoReadError(f"{self.path}: PyAV failed to decode frames ({short_error(e)})") from None
        missing = sorted(set(indices) - set(out))
        if missing:
            raise VideoReadError(
                f"{self.path}: frames {missing[:5]} could not be decoded ({len(missing)} missing of {len(indices)})"
            )
        return out

    def iter_frames(self, chunk: int = 32) -> Iterator[np.ndarray]:
        """Decode the whole stream sequentially (faster than random access)."""
        seen = 0
        try:
            for frame in self._sequential():
                seen += 1
                yield self._rgb(frame)
        except VideoReadError:
            raise
        except Exception as e:
            raise _decode_error(self.path, e, seen) from None
        if seen != self.num_frames:
            raise VideoReadError(f"{self.path}: decoded {seen} of {self.num_frames} frames")

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None


class DecordReader(VideoReader):
    """decord reader (``num_threads=1``), for MP4/MOV and Matroska/WebM only.

    decord maps frame indices to container timestamps; for other containers (AVI with B-frames,
    MPEG-TS, raw streams) that returns wrong frames without error; it also mis-reads HEVC and
    MPEG-4 Part 2 with B-frames and fails on rotated videos and non-square pixels. Opening such a
    file raises :class:`VideoReadError` (see :meth:`Probe.problem`). The display geometry
    (size changes) comes from :func:`probe_video`.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, probe: Probe | None = None):
        self.path = str(path)
        probe = probe_video(self.path) if probe is None else probe
        problem = probe.problem("decord")
        if problem:
            raise VideoReadError(f"{self.path}: {problem}; use backend='pyav' or 'auto'")
        self.display = probe.display
        decord = importlib.import_module("decord")
        try:
            self._vr = decord.VideoReader(self.path, num_threads=num_threads, ctx=decord.cpu(0))
            self._len = len(self._vr)
        except Exception as e:
            raise VideoReadError(f"{self.path}: decord cannot open the video ({short_error(e)})") from None
        check_frame_count(self.path, "decord", self._len, probe)

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
        if self._vr is None:
            raise VideoReadError(f"{self.path}: reader is closed")
        try:
            batch = self._vr.get_batch(indices)
            arr = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        except Exception as e:
            raise VideoReadError(f"{self.path}: decord failed to decode frames ({short_error(e)})") from None
        if arr.shape[0] != len(indices) or arr.ndim != 4:
            raise VideoReadError(f"{self.path}: decord returned shape {arr.shape} for {len(indices)} frames")
        return {i: reduce_frame(to_display(arr[k], self.display), self.short_side) for k, i in enumerate(indices)}

    def close(self) -> None:
        self._vr = None


class FrameFolderReader(VideoReader):
    """Reader over a folder of JPEG frames named ``img_00001.jpg`` ... (1-based by default).

    Frames written by :func:`video_sparse.data.prepare.frames.extract_frames` are already in display
    orientation (see :func:`to_display`); other frame files are shown as any image is
    (:func:`video_sparse.data.images.load_image`: EXIF orientation, 16-bit grey); frames of
    different sizes are an error.

    Args:
        path: the frame folder.
        num_frames: frame count from the list file; counted from the folder when ``None``.
        filename_tmpl: ``str.format`` template of a frame file name.
        start_index: number of the first frame file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_frames: int | None = None,
        filename_tmpl: str = DEFAULT_FRAME_TMPL,
        start_index: int = 1,
    ):
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
        out = {}
        for i in indices:
            file = self.frame_path(i)
            try:
                out[i] = reduce_frame(np.asarray(load_image(file, self.short_side)), self.short_side)
            except FileNotFoundError:
                raise VideoReadError(f"{file}: frame file missing") from None
            except Exception as e:
                raise VideoReadError(f"{file}: cannot read frame ({short_error(e)})") from None
        return out


def check_frame_count(path: str, backend: str, count: int, probe: Probe) -> None:
    """Require a timestamp-indexing backend to count the frames the container shows.

    Raises:
        VideoReadError: no frames, or another count than the shown packets of the stream.
    """
    if count <= 0:
        raise VideoReadError(f"{path}: no video frames")
    if probe.shown_packets is not None and count != probe.shown_packets:
        raise VideoReadError(
            f"{path}: {backend} counts {count} frames, the stream shows {probe.shown_packets}; use backend='pyav'"
        )


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


def open_video(
    path: str | os.PathLike,
    backend: str = "auto",
    num_frames: int | None = None,
    filename_tmpl: str = DEFAULT_FRAME_TMPL,
    start_index: int = 1,
    num_threads: int = 1,
    short_side: int | None = None,
) -> VideoReader:
    """Open a video file (decord or PyAV) or a frame folder.

    Args:
        path: a video file, or a folder of frames.
        backend: ``"auto"`` (per file: the first of :data:`AUTO_ORDER` that imports and reads the
            file exactly), ``"decord"``, ``"pyav"`` or ``"torchcodec"`` (ignored for frame folders).
        num_frames: frame count of a frame folder (from its list file).
        filename_tmpl: frame file name template for folders.
        start_index: number of the first frame file.
        num_threads: decoder threads (1 inside DataLoader workers).
        short_side: reduce each frame right after decoding so that its short side is at most this
            (:attr:`VideoReader.short_side`); ``None`` returns frames at the video's size.

    Raises:
        VideoReadError: the path cannot be opened (or ``backend="decord"`` cannot read it exactly).
    """
    reader = _open_video(Path(path), backend, num_frames, filename_tmpl, start_index, num_threads)
    reader.short_side = short_side
    return reader


def _open_video(
    path: Path, backend: str, num_frames: int | None, filename_tmpl: str, start_index: int, num_threads: int
) -> VideoReader:
    if path.is_dir():
        return FrameFolderReader(path, num_frames, filename_tmpl, start_index)
    name = resolve_backend(backend)
    if backend == "auto" and name != "pyav":
        probe = probe_video(path)
        for name in AUTO_ORDER:
            if name != "pyav" and backend_available(name) and probe.problem(name) is None:
                extra = {"fallback": True} if name == "torchcodec" else {}
                try:
                    return _READERS[name](path, num_threads=num_threads, probe=probe, **extra)
                except VideoReadError as err:
                    logger.warning("%s; reading this file with PyAV", err)
        name = "pyav"
    if name == "pyav":
        return PyAVReader(path, num_threads=num_threads)
    return _READERS[name](path, num_threads=num_threads)


class TorchCodecReader(VideoReader):
    """torchcodec reader (``seek_mode="exact"``), for MP4/MOV and Matroska/WebM only.

    torchcodec 0.17 maps indices to container timestamps (wrong frames for AVI or MPEG-TS with
    B-frames; raw streams do not open), so other containers are refused at open. It rotates frames
    by the display matrix but ignores its flips: the reader undoes that rotation and applies
    :func:`to_display` like every reader. A mid-stream size change fails to decode: a
    :class:`VideoReadError` at read time, or with ``fallback=True`` (``backend="auto"``) the read
    is served by a :class:`PyAVReader` of the same file (which must count the same frames).
    """

    def __init__(
        self, path: str | os.PathLike, num_threads: int = 1, probe: Probe | None = None, fallback: bool = False
    ):
        self.path = str(path)
        self._fallback: PyAVReader | bool = fallback
        self._threads = num_threads
        probe = probe_video(self.path) if probe is None else probe
        problem = probe.problem("torchcodec")
        if problem:
            raise VideoReadError(f"{self.path}: {problem}; use backend='pyav' or 'auto'")
        self.display = probe.display
        decoders = importlib.import_module("torchcodec.decoders")
        try:
            self._dec = decoders.VideoDecoder(
                self.path,
                stream_index=probe.stream_index,
                seek_mode="exact",
                dimension_order="NHWC",
                num_ffmpeg_threads=max(1, int(num_threads)),
            )
            self._len = len(self._dec)
            rotation = self._dec.metadata.rotation or 0
            self._fps = self._dec.metadata.average_fps
        except Exception as e:
            raise VideoReadError(f"{self.path}: torchcodec cannot open the video ({short_error(e)})") from None
        self._undo = -round(rotation / 90) % 4  # quarter turns that give back the coded frame
        check_frame_count(self.path, "torchcodec", self._len, probe)

    @property
    def num_frames(self) -> int:
        return self._len

    @property
    def fps(self) -> float | None:
        return self._fps

    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        if self._dec is None:
            raise VideoReadError(f"{self.path}: reader is closed")
        if isinstance(self._fallback, PyAVReader):
            return self._fallback._read(indices)
        try:
            arr = self._dec.get_frames_at(indices).data.numpy()
        except Exception as e:
            error = VideoReadError(f"{self.path}: torchcodec failed to decode frames ({short_error(e)})")
            if not self._fallback:
                raise error from None
            logger.warning("%s; reading this file with PyAV", error)
            self._fallback = PyAVReader(self.path, num_threads=self._threads)
            self._fallback.short_side = self.short_side
            if self._fallback.num_frames != self._len:
                raise VideoReadError(
                    f"{self.path}: torchcodec counts {self._len} frames, PyAV {self._fallback.num_frames}"
                ) from None
            return self._fallback._read(indices)
        return {
            i: reduce_frame(to_display(np.rot90(arr[k], self._undo), self.display), self.short_side)
            for k, i in enumerate(indices)
        }

    def close(self) -> None:
        self._dec = None
        if isinstance(self._fallback, PyAVReader):
            self._fallback.close()
            self._fallback = True


_READERS = {"decord": DecordReader, "torchcodec": TorchCodecReader}
