"""README "Your own videos": build_lists.py folders (the three commands run in test_readme_commands.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from moving_clips import write_moving_clip

from video_sparse.data.lists import load_label_map, parse_list_file
from video_sparse.data.prepare.folders import build_folder_lists

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "my clips"  # a space in the path on purpose
    for i in range(5):
        write_moving_clip(root / "moving right" / f"r{i}.mp4", 2, 0, seed=i)
        write_moving_clip(root / "moving down" / "sub" / f"d{i}.mp4", 0, 2, seed=10 + i)
    (root / "notes").mkdir()  # a folder without videos is no class
    (root / "notes" / "readme.txt").write_text("not a video")
    return root


def _env() -> dict[str, str]:
    return dict(
        {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))},
        OMP_NUM_THREADS="1",
    )


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], check=False, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )


def test_folder_lists_are_stratified_and_reproducible(clips, tmp_path):
    result = build_folder_lists(clips, tmp_path / "a", val_fraction=0.2, test_fraction=0.2, seed=1)
    assert result.classes == ["moving down", "moving right"]
    assert load_label_map(result.files["labels"]) == ["moving down", "moving right"]
    assert result.counts == {"train": 6, "val": 2, "test": 2}
    seen = []
    for split in ("train", "val", "test"):
        records, layout = parse_list_file(result.files[split], label_map=result.files["labels"], num_classes=2)
        assert layout == "video"
        assert sorted(r.label for r in records) == ([0] * 3 + [1] * 3 if split == "train" else [0, 1])
        for r in records:
            assert (clips / r.path).is_file() and r.path.startswith(result.classes[r.label] + "/")
        seen += [r.path for r in records]
    assert len(seen) == len(set(seen)) == 10
    again = build_folder_lists(clips, tmp_path / "b", val_fraction=0.2, test_fraction=0.2, seed=1)
    for split in ("train", "val", "test"):
        assert again.files[split].read_text() == result.files[split].read_text()


def test_folder_lists_refuse_a_flat_folder(tmp_path):
    write_moving_clip(tmp_path / "flat" / "a.mp4", 1, 0)
    with pytest.raises(ValueError, match="one sub-folder per class"):
        build_folder_lists(tmp_path / "flat")


def test_build_lists_usage_errors_are_one_line(tmp_path):
    result = _run(str(REPO / "tools" / "build_lists.py"), "folders", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "video folder not found" in result.stderr
