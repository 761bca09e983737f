"""Atomic checkpoint writes: a failure mid-save leaves the previous checkpoint and `latest` intact."""

import os

import pytest
import torch

from video_sparse.engine import checkpointing


class _FakeEngine:
    """Writes files the way DeepSpeed does: several files into <dir>/<tag>/."""

    def __init__(self, fail_after_files=None):
        self.fail_after_files = fail_after_files

    def save_checkpoint(self, save_dir, tag, client_state, save_latest, exclude_frozen_parameters):
        folder = os.path.join(save_dir, tag)
        os.makedirs(folder, exist_ok=True)
        for i in range(3):
            if self.fail_after_files is not None and i == self.fail_after_files:
                raise KeyboardInterrupt("killed mid-save")
            torch.save({"i": i, **client_state}, os.path.join(folder, f"part{i}.pt"))


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path):
    checkpointing.save_checkpoint(_FakeEngine(), tmp_path, 10, {"epoch": 1}, rank=0)
    assert checkpointing.find_latest(tmp_path).name == "step_00000010"
    with pytest.raises(KeyboardInterrupt):
        checkpointing.save_checkpoint(_FakeEngine(fail_after_files=1), tmp_path, 20, {"epoch": 2}, rank=0)
    latest = checkpointing.find_latest(tmp_path)
    assert latest.name == "step_00000010"
    assert torch.load(latest / "part2.pt", weights_only=True)["epoch"] == 1
    assert (tmp_path / "step_00000020.tmp").exists()
    checkpointing.clean_stale(tmp_path, is_main=True)
    assert not (tmp_path / "step_00000020.tmp").exists()


def test_retention_keeps_the_last_k(tmp_path):
    for step in (1, 2, 3, 4):
        checkpointing.save_checkpoint(_FakeEngine(), tmp_path, step, {}, rank=0, keep_last=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000003", "step_00000004"]
    assert checkpointing.find_latest(tmp_path).name == "step_00000004"
    assert (tmp_path / "step_00000004" / "rng_rank0.pt").is_file()


def test_no_checkpoint_and_dangling_pointer(tmp_path):
    assert checkpointing.find_latest(tmp_path) is None
    (tmp_path / "latest").write_text("step_00000099")
    with pytest.raises(FileNotFoundError, match="step_00000099"):
        checkpointing.find_latest(tmp_path)


def test_pointer_is_a_name_inside_the_folder(tmp_path):
    """`latest` naming a path elsewhere is not followed; the newest complete checkpoint here is used."""
    outside = tmp_path / "elsewhere" / "step_00000050"
    checkpointing.save_checkpoint(_FakeEngine(), tmp_path / "elsewhere", 50, {}, rank=0)
    ckpt = tmp_path / "ckpt"
    checkpointing.save_checkpoint(_FakeEngine(), ckpt, 10, {}, rank=0)
    (ckpt / "latest").write_text(f"../elsewhere/{outside.name}")
    assert checkpointing.find_latest(ckpt) == ckpt / "step_00000010"


def test_commit_without_pointer_and_abandoned_future(tmp_path):
    """A save killed after its commit leaves `latest` on the previous checkpoint; resuming from it moves the
    later folder aside so the step can be saved again, never replaced in place."""
    checkpointing.save_checkpoint(_FakeEngine(), tmp_path, 10, {}, rank=0, keep_last=0)
    checkpointing.save_checkpoint(_FakeEngine(), tmp_path, 20, {}, rank=0, keep_last=0)
    (tmp_path / "latest").write_text("step_00000010")
    with pytest.raises(FileExistsError, match="never saved twice"):
        checkpointing.save_checkpoint(_FakeEngine(), tmp_path, 20, {}, rank=0)
    latest = checkpointing.find_latest(tmp_path)
    assert latest.name == "step_00000010"
    moved = checkpointing.abandon_after(tmp_path, 10, keep=latest)
    assert [p.relative_to(tmp_path).as_posix() for p in moved] == ["abandoned/step_00000020"]
    checkpointing.save_checkpoint(_FakeEngine(), tmp_path, 20, {}, rank=0)
    assert checkpointing.find_latest(tmp_path).name == "step_00000020"


def test_dangling_pointer_falls_back_to_the_newest_complete(tmp_path):
    checkpointing.save_checkpoint(_FakeEngine(), tmp_path, 10, {}, rank=0, keep_last=0)
    checkpointing.save_checkpoint(_FakeEngine(), tmp_path, 20, {}, rank=0, keep_last=0)
    (tmp_path / "latest").write_text("step_00000030")
    assert checkpointing.find_latest(tmp_path).name == "step_00000020"
