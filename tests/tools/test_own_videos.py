"""README "Your own videos": build_lists.py folders (the three commands run in test_readme_commands.py)."""

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from video_sparse.data.lists import load_label_map, parse_list_file
from video_sparse.data.prepare.folders import build_folder_lists

REPO = Path(__file__).resolve().parents[2]


def _write_clip(path: Path, dx: int, dy: int, frames: int = 12, size: int = 40, seed: int = 0) -> None:
    """A real H.264 clip: a bright square moving by (dx, dy) pixels per frame over noise."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            x, y = (4 + dx * t) % (size - 8), (4 + dy * t) % (size - 8)
            image[y : y + 8, x : x + 8] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "my clips"  # a space in the path on purpose
    for i in range(5):
        _write_clip(root / "moving right" / f"r{i}.mp4", 2, 0, seed=i)
        _write_clip(root / "moving down" / "sub" / f"d{i}.mp4", 0, 2, seed=10 + i)
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
    _write_clip(tmp_path / "flat" / "a.mp4", 1, 0)
    with pytest.raises(ValueError, match="one sub-folder per class"):
        build_folder_lists(tmp_path / "flat")


def test_build_lists_usage_errors_are_one_line(tmp_path):
    result = _run(str(REPO / "tools" / "build_lists.py"), "folders", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "video folder not found" in result.stderr
