"""Writes into an output folder never follow a planted symbolic link; nothing is written before the lock;
``tools/test.py`` keeps out of a training run's records."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from recipe_helpers import subprocess_env, tiny_cfg, tiny_overrides

from video_sparse.engine.run_lock import RunLock
from video_sparse.safe_files import (
    UnsafeOutputError,
    ensure_dir,
    open_append,
    refuse_links_inside,
    save_image,
    write_text,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def victim(tmp_path):
    """A file and a folder outside the output folder that a planted link points at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    (outside / "folder").mkdir()
    return outside


def _untouched(victim: Path) -> None:
    assert (victim / "precious.txt").read_text() == "keep me\n"
    assert list((victim / "folder").iterdir()) == []
    assert sorted(p.name for p in victim.iterdir()) == ["folder", "precious.txt"]


def test_atomic_writers_replace_a_link_never_its_target(tmp_path, victim):
    from video_sparse.evaluation import plot_confusion_matrix
    from video_sparse.evaluation.multiview import merge_views, save_video_scores
    from video_sparse.evaluation.records import ViewScores, save_view_scores

    out = tmp_path / "out"
    out.mkdir()
    names = ["results.json", "video_scores.csv", "view_scores.npz", "confusion.png", "picture.jpg"]
    for name in names:
        (out / name).symlink_to(victim / "precious.txt")
    write_text(out / "results.json", "{}")
    records = ViewScores(np.array([0, 1]), np.array([0, 0]), np.array([1, 0]), np.array([[0.0, 1.0], [2.0, 0.0]]))
    save_view_scores(out / "view_scores.npz", records, failed=[], num_views=1)
    save_video_scores(out / "video_scores.csv", merge_views(records, num_views=1))
    plot_confusion_matrix(out / "confusion.png", np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 0]))
    from PIL import Image

    save_image(Image.new("RGB", (4, 4)), out / "picture.jpg")
    for name in names:
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0, name
    assert (out / "video_scores.csv").read_text().startswith("sample_index,video_id,label,pred")
    _untouched(victim)


def test_append_and_folders_refuse_links(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.log").symlink_to(victim / "precious.txt")
    (out / "tensorboard").symlink_to(victim / "folder")
    with pytest.raises(UnsafeOutputError, match=r"train.log is a symbolic link \(to .*precious.txt\)"):
        open_append(out / "train.log")
    with pytest.raises(UnsafeOutputError, match="tensorboard is a symbolic link"):
        ensure_dir(out / "tensorboard")
    with pytest.raises(UnsafeOutputError, match="tensorboard is a symbolic link"):
        write_text(out / "tensorboard" / "events", "x")
    (out / "deep" / "er").mkdir(parents=True)
    (out / "deep" / "er" / "x.pt").symlink_to(victim / "precious.txt")
    (out / "tensorboard").unlink()
    (out / "train.log").unlink()
    with pytest.raises(UnsafeOutputError, match="x.pt is a symbolic link"):
        refuse_links_inside(out)
    with open_append(out / "train.log") as log:  # a plain file is appended to
        log.write("line\n")
    assert (out / "train.log").read_text() == "line\n"
    _untouched(victim)


@pytest.mark.parametrize(
    "planted",
    ["run.lock", "config.yaml", "train.log", "results.json", ".hydra", "checkpoints", "tensorboard", "."],
)
def test_training_refuses_a_planted_link_before_writing(tmp_path, victim, digits_root, single_process_group, planted):
    """A link planted in (or as) output_dir stops the run with one line naming it; nothing is written."""
    from video_sparse.engine.finetune import FinetuneRecipe

    out = tmp_path / "run"
    if planted == ".":
        out.symlink_to(victim / "folder")
    else:
        out.mkdir()
        (out / planted).symlink_to(victim / ("folder" if planted.startswith((".", "c", "t")) else "precious.txt"))
    recipe = FinetuneRecipe(tiny_cfg(digits_root, out))
    with pytest.raises(UnsafeOutputError, match="is a symbolic link") as err:
        recipe.setup()
    assert "\n" not in str(err.value)
    _untouched(victim)
    if planted != ".":
        assert sorted(p.name for p in out.iterdir()) == [planted]  # not even run.lock stays


def _tool(name: str, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / f"{name}.py"), *overrides],
        capture_output=True,
        text=True,
        env={**subprocess_env(), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=600,
    )


def test_refused_run_and_tools_test_leave_a_training_folder_alone(tmp_path, digits_root):
    """.hydra/ is written by the run once it holds the lock; a refused second run writes nothing;
    tools/test.py on a training folder writes into its test/ subfolder, under its own lock."""
    out = tmp_path / "run"
    common = [o for o in tiny_overrides(digits_root, out) if not o.startswith("epochs=")]
    trained = _tool("train", *common, "epochs=1", "train.max_steps_per_epoch=2")
    assert trained.returncode == 0, trained.stderr[-3000:]
    overrides = (out / ".hydra" / "overrides.yaml").read_text()
    assert "- epochs=1" in overrides and "hydra" in (out / ".hydra" / "hydra.yaml").read_text()
    assert "optim" in (out / ".hydra" / "config.yaml").read_text()

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    before = snapshot()
    assert "results.json" in before and "history" in json.loads(before["results.json"])
    with RunLock(out):  # a live run holds the folder
        refused = _tool("train", *common, "epochs=3")
    assert refused.returncode == 2 and "is in use by another run" in refused.stderr
    assert snapshot() == before

    tested = _tool("test", *common, f"checkpoint={out / 'adapter.pth'}")
    assert tested.returncode == 0, tested.stderr[-3000:]
    after = snapshot()
    assert {k: v for k, v in after.items() if not k.startswith("test/")} == before
    assert json.loads(after["test/results.json"])["checkpoint"] == str(out / "adapter.pth")
    assert {"test/test.log", "test/config.yaml", "test/.hydra/overrides.yaml", "test/video_scores.csv"} <= set(after)
    assert not (out / "test" / "run.lock").exists()

    with RunLock(out / "test"):  # another test of the same folder is live
        second = _tool("test", *common, f"checkpoint={out / 'adapter.pth'}")
    assert second.returncode == 2 and "is in use by another run" in second.stderr
    assert snapshot() == after
    os.remove(out / "test" / "test.log")
    (out / "test" / "test.log").symlink_to(tmp_path / "elsewhere.log")
    linked = _tool("test", *common, f"checkpoint={out / 'adapter.pth'}")
    assert linked.returncode == 2 and "test.log is a symbolic link" in linked.stderr
    assert not (tmp_path / "elsewhere.log").exists()
