"""Damaged checkpoints are found by their checksums, set aside and skipped; a full disk says so.

Checkpoint folders are written by the real save sequence around an engine that writes files the way
DeepSpeed does; the exported adapter file is the real one of a nano model.
"""

import collections
import errno
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from video_sparse.checkpoint import CheckpointError, load_trained_weights
from video_sparse.checkpoint.adapter_files import load_adapter_checkpoint, save_adapter_checkpoint
from video_sparse.engine import checkpointing
from video_sparse.engine.checkpointing import CheckpointSpaceError, DamagedCheckpointError


class _Engine:
    """Writes two tensor files per save (like DeepSpeed's model and optimizer states); ``fail`` is raised
    after the first file."""

    def __init__(self, value: float = 1.0, fail: BaseException | None = None):
        self.value, self.fail = value, fail

    def save_checkpoint(self, save_dir, tag, client_state, save_latest, exclude_frozen_parameters):
        folder = f"{save_dir}/{tag}"
        os.makedirs(folder, exist_ok=True)
        torch.save({"w": torch.full((256,), self.value)}, f"{folder}/model_states.pt")
        if self.fail is not None:
            raise self.fail
        torch.save({"m": torch.full((64,), self.value)}, f"{folder}/optim_states.pt")


def _save(ckpt, *steps):
    for step in steps:
        checkpointing.save_checkpoint(_Engine(float(step)), ckpt, step, {"epoch": step}, rank=0, keep_last=0)


def _flip_bit_in_tensor(path, value: float):
    """Flip one bit inside the stored bytes of a tensor filled with ``value`` (float32)."""
    data = bytearray(path.read_bytes())
    at = data.find(torch.tensor([value] * 4).numpy().tobytes())
    assert at >= 0
    data[at + 1] ^= 0x10
    path.write_bytes(bytes(data))


def _damage_bit_flip(folder):
    _flip_bit_in_tensor(folder / "model_states.pt", float(int(folder.name[5:])))


def _damage_empty_meta(folder):
    (folder / checkpointing.META).write_text("")


def _damage_meta_not_json(folder):
    (folder / checkpointing.META).write_text('{"global_step": 3')


def _damage_meta_edited(folder):
    meta = json.loads((folder / checkpointing.META).read_text())
    meta["epoch"] += 1  # still valid JSON: only the digest shows it
    (folder / checkpointing.META).write_text(json.dumps(meta))


def _damage_truncated(folder):
    path = folder / "optim_states.pt"
    path.write_bytes(path.read_bytes()[:-100])


def _damage_missing_file(folder):
    (folder / "rng_rank0.pt").unlink()


