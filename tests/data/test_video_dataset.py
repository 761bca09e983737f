"""VideoClassificationDataset: items, multi-view test views, failures, layouts."""

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from video_sparse.data.clip_sampling import dense_indices
from video_sparse.data.collate import collate_samples
from video_sparse.data.prepare.frames import extract_frames
from video_sparse.data.video_dataset import build_video_dataset

KEYS = {"input", "label", "sample_index", "view_index", "clip_index", "crop_index", "skipped"}


def _small(root, list_file, mode, **kw):
    args = dict(
        backend="pyav",
        num_frames=8,
        frame_interval=2,
        input_size=64,
        short_side_size=64,
        min_scale=1.0,
        min_ratio=1.0,
        max_ratio=1.0,
        hflip=False,
    )
    args.update(kw)
    return build_video_dataset(root, list_file, mode, **args)


@pytest.fixture
def three_videos(tmp_path, painted):
    for name, n in (("a b/one.mp4", 40), ("two.mp4", 30), ("three.webm", 50)):
        painted.write_video(tmp_path / name, n)
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\na b/one.mp4 2\n\ntwo.mp4 0\nthree.webm 1\n")
    return tmp_path, lst, [40, 30, 50]


def test_train_item_contract(three_videos):
    root, lst, _ = three_videos
    ds = _small(root, lst, "train")
    assert len(ds) == ds.num_videos == 3 and ds.num_views == 1
    assert ds.video_paths == ["a b/one.mp4", "two.mp4", "three.webm"] and ds.labels == [2, 0, 1]
    item = ds[0]
    assert set(item) == KEYS
    assert item["input"].dtype == torch.float32 and item["input"].shape == (3, 8, 64, 64)
    assert (item["label"], item["sample_index"], item["view_index"], item["skipped"]) == (2, 0, 0, 0)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_multiview_views_and_indices(three_videos, painted, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    root, lst, totals = three_videos
    ds = _small(root, lst, "test", backend=backend, num_clips=2, num_crops=3)
    assert ds.num_views == 6 and len(ds) == 18
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        video, view = divmod(i, 6)
        assert item["sample_index"] == video and item["view_index"] == view
        assert item["view_index"] == item["clip_index"] * 3 + item["crop_index"]
        assert item["label"] == ds.labels[video]
        expected = dense_indices(totals[video], 8, 2, "test", item["clip_index"], 2).tolist()
        assert painted.clip_indices(item["input"]) == expected
        seen.add((item["sample_index"], item["clip_index"], item["crop_index"]))
    assert len(seen) == 18


def test_test_crops_cover_left_centre_right(tmp_path):
    """A horizontal ramp: each of 3 crops of a 96x64 frame starts at x = 0, 16, 32."""
    import av

    path = tmp_path / "ramp.mp4"
    ramp = np.tile((np.arange(96) * 2.5).astype(np.uint8)[None, :, None], (64, 1, 3))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for _ in range(12):
            for p in s.encode(av.VideoFrame.from_ndarray(ramp, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    (tmp_path / "l.txt").write_text("ramp.mp4 0\n")
    ds = _small(tmp_path, tmp_path / "l.txt", "test", num_clips=1, num_crops=3, mean=(0, 0, 0), std=(1, 1, 1))
    for crop, x0 in enumerate((0, 16, 32)):
        clip = ds[crop]["input"] * 255
        assert ds[crop]["crop_index"] == crop
        assert abs(float(clip[:, :, :, 32].mean()) - (x0 + 32) * 2.5) < 6


def test_defaults_follow_the_anchors(three_videos):
    root, lst, _ = three_videos
    k400 = build_video_dataset(root, lst, "test", backend="pyav")
    ssv2 = build_video_dataset(root, lst, "test", backend="pyav", sampling="segment")
    assert (k400.num_clips, k400.num_crops, k400.num_frames, k400.frame_interval) == (5, 3, 16, 4)
    assert (ssv2.num_clips, ssv2.num_crops) == (2, 3)
    k400_train = build_video_dataset(root, lst, "train", backend="pyav")
    ssv2_train = build_video_dataset(root, lst, "train", backend="pyav", sampling="segment")
    assert k400_train.transform.hflip and not ssv2_train.transform.hflip
    assert len(k400) == 3 * 15 and len(ssv2) == 3 * 6


def test_eval_failures_are_reported_not_replaced(three_videos, painted, caplog):
    root, lst, _ = three_videos
    (root / "bad.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    painted.truncate(painted.write_video(root / "cut.mp4", 60), 0.5)
    lst.write_text(lst.read_text() + "bad.mp4 1\ncut.mp4 0\n")
    for mode in ("val", "test"):
        ds = _small(root, lst, mode, num_clips=1, num_crops=1)
        with caplog.at_level(logging.WARNING):
            items = [ds[i] for i in range(len(ds))]
        failed = [it for it in items if it.get("failed")]
        assert [(f["sample_index"], f["path"]) for f in failed] == [(3, "bad.mp4"), (4, "cut.mp4")]
        assert all(f["view_index"] == 0 and f["error"] for f in failed)
        assert "bad.mp4" in caplog.text and "cut.mp4" in caplog.text
        batch = collate_samples(items)
        assert batch["input"].shape[0] == 3 and batch["sample_index"].tolist() == [0, 1, 2]
        assert [f["path"] for f in batch["failed"]] == ["bad.mp4", "cut.mp4"]
        only_failed = collate_samples(failed)
        assert "input" not in only_failed and only_failed["label"].numel() == 0
        assert len(only_failed["failed"]) == 2


def test_train_failures_are_replaced_and_counted(three_videos, painted, caplog):
    root, lst, _ = three_videos
    (root / "bad.mp4").write_bytes(b"\x01" * 4096)
    painted.truncate(painted.write_video(root / "cut.mp4", 60), 0.5)
    lst.write_text(lst.read_text() + "bad.mp4 1\ncut.mp4 0\n")
    ds = _small(root, lst, "train")
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in (3, 4, 3, 4)]
    for item in items:
        assert item["skipped"] >= 1 and item["sample_index"] in (0, 1, 2)
        assert item["label"] == ds.labels[item["sample_index"]]
        assert torch.isfinite(item["input"]).all() and item["input"].abs().sum() > 0
    assert "bad.mp4" in caplog.text and "cut.mp4" in caplog.text
    assert ds[0]["skipped"] == 0


def test_train_gives_up_after_consecutive_failures(tmp_path):
    for k in range(3):
        (tmp_path / f"bad{k}.mp4").write_bytes(b"\x02" * 4096)
    (tmp_path / "l.txt").write_text("bad0.mp4 0\nbad1.mp4 1\nbad2.mp4 0\n")
    ds = _small(tmp_path, tmp_path / "l.txt", "train", max_retries=4)
    with pytest.raises(RuntimeError, match="4 consecutive unreadable videos"):
        ds[0]


def test_too_short_video_is_a_failure(tmp_path, painted):
    painted.write_video(tmp_path / "short.mp4", 6)
    painted.write_video(tmp_path / "long.mp4", 30)
    (tmp_path / "l.txt").write_text("short.mp4 0\nlong.mp4 1\n")
    test = _small(tmp_path, tmp_path / "l.txt", "test", num_clips=1, num_crops=1, min_frames=10)
    assert test[0]["failed"] and "too short" in test[0]["error"]
    train = _small(tmp_path, tmp_path / "l.txt", "train", min_frames=10)
    torch.manual_seed(0)
    item = train[0]
    assert item["sample_index"] == 1 and item["skipped"] >= 1
    padded = _small(tmp_path, tmp_path / "l.txt", "val")  # default min_frames=1: pad with the last frame
    assert padded[0]["input"].shape == (3, 8, 64, 64)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_frame_folders_give_the_same_clip_as_the_video(tmp_path, painted, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    names = ("v0.mp4", "v1.webm")
    for k, name in enumerate(names):
        painted.write_video(tmp_path / "videos" / name, 45 + 10 * k, height=80, width=96)
    (tmp_path / "videos.txt").write_text("".join(f"{n} {k}\n" for k, n in enumerate(names)))
    counts = [
        extract_frames(tmp_path / "videos" / n, tmp_path / "frames" / n.split(".")[0], short_side=None, quality=95)
        for n in names
    ]
    assert counts == [45, 55]
    (tmp_path / "frames.txt").write_text("v0 45 0\nv1 55 1\n")
    common = dict(input_size=64, short_side_size=72, min_scale=0.3, max_ratio=1.3, hflip=True)
    for mode in ("train", "val", "test"):
        vid = _small(tmp_path / "videos", tmp_path / "videos.txt", mode, backend=backend, **common)
        frm = _small(tmp_path / "frames", tmp_path / "frames.txt", mode, **common)
        assert frm.layout == "frames" and vid.layout == "video" and len(vid) == len(frm)
        for i in range(0, len(vid), 7 if mode == "test" else 1):
            torch.manual_seed(100 + i)
            a = vid[i]
            torch.manual_seed(100 + i)
            b = frm[i]
            assert {k: a[k] for k in KEYS - {"input"}} == {k: b[k] for k in KEYS - {"input"}}
            assert (a["input"] - b["input"]).abs().mean() < 0.05, (mode, i)


def test_dataloader_with_workers(three_videos):
    root, lst, _ = three_videos
    ds = _small(root, lst, "test", num_clips=2, num_crops=1)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_samples)
    seen = []
    for batch in loader:
        assert batch["input"].shape[1:] == (3, 8, 64, 64)
        seen += list(zip(batch["sample_index"].tolist(), batch["view_index"].tolist()))
    assert seen == [(v, k) for v in range(3) for k in range(2)]


def test_randaugment_and_flip(three_videos):
    root, lst, _ = three_videos
    plain = _small(root, lst, "train")
    flip = _small(root, lst, "train", hflip=True)
    outcomes = []
    for seed in range(12):
        torch.manual_seed(seed)
        ref = plain[1]["input"]
        torch.manual_seed(seed)
        out = flip[1]["input"]
        same, mirrored = torch.equal(out, ref), torch.equal(out, ref.flip(-1))
        assert same or mirrored
        outcomes.append(mirrored)
    assert any(outcomes) and not all(outcomes)
    aug = _small(root, lst, "train", randaugment=True)
    x = aug[2]["input"]
    assert x.shape == (3, 8, 64, 64) and torch.isfinite(x).all()


def test_frames_layout_is_detected_and_validated(tmp_path, painted):
    painted.write_frames(tmp_path / "f1", 10)
    (tmp_path / "l.txt").write_text("f1 10 3\n")
    ds = _small(tmp_path, tmp_path / "l.txt", "val", layout="auto")
    assert ds.layout == "frames" and ds.backend == "frames" and ds[0]["label"] == 3
    (tmp_path / "bad.txt").write_text("f1 10 3\nf1 3\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        _small(tmp_path, tmp_path / "bad.txt", "val")
    with pytest.raises(ValueError, match="mode"):
        _small(tmp_path, tmp_path / "l.txt", "eval")


def test_dataset_pickles_for_spawned_workers(three_videos):
    """spawn-started workers (the decord recommendation) receive the dataset by pickling."""
    import pickle

    root, lst, _ = three_videos
    ds = _small(root, lst, "test", num_clips=2, num_crops=3)
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds) and clone.video_paths == ds.video_paths
    assert torch.equal(clone[7]["input"], ds[7]["input"])
