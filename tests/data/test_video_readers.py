"""Readers return exactly the requested frames; broken files raise VideoReadError."""

from pathlib import Path

import numpy as np
import pytest

from video_sparse.data.readers import (
    FrameFolderReader,
    PyAVReader,
    VideoReadError,
    backend_available,
    count_frames,
    default_multiprocessing_context,
    open_video,
    resolve_backend,
)

BACKENDS = ["decord", "pyav", "torchcodec"]


def _need(backend):
    if backend != "pyav" and not backend_available(backend):  # tools/setup_env.sh installs both
        pytest.fail(f"{backend} does not import here: run `bash tools/setup_env.sh`")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ext", [".mp4", ".webm", ".avi", ".mkv"])
def test_exact_frames_any_order(tmp_path, painted, backend, ext):
    _need(backend)
    path = painted.write_video(tmp_path / f"clip{ext}", 70)
    wanted = [65, 3, 3, 0, 69, 40, 41, 12, 64]
    if backend != "pyav" and ext == ".avi":  # decord/torchcodec trust AVI timestamps: refused, not wrong
        with pytest.raises(VideoReadError, match=f"{backend} cannot index frames of a 'avi' file"):
            open_video(path, backend)
        return
    with open_video(path, backend) as reader:
        assert reader.num_frames == 70
        frames = reader.get_frames(wanted)
        assert frames.dtype == np.uint8 and frames.shape == (len(wanted), 64, 64, 3)
        assert [painted.read_index(f) for f in frames] == wanted
        # later reads on the same reader seek to a keyframe (every 10 frames) and stay exact
        for again in ([1, 2, 68], [30, 20, 47], [66, 67], [45]):
            assert [painted.read_index(f) for f in reader.get_frames(again)] == again


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_index_is_an_error(tmp_path, painted, backend):
    _need(backend)
    path = painted.write_video(tmp_path / "clip.mp4", 10)
    with open_video(path, backend) as reader, pytest.raises(VideoReadError, match="out of range"):
        reader.get_frames([0, 10])