DAMAGES = {
    "bit-flip-in-tensor": (_damage_bit_flip, "model_states.pt does not match its sha256"),
    "empty-meta": (_damage_empty_meta, "meta.json: empty"),
    "meta-not-json": (_damage_meta_not_json, "meta.json:1: not valid JSON"),
    "meta-edited": (_damage_meta_edited, "meta.json: does not match its digest"),
    "truncated-file": (_damage_truncated, r"optim_states.pt has \d+ bytes, \d+ were written"),
    "missing-file": (_damage_missing_file, "rng_rank0.pt is missing"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_newest_checkpoint_is_set_aside_and_the_previous_used(tmp_path, caplog, damage):
    ckpt = tmp_path / "checkpoints"
    _save(ckpt, 3, 6)
    hurt, reason = DAMAGES[damage]
    hurt(ckpt / "step_00000006")
    with pytest.raises(DamagedCheckpointError, match=f"step_00000006 is damaged: .*{reason}"):
        checkpointing.load_checkpoint(None, ckpt / "step_00000006", rank=0)
    with caplog.at_level(logging.WARNING):
        found = checkpointing.find_latest(ckpt)
    assert found == ckpt / "step_00000003"
    assert (ckpt / "damaged" / "step_00000006").is_dir()  # renamed, not deleted
    assert not (ckpt / "step_00000006").exists()
    assert "step_00000006 is damaged" in caplog.text and "trying the previous checkpoint" in caplog.text
    payload = torch.load(found / "model_states.pt", weights_only=True)
    assert torch.equal(payload["w"], torch.full((256,), 3.0))


def test_no_intact_checkpoint_left_is_one_clear_error(tmp_path):
    ckpt = tmp_path / "checkpoints"
    _save(ckpt, 3, 6)
    _damage_bit_flip(ckpt / "step_00000003")
    _damage_empty_meta(ckpt / "step_00000006")
    with pytest.raises(DamagedCheckpointError, match="no intact checkpoint left in .*step_00000006, step_00000003"):
        checkpointing.find_latest(ckpt)
    assert sorted(p.name for p in (ckpt / "damaged").iterdir()) == ["step_00000003", "step_00000006"]


def test_a_second_damaged_copy_of_one_step_is_kept_beside_the_first(tmp_path):
    ckpt = tmp_path / "checkpoints"
    _save(ckpt, 3)
    _damage_empty_meta(ckpt / "step_00000003")
    with pytest.raises(DamagedCheckpointError):
        checkpointing.find_latest(ckpt)
    _save(ckpt, 3)
    _damage_empty_meta(ckpt / "step_00000003")
    with pytest.raises(DamagedCheckpointError):
        checkpointing.find_latest(ckpt)
    assert sorted(p.name for p in (ckpt / "damaged").iterdir()) == ["step_00000003", "step_00000003.1"]


def test_intact_checkpoints_verify_and_older_ones_without_checksums_are_accepted(tmp_path, caplog):
    ckpt = tmp_path / "checkpoints"
    _save(ckpt, 3)
    meta = checkpointing.verify_checkpoint(ckpt / "step_00000003")
    assert set(meta["files"]) == {"model_states.pt", "optim_states.pt", "rng_rank0.pt"}
    (ckpt / "step_00000003" / checkpointing.META).write_text(json.dumps({"global_step": 3, "epoch": 3}))
    with caplog.at_level(logging.WARNING):
        assert checkpointing.find_latest(ckpt) == ckpt / "step_00000003"
    assert "no checksums" in caplog.text


# ------------------------------------------------------------------------------------------ full disk
def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    ckpt = tmp_path / "checkpoints"
    _save(ckpt, 3)
    size = sum(p.stat().st_size for p in (ckpt / "step_00000003").rglob("*") if p.is_file())
    assert checkpointing.estimate_bytes(None, ckpt) == size  # the previous checkpoint's size
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - size // 2, size // 2))
    with pytest.raises(CheckpointSpaceError, match=r"no space left for checkpoint .*step_00000006: .* MiB are free"):
        _save(ckpt, 6)
    assert not list(ckpt.glob("step_00000006*")) and checkpointing.find_latest(ckpt).name == "step_00000003"


def test_first_save_estimates_from_the_model_and_optimizer():
    model = torch.nn.Linear(100, 10)  # 1010 trainable fp32 parameters
    engine = type("E", (), {"module": model})()
    assert checkpointing.estimate_bytes(engine, Path("/nonexistent")) == 1010 * 4 * 4
    model.weight.requires_grad_(False)  # frozen: no optimizer state; left out with exclude_frozen
    assert checkpointing.estimate_bytes(engine, Path("/nonexistent"), True) == 10 * 4 * 4


@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 1428480 vs 1428368"),
    ],
    ids=["ENOSPC", "torch-zip-writer"],
)
def test_disk_full_during_a_save_names_the_folder_and_keeps_the_previous(tmp_path, failure):
    ckpt = tmp_path / "checkpoints"
    _save(ckpt, 3)
    with pytest.raises(CheckpointSpaceError, match=r"no space left on the device while saving checkpoint .*06") as e:
        checkpointing.save_checkpoint(_Engine(6.0, fail=failure), ckpt, 6, {}, rank=0)
    assert e.value.errno == errno.ENOSPC and "\n" not in str(e.value)
    assert not (ckpt / "step_00000006.tmp").exists()  # the partial save gives its space back
    assert checkpointing.find_latest(ckpt).name == "step_00000003"


def test_other_write_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        checkpointing.save_checkpoint(_Engine(fail=PermissionError(errno.EACCES, "denied")), tmp_path, 1, {}, rank=0)


# ------------------------------------------------------------------------------------------ adapter file
def _nano():
    import timm

    import video_sparse  # noqa: F401  (registers the models)

    torch.manual_seed(0)
    model = timm.create_model("sparse_vit_nano_patch16_64", num_classes=4)
    with torch.no_grad():
        model.head.weight.fill_(0.5)
    return model


@pytest.mark.parametrize("load", [load_adapter_checkpoint, load_trained_weights])
def test_a_flipped_bit_in_the_adapter_file_is_refused(tmp_path, load):
    model = _nano()
    path = save_adapter_checkpoint(model, tmp_path / "adapter.pth")
    load(_nano(), path)  # intact: loads
    _flip_bit_in_tensor(path, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"adapter.pth: damaged: its contents do not match the digest"):
        load(model, path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # unchanged


def test_a_flipped_bit_in_a_full_export_is_refused(tmp_path):
    from video_sparse.checkpoint.adapter_files import with_digest

    model = _nano()
    path = tmp_path / "model_final.pth"
    torch.save(with_digest({"model": model.state_dict(), "model_args": model.model_args}), path)
    assert load_trained_weights(_nano(), path) == "full"
    _flip_bit_in_tensor(path, 0.5)
    with pytest.raises(CheckpointError, match="model_final.pth: damaged"):
        load_trained_weights(_nano(), path)
