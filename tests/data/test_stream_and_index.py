"""Which stream is the video, and which frames it shows, whatever the container lists first.

Every reader (PyAV, decord, torchcodec, ``auto``) and ``extract_frames`` must return, for frame
``i``, the ``i``-th frame of a sequential decode of the stream FFmpeg's command line picks
(:func:`tricky_media.displayed_frames` of the stream each test names), or (decord, torchcodec)
raise a :class:`VideoReadError` naming the file; PyAV, ``auto`` and frame folders must read it.

- Stream choice: a JPEG thumbnail listed as stream 0 (MP4 ``covr`` attached picture), the same
  thumbnail listed last, a Matroska still-image track before the real one, two real tracks of
  which the second is flagged default, and a file whose only picture is a thumbnail.
- Frame index: an MP4/MOV trimmed at a non-keyframe (an edit list hides the lead-in frames, with
  and without B-frames), an MP4 with a start delay, and AVIs whose headers claim more or fewer
  frames than the stream holds.
- Size: valid videos under 1 KB open (the decision is made by decoding, not by the byte count).
"""

from pathlib import Path

import numpy as np
import pytest
from tricky_media import (
    displayed_frames,
    write_avi_claiming,
    write_shifted,
    write_tiny,
    write_tracks,
    write_with_thumbnail,
)

from video_sparse.data.prepare.frames import extract_frames
from video_sparse.data.reader_base import probe_video
from video_sparse.data.readers import VideoReadError, backend_available, open_video

BACKENDS = ("pyav", "decord", "torchcodec", "auto", "frames")
#: name -> (writer, the stream a sequential decode must follow)
FILES = {
    "mp4_thumbnail_first": (lambda d: write_with_thumbnail(d / "thumb_first.mp4"), 1),
    "mp4_thumbnail_last": (lambda d: write_with_thumbnail(d / "thumb_last.mp4", thumbnail_first=False), 0),
    "mkv_still_track_first": (lambda d: write_tracks(d / "still.mkv", [(160, 120, 1), (64, 48, 40)]), 1),
    "mkv_second_track_default": (lambda d: write_tracks(d / "two.mkv", [(32, 32, 40), (64, 48, 40)], default=1), 1),
    "mp4_trim_bframes": (lambda d: write_shifted(d / "trim_b.mp4", -5), 0),
    "mp4_trim_no_bframes": (lambda d: write_shifted(d / "trim.mp4", -3, bframes=0), 0),
    "mov_trim": (lambda d: write_shifted(d / "trim.mov", -6), 0),
    "mp4_start_delay": (lambda d: write_shifted(d / "delay.mp4", 7), 0),
    "avi_header_claims_more": (lambda d: write_avi_claiming(d / "more.avi", 60), 0),
    "avi_header_claims_fewer": (lambda d: write_avi_claiming(d / "fewer.avi", 10), 0),
    "webm_tiny": (lambda d: write_tiny(d / "tiny.webm"), 0),
    "mkv_tiny": (lambda d: write_tiny(d / "tiny.mkv"), 0),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("tricky")
    return {name: (write(folder), stream) for name, (write, stream) in FILES.items()}


def _read_all(path: Path, backend: str, tmp_path: Path) -> np.ndarray:
    if backend == "frames":
        folder = tmp_path / "frames"
        extract_frames(path, folder, short_side=None, quality=95, backend="auto")
        path, backend = folder, "auto"
    with open_video(path, backend) as reader:
        n = reader.num_frames
        backwards = list(range(n - 1, -1, -3))
        scattered = reader.get_frames(backwards)  # random access: seeks
        frames = reader.get_frames(range(n))
    assert np.array_equal(scattered, frames[backwards])
    return frames


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(FILES))
def test_frames_are_the_sequential_decode_of_the_chosen_stream(media, tmp_path, name, backend):
    if backend in ("decord", "torchcodec") and not backend_available(backend):
        pytest.fail(f"{backend} does not import here: run `bash tools/setup_env.sh`")
    path, stream = media[name]
    reference, painted = displayed_frames(path, stream)
    try:
        frames = _read_all(path, backend, tmp_path)
    except VideoReadError as err:
        assert backend in ("decord", "torchcodec"), f"{backend} must read {name}: {err}"
        assert str(err).startswith(str(path))  # a refusal or a decode error naming the file, never wrong pixels
        return
    assert frames.shape == (len(reference), *reference[0].shape)
    tolerance = 4.0 if backend == "frames" else 2.0  # JPEG frames; other FFmpeg builds' colour conversion
    for i, (got, want) in enumerate(zip(frames, reference, strict=True)):
        error = np.abs(got.astype(float) - want).mean()
        assert error <= tolerance, f"{name} {backend}: frame {i} (painted {painted[i]}) differs by {error:.1f}"
    if frames.shape[1] >= 32:
        from painted_frames import read_index

        assert [read_index(f) for f in frames] == painted


