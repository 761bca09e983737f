"""tools/prepare_frames.py: parallel extraction, failures file, resume, round trip through the dataset."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from video_sparse.data.lists import parse_list_file
from video_sparse.data.prepare.frames import prepare_frames
from video_sparse.data.video_dataset import build_video_dataset

REPO = Path(__file__).resolve().parents[2]


def _tool_main():
    spec = importlib.util.spec_from_file_location("tool_prepare_frames", REPO / "tools" / "prepare_frames.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def video_folder(tmp_path, painted):
    videos = tmp_path / "videos"
    painted.write_video(videos / "left" / "a.mp4", 40, height=80, width=96)
    painted.write_video(videos / "right" / "b c.webm", 30, height=80, width=96)
    noise = np.random.default_rng(1).integers(0, 256, 9000, np.uint8)
    (videos / "right" / "bad.mp4").write_bytes(noise.tobytes())
    (tmp_path / "videos.txt").write_text("left/a.mp4 0\nright/b c.webm 1\nright/bad.mp4 1\n")
    return tmp_path


def test_extract_report_resume_and_round_trip(video_folder, painted, capsys):
    root = video_folder
    args = [
        "--videos",
        str(root / "videos"),
        "--list",
        str(root / "videos.txt"),
        "--out",
        str(root / "frames"),
        "--out-list",
        str(root / "frames.txt"),
        "--short-side",
        "64",
        "--quality",
        "92",
        "--workers",
        "2",
        "--no-progress",
    ]
    main = _tool_main()
    assert main(args) == 0
    assert "2 extracted, 0 already complete, 1 failed" in capsys.readouterr().out
    records, layout = parse_list_file(root / "frames.txt")
    assert layout == "frames"
    assert [(r.path, r.num_frames, r.label) for r in records] == [("left/a", 40, 0), ("right/b c", 30, 1)]
    failures = (root / "frames.txt.failures.txt").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith(str(root / "videos" / "right" / "bad.mp4") + "\t")
    with Image.open(root / "frames" / "left" / "a" / "img_00040.jpg") as img:
        assert img.size == (77, 64)  # short side 64, aspect kept (96x80 -> 76.8x64)
    assert not (root / "frames" / "left" / "a" / "img_00041.jpg").exists()

    # resume: complete folders are skipped; a removed folder and a stale partial one are redone
    assert main(args) == 0
    assert "0 extracted, 2 already complete, 1 failed" in capsys.readouterr().out
    for f in (root / "frames" / "right" / "b c").iterdir():
        f.unlink()
    (root / "frames" / "right" / "b c").rmdir()
    (root / "frames" / "right" / ".b c.partial").mkdir()
    (root / "frames" / "right" / ".b c.partial" / "img_00001.jpg").write_bytes(b"junk")
    assert main(args) == 0
    assert "1 extracted, 1 already complete, 1 failed" in capsys.readouterr().out
    assert not (root / "frames" / "right" / ".b c.partial").exists()

    # the frame list round-trips: same views and the same clips as the video list
    kw = dict(
        backend="pyav", num_frames=8, frame_interval=3, input_size=64, short_side_size=64, num_clips=2, num_crops=3
    )
    vids = build_video_dataset(root / "videos", root / "videos.txt", "test", **kw)
    frms = build_video_dataset(root / "frames", root / "frames.txt", "test", **kw)
    assert len(frms) == 2 * 6 and vids.video_paths[:2] == ["left/a.mp4", "right/b c.webm"]
    for i in range(len(frms)):
        a, b = vids[i], frms[i]
        for key in ("sample_index", "view_index", "label"):
            assert a[key] == b[key]
        assert painted.clip_indices(a["input"]) == painted.clip_indices(b["input"])
        assert (a["input"] - b["input"]).abs().mean() < 0.1
    assert vids[2 * 6]["failed"]  # the undecodable video stays visible in the video list's evaluation


def test_folder_mode_labels_from_class_folders(video_folder, tmp_path):
    root = video_folder
    (root / "classes.txt").write_text("left\nright\n")
    report = prepare_frames(
        root / "videos",
        root / "frames2",
        root / "all.txt",
        label_map=root / "classes.txt",
        short_side=None,
        workers=0,
        progress=False,
    )
    assert report.num_extracted == 2 and [Path(p).name for p, _ in report.failures] == ["bad.mp4"]
    records, _ = parse_list_file(root / "all.txt")
    assert [(r.path, r.num_frames, r.label) for r in records] == [("left/a", 40, 0), ("right/b c", 30, 1)]
    with Image.open(root / "frames2" / "left" / "a" / "img_00001.jpg") as img:
        assert img.size == (96, 80)
    ds = build_video_dataset(root / "frames2", root / "all.txt", "train", num_frames=4, input_size=32)
    torch.manual_seed(0)
    assert ds[1]["input"].shape == (3, 4, 32, 32)
    with pytest.raises(ValueError, match="label map"):
        prepare_frames(root / "videos", root / "frames3", root / "x.txt", workers=0, progress=False)
