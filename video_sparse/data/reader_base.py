"""The reader interface, its error and a quick probe of a video file (container, codec, display).

See ``readers.py`` for the backends and the frame-indexing rules.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import av
import numpy as np

from video_sparse.data.display import Display, display_of, orientation_ops

#: FFmpeg demuxer names whose packet timestamps index frames (seekable, B-frame safe)
INDEXED_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm"})
#: codecs decord reads exactly in those containers (tests/data/test_conformance.py); it returns
#: wrong frames for HEVC and MPEG-4 Part 2 with B-frames and cannot open AV1
DECORD_CODECS = frozenset({"h264", "vp8", "vp9", "mjpeg"})
_PROBE_CACHE: dict[tuple[str, int, int], Probe] = {}  # probe_video results per file
_STREAM_CACHE: dict[tuple[str, int, int], int] = {}  # video_stream_index results per file
_CACHE_SIZE = 4096  # entries per cache (cleared when full); keys include size and mtime


class VideoReadError(RuntimeError):
    """A video (or frame folder) cannot be opened or decoded; the message names the path."""


class VideoReader(ABC):
    """Random access to the displayed frames of one video.

    Use as a context manager, or call :meth:`close`.
    """

    path: str
    #: when set, every frame whose short side is longer is resized (bilinear, antialiased, as the
    #: evaluation transform does) to this short side right after it is decoded, before frames are
    #: collected: a clip then costs memory in proportion to its output size, not the video's
    short_side: int | None = None

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

        Raises:
            VideoReadError: an index is out of range, or the frames cannot be decoded.
        """
        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError("get_frames needs at least one index")
        n = self.num_frames
        bad = [i for i in idx if i < 0 or i >= n]
        if bad:
            raise VideoReadError(f"{self.path}: frame indices {bad[:5]} out of range for {n} frames")
        frames = self._read(sorted(set(idx)))
        shapes = {frames[i].shape for i in idx}
        if len(shapes) > 1:
            raise VideoReadError(f"{self.path}: frames of different sizes {sorted(shapes)}")
        return np.stack([frames[i] for i in idx])

    def iter_frames(self, chunk: int = 32) -> Iterator[np.ndarray]:
        """Yield every frame in order, as ``(H, W, 3)`` uint8 arrays."""
        for start in range(0, self.num_frames, chunk):
            yield from self.get_frames(range(start, min(start + chunk, self.num_frames)))

    def close(self) -> None:  # noqa: B027  (optional: readers without a file handle keep this no-op)
        """Release the underlying file."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, num_frames={self.num_frames})"


def reduce_frame(frame: np.ndarray, short_side: int | None) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 frame so that its short side is ``short_side`` when it is longer
    (torchvision's antialiased bilinear resize, the one :class:`VideoEvalTransform` applies);
    other frames are returned unchanged."""
    if not short_side or min(frame.shape[:2]) <= short_side:
        return frame
    import torch
    from torchvision.transforms.v2 import functional as TF

    chw = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    return TF.resize(chw, [int(short_side)], antialias=True).permute(1, 2, 0).contiguous().numpy()


def check_file(path: str) -> None:
    """Require ``path`` to be a file; whether it is a video is decided by opening it, never by its size."""
    if not os.path.isfile(path):
        raise VideoReadError(f"{path}: video file not found")


_PROBE_PACKETS = 400  # packets demuxed at most to count frames per stream (FFmpeg's stream-info probe)