def test_pyav_iter_frames_is_sequential_and_complete(tmp_path, painted):
    path = painted.write_video(tmp_path / "clip.webm", 30)
    with PyAVReader(path) as reader:
        assert [painted.read_index(f) for f in reader.iter_frames()] == list(range(30))


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_file_raises(tmp_path, backend):
    _need(backend)
    rng = np.random.default_rng(0)
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        open_video(path, backend).get_frames([0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_file_raises(tmp_path, painted, backend, faststart):
    """Cut in the middle: without faststart the index (moov) is lost; with it, the frame data."""
    _need(backend)
    path = painted.truncate(painted.write_video(tmp_path / "cut.mp4", 100, faststart=faststart), 0.6)
    with pytest.raises(VideoReadError, match="cut.mp4"), open_video(path, backend) as reader:
        reader.get_frames(range(reader.num_frames))


def test_pyav_detects_a_cut_mp4_at_open(tmp_path, painted):
    path = painted.truncate(painted.write_video(tmp_path / "cut.mp4", 100, faststart=True), 0.9)
    with pytest.raises(VideoReadError, match=r"truncated file \(\d+ of 100 frames present\)"):
        PyAVReader(path)


def test_truncated_webm(tmp_path, painted, decord_ok):
    """A WebM cut in half still decodes cleanly up to the cut: PyAV rejects it from the header's
    duration; decord sees a shorter video (exact up to the cut), which min_frames can catch."""
    path = painted.truncate(painted.write_video(tmp_path / "cut.webm", 100), 0.5)
    with pytest.raises(VideoReadError, match=r"cut.webm: truncated file"):
        PyAVReader(path)
    if decord_ok:
        with open_video(path, "decord") as reader:
            assert 30 < reader.num_frames < 60
            last = reader.num_frames - 1
            assert [painted.read_index(f) for f in reader.get_frames([0, last])] == [0, last]
    slightly = painted.truncate(painted.write_video(tmp_path / "end.webm", 100), 0.95)
    with PyAVReader(slightly) as reader:  # a cut near the end (cues, last frames) is tolerated
        assert reader.num_frames > 90


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_and_undecodable_files_raise(tmp_path, backend):
    _need(backend)
    with pytest.raises(VideoReadError, match="not found"):
        open_video(tmp_path / "nope.mp4", backend)
    tiny = tmp_path / "tiny.mp4"
    tiny.write_bytes(b"\0" * 100)
    with pytest.raises(VideoReadError, match=r"tiny\.mp4: .*cannot (open|probe)"):
        open_video(tiny, backend)


def test_frame_folder_reader(tmp_path, painted):
    folder = painted.write_frames(tmp_path / "v1", 12)
    assert count_frames(folder) == 12
    reader = open_video(folder)
    assert isinstance(reader, FrameFolderReader) and reader.num_frames == 12
    assert [painted.read_index(f) for f in reader.get_frames([11, 0, 5, 5])] == [11, 0, 5, 5]
    # the list may claim more frames than exist: reading a missing one is an error naming the file
    with pytest.raises(VideoReadError, match="img_00014.jpg"):
        FrameFolderReader(folder, num_frames=20).get_frames([13])
    with pytest.raises(VideoReadError, match="not found"):
        FrameFolderReader(tmp_path / "absent")


def test_backend_resolution():
    assert resolve_backend("pyav") == "pyav"
    assert resolve_backend("auto") == ("torchcodec" if backend_available("torchcodec") else "pyav")
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("opencv")
    assert default_multiprocessing_context("auto") is None  # auto never picks decord
    assert default_multiprocessing_context("pyav") is None
    if backend_available("decord"):
        assert default_multiprocessing_context("decord") == "spawn"


def test_auto_falls_back_to_pyav_when_torchcodec_fails_to_decode(tmp_path, painted, caplog):
    from media_factory import Case, write_case

    _need("torchcodec")
    path = write_case(Case("resize", "libvpx", ".webm", bframes=None, sizes=((64, 48, 12), (48, 64, 12))), tmp_path)
    with open_video(path, "torchcodec") as reader, pytest.raises(VideoReadError, match="torchcodec failed"):
        reader.get_frames([0, 20])
    with open_video(path, "auto") as reader:
        assert type(reader).__name__ == "TorchCodecReader"
        assert [painted.read_index(f) for f in reader.get_frames([20, 0, 7])] == [20, 0, 7]
    assert "reading this file with PyAV" in caplog.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_without_video_stream(tmp_path, backend):
    _need(backend)
    import av

    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for _ in range(40):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert Path(path).stat().st_size > 1024
    with pytest.raises(VideoReadError):
        open_video(path, backend)


def test_pyav_seek_is_verified_against_the_decoded_stream(tmp_path, painted, caplog):
    """An index whose timestamps disagree with what the decoder returns is not trusted: the read is
    redone from the start and still returns the right frames."""
    path = painted.write_video(tmp_path / "clip.mp4", 40)
    with PyAVReader(path) as reader:
        assert reader.indexed
        p26, p27 = reader._pts[26], reader._pts[27]  # an index with two frames out of order
        reader._index_of[p26], reader._index_of[p27] = 27, 26
        frames = reader.get_frames([25, 3, 39])
        assert [painted.read_index(f) for f in frames] == [25, 3, 39]
        assert not reader.indexed and "disagree" in caplog.text
    with PyAVReader(path) as reader:  # a frame count that the stream contradicts is an error
        reader._len, reader._pts = 41, reader._pts + [reader._pts[-1] + 1]
        reader._index_of = {p: i for i, p in enumerate(reader._pts)}
        reader._index_of[reader._pts[12]], reader._index_of[reader._pts[13]] = 13, 12
        with pytest.raises(VideoReadError, match="container lists 41 frames but the video stream decodes 40"):
            reader.get_frames([12])
