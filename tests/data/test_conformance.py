"""Conformance of every reader against a sequential decode, over a matrix of generated files.

For each file of :data:`media_factory.CASES` (codec x container x B-frames x variable frame rate x
display rotation x odd/small sizes x a mid-stream size change x a longer audio track) and each
backend, the frames returned for dense sampling, segment sampling and every multi-view test clip
equal the reference: a plain sequential PyAV decode shown as a player shows it.

Tolerances: PyAV is exact; decord is exact except for a mid-stream size change (decord resizes
with its own filter: mean absolute difference <= 2 grey levels); frame folders written by
``extract_frames`` (JPEG, quality 95) are within a mean absolute difference of 4. Every returned
frame must also be closest to the reference frame of its own index. A backend that cannot read a
file exactly must refuse it at open with a :class:`VideoReadError` saying so.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from media_factory import CASES, sequential_reference, write_case

from video_sparse.data.clip_sampling import sample_indices
from video_sparse.data.prepare.frames import extract_frames
from video_sparse.data.readers import (
    FrameFolderReader,
    VideoReadError,
    backend_available,
    open_video,
    probe_video,
)

BACKENDS = ("pyav", "decord", "torchcodec", "auto", "frames")
BY_NAME = {c.name: c for c in CASES}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """Every case written once, with its reference frames."""
    folder = tmp_path_factory.mktemp("media")
    out = {}
    for case in CASES:
        path = write_case(case, folder)
        frames, painted = sequential_reference(path, case.hflip, case.sar)
        out[case.name] = (path, np.stack(frames), painted)
    return out


def index_sets(n: int) -> list[list[int]]:
    """Dense and segment sampling in train (seeded), val and every test clip, plus reversed and repeated reads."""
    gen = torch.Generator().manual_seed(n)
    sets = []
    for sampling, clips in (("dense", 3), ("segment", 2)):
        sets.append(sample_indices(sampling, n, 8, 3, "train", generator=gen).tolist())
        sets.append(sample_indices(sampling, n, 8, 3, "val").tolist())
        sets += [sample_indices(sampling, n, 8, 3, "test", k, clips).tolist() for k in range(clips)]
    return sets + [[n - 1, 0, n // 2, n // 2, 1], list(range(n))]


def _open(backend: str, path: Path, tmp_path: Path):
    if backend == "frames":
        folder = tmp_path / "frames"
        extract_frames(path, folder, short_side=None, quality=95)
        return FrameFolderReader(folder)
    return open_video(path, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_reader_matches_sequential_decode(media, tmp_path, painted, name, backend):
    case = BY_NAME[name]
    path, ref, painted_idx = media[name]
    n = case.num_frames
    assert painted_idx == list(range(n)), "the generated file itself is wrong"
    if backend in ("decord", "torchcodec"):
        if not backend_available(backend):
            pytest.fail(f"{backend} does not import here: run `bash tools/setup_env.sh`")
        if probe_video(path).problem(backend):  # refused at open, clearly
            with pytest.raises(VideoReadError, match=f"{backend} "):
                open_video(path, backend)
            return
        if backend == "torchcodec" and len(case.sizes) > 1:  # documented: a read error, not wrong frames
            with open_video(path, backend) as reader, pytest.raises(VideoReadError, match="torchcodec failed"):
                reader.get_frames(range(n))
            return
    with _open(backend, path, tmp_path) as reader:
        assert reader.num_frames == n
        for wanted in index_sets(n):
            got = reader.get_frames(wanted)
            assert got.shape == (len(wanted), *ref.shape[1:]), (wanted, got.shape)
            expected = ref[wanted]
            diff = np.abs(got.astype(np.int16) - expected).mean(axis=(1, 2, 3))
            exact = backend == "pyav" or (backend != "frames" and len(case.sizes) == 1)
            if exact:
                assert np.array_equal(got, expected), (wanted, diff)
            else:
                assert diff.max() <= (4.0 if backend == "frames" else 2.0), (wanted, diff)
            # identity: each frame is nearest to the reference frame of its own index
            dist = np.abs(got[:, None].astype(np.int16) - ref[None]).mean(axis=(2, 3, 4))
            assert dist.argmin(axis=1).tolist() == wanted


def test_auto_picks_the_first_exact_backend(media):
    from video_sparse.data.readers import (
        AUTO_ORDER,
        DecordReader,
        PyAVReader,
        TorchCodecReader,
    )

    classes = {"decord": DecordReader, "torchcodec": TorchCodecReader, "pyav": PyAVReader}
    for name, (path, _, _) in media.items():
        probe = probe_video(path)
        expected = next(b for b in AUTO_ORDER if backend_available(b) and probe.problem(b) is None)
        with open_video(path, "auto") as reader:
            assert isinstance(reader, classes[expected]), name
    problems = {n: probe_video(p).problem("decord") for n, (p, _, _) in media.items()}
    assert {n for n, p in problems.items() if p is None} == {
        "h264_mp4_b",
        "h264_mp4_vfr",
        "h264_mkv_b_vfr",
        "vp8_webm",
        "vp9_webm_odd",
        "mjpeg_mov",
        "h264_mp4_small",
        "vp8_webm_resize",
        "h264_mp4_long_audio",
        "vp9_webm_long_audio",
    }


def test_sample_aspect_ratio_and_small_frames_through_the_dataset(media, tmp_path):
    """Non-square pixels are shown 4:3 wider; a frame smaller than the crop still gives full-size clips."""
    from video_sparse.data.video_dataset import build_video_dataset

    assert media["h264_mp4_sar"][1].shape[1:3] == (48, 64)
    for name in ("h264_mp4_sar", "h264_mp4_small"):
        path = media[name][0]
        (tmp_path / "list.txt").write_text(f"{path.name} 0\n")
        for mode in ("train", "test"):
            ds = build_video_dataset(
                path.parent,
                tmp_path / "list.txt",
                mode,
                backend="auto",
                num_frames=4,
                frame_interval=2,
                input_size=64,
                short_side_size=64,
                num_clips=2,
            )
            item = ds[len(ds) - 1]
            assert not item.get("failed") and item["input"].shape == (3, 4, 64, 64), (name, mode)