def _attached(stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def choose_video_stream(container, path: str = "") -> int:
    """Index of the video stream FFmpeg's command line would decode (``av_find_best_stream``'s rule).

    Attached pictures (cover art, phone and drone thumbnails muxed as a one-frame MJPEG stream) are
    never chosen. Among the other video streams the best has, in order: neither the hearing- nor
    the visually-impaired flag, plus the default flag; at least 5 frames (a one-frame still track
    loses against a real one; frames counted from the first packets as FFmpeg's probe does); the
    higher bit rate; more frames. Ties keep the first stream. With several candidates the
    container's packets are read: reopen it before decoding.

    Args:
        container: an input container opened by ``av.open``.
        path: the file, for error messages.

    Returns:
        The stream's index in ``container.streams``.

    Raises:
        VideoReadError: the file has no video stream other than attached pictures.
    """
    candidates = [s for s in container.streams.video if not _attached(s)]
    if not candidates:
        what = "only an attached picture (cover art), no" if container.streams.video else "no"
        raise VideoReadError(f"{path or container.name}: {what} video stream")
    if len(candidates) == 1:
        return candidates[0].index
    counts = dict.fromkeys((s.index for s in candidates), 0)
    for k, packet in enumerate(container.demux(candidates)):
        if packet.size and packet.stream.index in counts:
            counts[packet.stream.index] += 1
        if k >= _PROBE_PACKETS or min(counts.values()) >= 5:
            break
    impaired = av.stream.Disposition.hearing_impaired | av.stream.Disposition.visual_impaired

    def rank(s) -> tuple[int, int, int, int]:
        flags = s.disposition
        disposition = int(not flags & impaired) + int(bool(flags & av.stream.Disposition.default))
        return disposition, min(5, counts[s.index]), s.bit_rate or 0, s.frames or counts[s.index]

    return max(candidates, key=rank).index  # max keeps the first of equal ranks, as FFmpeg does


def open_video_stream(path: str):
    """``(container, index)``: the file opened by PyAV, nothing read yet, and
    :func:`choose_video_stream`'s index (cached like :func:`video_stream_index`; with a single
    candidate no extra open is needed). The caller closes the container.

    Raises:
        VideoReadError: the file has no video stream; PyAV's own errors when it cannot be opened.
    """
    key = file_key(path)
    container = av.open(path)
    try:
        if key in _STREAM_CACHE:
            return container, _STREAM_CACHE[key]
        if sum(not _attached(s) for s in container.streams.video) > 1:  # choosing reads packets
            return container, video_stream_index(path)
        index = choose_video_stream(container, path)  # one candidate (or none: the error)
    except BaseException:
        container.close()
        raise
    remember(_STREAM_CACHE, key, index)
    return container, index


def video_stream_index(path: str) -> int:
    """:func:`choose_video_stream` of a file (cached per process by path, size and modification time).

    Raises:
        VideoReadError: the file cannot be opened or has no video stream.
    """
    key = file_key(path)
    if key not in _STREAM_CACHE:
        try:
            with av.open(path) as container:
                index = choose_video_stream(container, path)
        except VideoReadError:
            raise
        except Exception as e:
            raise VideoReadError(f"{path}: cannot open the video ({short_error(e)})") from None
        remember(_STREAM_CACHE, key, index)
    return _STREAM_CACHE[key]


def format_names(container) -> set[str]:
    return set(container.format.name.split(","))


class Probe(NamedTuple):
    """What a quick look at a video file tells (header and first frame).

    Attributes:
        formats: FFmpeg demuxer names of the container (e.g. ``{"mov", "mp4", ...}``).
        codec: FFmpeg decoder name of the video stream.
        display: the :class:`Display` of its first video frame.
        stream_index: container index of the chosen video stream (:func:`choose_video_stream`).
        video_streams: number of video streams in the container, attached pictures included.
        shown_packets: packets of that stream whose frames are shown (MP4/Matroska: the frame
            count a timestamp-indexing backend must find); ``None`` for other containers.
        hidden_packets: packets the demuxer flags as discarded (an MP4 edit list's hidden lead-in).
    """

    formats: frozenset[str]
    codec: str
    display: Display
    stream_index: int = 0
    video_streams: int = 1
    shown_packets: int | None = None
    hidden_packets: int = 0

    @property
    def indexed(self) -> bool:
        """MP4/MOV or Matroska/WebM: timestamps can index frames."""
        return bool(self.formats & INDEXED_FORMATS)

    def problem(self, backend: str) -> str | None:
        """Why ``backend`` cannot return this file's frames exactly (``None`` when it can).

        decord and torchcodec look frames up by container timestamps, so both need an indexed
        container; decord also mis-reads some codecs, display matrices and non-square pixels.
        """
        if backend not in ("decord", "torchcodec"):
            return None
        if not self.indexed:
            return (
                f"{backend} cannot index frames of a {','.join(sorted(self.formats))!r} file exactly "
                "(it trusts container timestamps)"
            )
        if backend == "decord" and self.hidden_packets:
            return f"decord shows the {self.hidden_packets} lead-in frames an edit list hides"
        if backend == "decord" and self.video_streams > 1:
            return (
                f"decord cannot choose among the {self.video_streams} video streams of this file "
                "(thumbnails or several tracks; it may read or size frames by the wrong one)"
            )
        if backend == "torchcodec" and self.video_streams > 1 and "mp4" in self.formats:
            return "torchcodec cannot index an MP4 holding several video streams (thumbnails) exactly"
        if backend == "decord":
            if self.codec not in DECORD_CODECS:
                return f"decord does not read {self.codec!r} video exactly"
            if orientation_ops(self.display.matrix):
                return "decord cannot read videos with a rotation/flip display matrix"
            if abs(self.display.sar - 1.0) > 1e-6:  # it fails to copy some such frames (size mismatch)
                return "decord cannot read videos with non-square pixels reliably"
        return None


def file_key(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def remember(cache: dict, key: tuple, value) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value


def probe_video(path: str | os.PathLike) -> Probe:
    """Container format and first-frame display geometry of a video file (PyAV; cached per
    process by path, size and modification time, since every epoch reopens the same files).

    Raises:
        VideoReadError: the file cannot be opened, has no video stream or no decodable frame.
    """
    path = str(path)
    check_file(path)
    key = file_key(path)
    if key in _PROBE_CACHE:
        return _PROBE_CACHE[key]
    try:
        container, index = open_video_stream(path)
        try:
            stream = container.streams[index]
            formats = frozenset(format_names(container))
            codec = stream.codec_context.name
            video_streams = len(container.streams.video)
            display, shown, hidden = _scan(container, stream, count=bool(formats & INDEXED_FORMATS))
        finally:
            container.close()
    except VideoReadError:
        raise
    except Exception as e:
        raise VideoReadError(f"{path}: cannot probe the video ({short_error(e)})") from None
    if display is None:
        raise VideoReadError(f"{path}: no video frame decodes")
    probe = Probe(formats, codec, display, index, video_streams, shown, hidden)
    remember(_PROBE_CACHE, key, probe)
    return probe


def _scan(container, stream, count: bool) -> tuple[Display | None, int | None, int]:
    """One demux pass: the display of the first decoded frame and, with ``count``, the (shown,
    hidden) non-empty packets of ``stream`` (hidden: flagged discarded, e.g. by an edit list)."""
    display, shown, hidden = None, 0, 0
    for packet in container.demux(stream):
        if display is None:
            display = next((display_of(f, stream) for f in packet.decode()), None)
            if display is not None and not count:
                break
        if packet.size:
            hidden += packet.is_discard
            shown += not packet.is_discard
    if display is None:  # frames held back by the decoder until the end of the stream
        display = next((display_of(f, stream) for f in stream.codec_context.decode(None)), None)
    return display, (shown if count else None), (hidden if count else 0)


def short_error(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
