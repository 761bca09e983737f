"""The three inputs reported to fool the data path, each with its right value.

1. ``.avi`` with B-frames (libx264 and MPEG-4 Part 2) returned wrong frames or refused frames.
2. A VP8 ``.webm`` that changes resolution mid-stream crashed the dataset with a bare ``np.stack`` error.
3. A multi-view test in which every video is unreadable crashed after the pass and wrote nothing.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from media_factory import Case, write_case

from video_sparse.data.readers import VideoReadError, decord_available, open_video
from video_sparse.data.video_dataset import build_video_dataset

ROOT = Path(__file__).resolve().parents[2]
AVI_CASES = {
    "h264_avi": Case("h264_avi", "libx264", ".avi", bframes=3, sizes=((64, 48, 48),)),
    "mpeg4_avi": Case("mpeg4_avi", "mpeg4", ".avi", bframes=2, sizes=((64, 48, 48),)),
    "h264_mp4": Case("h264_mp4", "libx264", ".mp4", bframes=3, sizes=((64, 48, 48),)),
}


@pytest.mark.parametrize("name", sorted(AVI_CASES))
@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_bframes_in_avi_give_the_displayed_frames(tmp_path, painted, name, backend):
    path = write_case(AVI_CASES[name], tmp_path)
    with open_video(path, backend) as reader:
        assert reader.num_frames == 48
        for wanted in ([5, 10, 20, 30], [0, 1, 2, 3], [47, 0, 46, 23], list(range(48))):
            assert [painted.read_index(f) for f in reader.get_frames(wanted)] == wanted


def test_decord_refuses_avi_instead_of_returning_wrong_frames(tmp_path):
    if not decord_available():
        pytest.fail("decord does not import here: run `bash tools/setup_env.sh`")
    for name in ("h264_avi", "mpeg4_avi"):
        path = write_case(AVI_CASES[name], tmp_path)
        with pytest.raises(VideoReadError, match=r"decord cannot index frames of a 'avi' file"):
            open_video(path, "decord")


def _resizing_webm(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_case(Case("browser", "libvpx", ".webm", bframes=None, sizes=((64, 48, 12), (48, 64, 12))), folder)


@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_resolution_change_is_resized_to_the_first_frame(tmp_path, painted, backend):
    """Policy: every frame is shown at the first frame's size (48x64 HxW here), as a player would."""
    path = _resizing_webm(tmp_path)
    with open_video(path, backend) as reader:
        assert reader.num_frames == 24
        frames = reader.get_frames(range(24))
    assert frames.shape == (24, 48, 64, 3)
    assert [painted.read_index(f) for f in frames] == list(range(24))
    (tmp_path / "list.txt").write_text("browser.webm 1\n")
    for mode in ("train", "test"):
        ds = build_video_dataset(
            tmp_path,
            tmp_path / "list.txt",
            mode,
            backend=backend,
            num_frames=8,
            frame_interval=3,
            input_size=48,
            short_side_size=48,
            num_clips=2,
            num_crops=1,
            min_scale=1.0,
            min_ratio=1.0,
            max_ratio=1.0,
            hflip=False,
        )
        torch.manual_seed(0)
        item = ds[len(ds) - 1]
        assert not item.get("failed") and item["input"].shape == (3, 8, 48, 48) and item["skipped"] == 0


def test_any_sample_exception_becomes_a_named_read_error(tmp_path, painted, caplog):
    """A transform that raises on one video: excluded (test) or replaced (train), named with its list line."""
    painted.write_video(tmp_path / "good.mp4", 20)
    painted.write_video(tmp_path / "poison.mp4", 20, width=80)  # the transform below fails on 80 px wide frames
    (tmp_path / "list.txt").write_text("# header comment\ngood.mp4 0\npoison.mp4 1\n")
    common = dict(
        backend="pyav",
        num_frames=4,
        frame_interval=2,
        input_size=32,
        short_side_size=32,
        num_clips=1,
        num_crops=1,
        hflip=False,
        max_retries=3,
    )

    def poisoned(inner):
        def transform(frames, *args):
            if frames.shape[2] == 80:
                raise ValueError("all input arrays must have the same shape")
            return inner(frames, *args)

        return transform

    for mode in ("test", "train"):
        ds = build_video_dataset(tmp_path, tmp_path / "list.txt", mode, **common)
        ds.transform = poisoned(ds.transform)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            if mode == "test":
                assert not ds[0].get("failed")
                item = ds[1]
                assert item["failed"] and item["path"] == "poison.mp4"
                assert item["error"].startswith(f"{tmp_path / 'list.txt'}:3: poison.mp4: ValueError: all input")
            else:
                torch.manual_seed(0)
                item = ds[1]  # replaced by the good video, and counted
                assert item["sample_index"] == 0 and item["skipped"] >= 1 and torch.isfinite(item["input"]).all()
        assert "list.txt:3: poison.mp4: ValueError" in caplog.text


def _demo_run(tmp_path: Path, broken: int) -> tuple[subprocess.CompletedProcess, dict, list[str]]:
    import timm

    import video_sparse  # noqa: F401
    from video_sparse.checkpoint import save_adapter_checkpoint
    from video_sparse.data.demo import make_demo_dataset

    backbone = ROOT / "assets" / "demo_backbone_nano.safetensors"
    data = tmp_path / "data"
    lists = make_demo_dataset(data, num_train=4, num_val=4, num_test=3)
    test_paths = [line.rsplit(None, 1)[0] for line in Path(lists["test"]).read_text().splitlines() if line.strip()]
    for rel in test_paths[:broken]:
        video = data / rel
        video.write_bytes(video.read_bytes()[:2000])
    model = timm.create_model("sparse_videomae_nano_patch16_64", num_classes=4, checkpoint=str(backbone))
    adapter = save_adapter_checkpoint(model, tmp_path / "adapter.pth")
    out = tmp_path / "run"
    overrides = [
        "experiment=demo",
        f"data.root={data}",
        "data.demo.num_train=4",
        "data.demo.num_val=4",
        "data.demo.num_test=3",
        "data.test_num_clips=2",
        "data.test_num_crops=1",
        "data.batch_size=4",
        "test.confusion_matrix=true",
        f"checkpoint={adapter}",
        f"pretrained={backbone}",
        f"output_dir={out}",
    ]
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "test.py"), *overrides],
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    summary = json.loads((out / "results.json").read_text())["test"] if (out / "results.json").exists() else {}
    return result, summary, test_paths


def test_a_test_that_scores_nothing_writes_its_summary_and_fails(tmp_path):
    result, summary, paths = _demo_run(tmp_path, broken=3)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "0 scored, 3 failed" in result.stderr and paths[0] in result.stderr
    assert summary["num_videos"] == 0 and summary["num_failed"] == 3
    assert sorted(summary["failed_videos"]) == sorted(paths)


def test_one_unreadable_video_of_three_is_reported_and_excluded(tmp_path):
    result, summary, paths = _demo_run(tmp_path, broken=1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (summary["num_videos"], summary["num_failed"], summary["failed_videos"]) == (2, 1, [paths[0]])