def test_the_thumbnail_is_not_the_video(media):
    """The issue's input: PyAV read a 1-frame video and decord sized frames by the thumbnail."""
    path, _ = media["mp4_thumbnail_first"]
    probe = probe_video(path)
    assert (probe.stream_index, probe.codec, probe.video_streams) == (1, "h264", 2)
    assert probe.display.size == (48, 64)
    for backend in ("pyav", "auto"):
        with open_video(path, backend) as reader:
            assert reader.num_frames == 40
    if backend_available("decord"):
        with pytest.raises(VideoReadError, match="decord cannot choose among the 2 video streams"):
            open_video(path, "decord")


def test_hidden_lead_in_frames_are_not_frames(media):
    path, _ = media["mp4_trim_bframes"]
    assert probe_video(path).hidden_packets == 5
    with open_video(path, "pyav") as reader:
        assert reader.num_frames == 35 and reader.indexed  # still indexed by timestamps, not decoded from the start
    if backend_available("decord"):
        with pytest.raises(VideoReadError, match="lead-in frames an edit list hides"):
            open_video(path, "decord")


def test_a_thumbnail_alone_is_no_video(tmp_path):
    import av
    from tricky_media import _jpeg

    path = tmp_path / "cover.mkv"
    with av.open(str(path), "w") as container:
        thumb = container.add_stream("mjpeg", rate=1)
        thumb.width, thumb.height, thumb.pix_fmt = 16, 16, "yuvj420p"
        thumb.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(_jpeg(16, 16))
        packet.stream, packet.pts, packet.dts = thumb, 0, 0
        container.mux(packet)
    with av.open(str(path)) as container:
        attached = bool(container.streams.video[0].disposition & av.stream.Disposition.attached_pic)
    if attached:
        with pytest.raises(VideoReadError, match=r"cover\.mkv: only an attached picture"):
            open_video(path, "pyav")
    else:  # the muxer kept it as a plain one-frame track: a (one-frame) video
        with open_video(path, "pyav") as reader:
            assert reader.num_frames == 1


def test_videos_under_1kb_open(media):
    for name in ("webm_tiny", "mkv_tiny"):
        path, _ = media[name]
        assert path.stat().st_size < 1024
        with open_video(path, "pyav") as reader:
            assert reader.num_frames == 3


@pytest.mark.parametrize("name", ["mp4_thumbnail_first", "mkv_still_track_first", "mp4_trim_bframes"])
def test_datasets_and_prediction_read_the_real_frames(media, tmp_path, painted, name):
    """The training/test dataset and prediction sample from the displayed frames of the real track."""
    from video_sparse.data.clip_sampling import sample_indices
    from video_sparse.data.video_dataset import build_video_dataset
    from video_sparse.inference.dataset import PredictionDataset
    from video_sparse.inference.inputs import discover_inputs

    path, stream = media[name]
    reference, shown = displayed_frames(path, stream)
    (tmp_path / "list.txt").write_text(f"{path} 0\n")
    options = dict(backend="auto", num_frames=8, frame_interval=2, input_size=48, short_side_size=48)
    test = build_video_dataset("/", tmp_path / "list.txt", "test", num_clips=2, num_crops=1, **options)
    for clip_index in range(2):
        wanted = sample_indices("dense", len(shown), 8, 2, "test", clip_index, 2)
        expected = test.transform(np.stack([reference[i] for i in wanted]), 0)  # the same crop of the reference
        assert (test.load_clip(0, clip_index) - expected).abs().mean() < 0.02
    predict = PredictionDataset(
        discover_inputs([path]), num_frames=8, frame_interval=2, input_size=48, short_side_size=48
    )
    wanted = sample_indices("dense", len(shown), 8, 2, "test", 0, 1)
    assert [painted.read_index(f) for f in predict.read_frames(0)] == [shown[i] for i in wanted]
