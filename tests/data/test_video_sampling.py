"""Dense and segment sampling, alone and through both readers on painted clips."""

import numpy as np
import pytest
import torch

from video_sparse.data.clip_sampling import dense_indices, sample_indices, segment_indices
from video_sparse.data.video_dataset import build_video_dataset


def test_dense_train_is_a_strided_window_inside_the_video():
    torch.manual_seed(0)
    starts = set()
    for _ in range(200):
        idx = dense_indices(100, 16, 4, "train")
        assert np.all(np.diff(idx) == 4) and idx[0] >= 0 and idx[-1] <= 99
        starts.add(int(idx[0]))
    # span 61 -> starts 0..39 all reachable
    assert min(starts) == 0 and max(starts) == 39 and len(starts) > 30


def test_dense_val_and_test_clips():
    assert dense_indices(100, 16, 4, "val").tolist() == list(range(19, 80, 4))
    starts = [dense_indices(100, 16, 4, "test", k, 5)[0] for k in range(5)]
    assert starts == [0, 10, 20, 29, 39]  # round(k * 39 / 4)
    assert dense_indices(100, 16, 4, "test", 0, 1)[0] == 19


def test_dense_short_video_repeats_last_frame():
    idx = dense_indices(10, 8, 2, "test", 2, 3)
    assert idx.tolist() == [0, 2, 4, 6, 8, 9, 9, 9]


def test_segment_sampling_one_frame_per_segment():
    torch.manual_seed(0)
    for _ in range(50):
        idx = segment_indices(48, 16, "train")
        assert np.all(idx // 3 == np.arange(16))  # segment j is frames 3j..3j+2
    assert segment_indices(48, 16, "val").tolist() == [3 * j + 1 for j in range(16)]


def test_segment_test_views_differ_and_stay_in_their_segments():
    views = [segment_indices(45, 16, "test", k, 2) for k in range(2)]
    length = 45 / 16
    for v in views:
        assert np.all(np.floor(np.arange(16) * length) <= v)
        assert np.all(v < np.arange(1, 17) * length)
    assert np.all(views[0] != views[1])
    three = {tuple(segment_indices(60, 16, "test", k, 3)) for k in range(3)}
    assert len(three) == 3


def test_segment_short_video_is_clamped():
    idx = segment_indices(5, 16, "val")
    assert idx.min() >= 0 and idx.max() <= 4 and len(idx) == 16 and np.all(np.diff(idx) >= 0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        dense_indices(0, 16, 4, "train")
    with pytest.raises(ValueError):
        segment_indices(10, 4, "test", 2, 2)
    with pytest.raises(ValueError):
        sample_indices("uniform", 10, 4, 1, "train")


def _dataset(root, list_file, mode, backend, sampling, **kw):
    return build_video_dataset(
        root,
        list_file,
        mode,
        backend=backend,
        sampling=sampling,
        num_frames=8,
        frame_interval=3,
        input_size=64,
        short_side_size=64,
        min_scale=1.0,
        min_ratio=1.0,
        max_ratio=1.0,
        hflip=False,
        **kw,
    )


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("sampling", ["dense", "segment"])
def test_readers_return_the_sampled_frames(tmp_path, painted, backend, sampling):
    if backend == "decord":
        pytest.importorskip("decord")
    painted.write_video(tmp_path / "a.mp4", 50)
    painted.write_video(tmp_path / "b.webm", 37)
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.webm 1\n")
    totals = [50, 37]
    for mode in ("train", "val", "test"):
        ds = _dataset(tmp_path, tmp_path / "list.txt", mode, backend, sampling, num_clips=2, num_crops=1)
        for i in range(len(ds)):
            torch.manual_seed(i)
            item = ds[i]
            torch.manual_seed(i)
            n_clips = 2 if mode == "test" else 1
            expected = sample_indices(
                sampling, totals[item["sample_index"]], 8, 3, mode, item["clip_index"], n_clips
            ).tolist()
            assert painted.clip_indices(item["input"]) == expected, (mode, i)
