"""A kill at any step of a checkpoint save leaves a run that resumes to the uninterrupted run's weights,
train-loss history, TensorBoard curves and results.json (one process, real DeepSpeed ZeRO-2, nano ViT)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recipe_helpers import (
    results,
    run,
    scalars,
    subprocess_env,
    tiny_cfg,
    tiny_overrides,
    trained_weights,
)

from video_sparse.engine import checkpointing

# Saves of the reference run: steps 4 (mid-epoch), 6 (epoch end), 8 (mid-epoch), 12 (epoch and run end);
# the step-12 mid-epoch save is left to the epoch end (never the same step twice). keep_last=1 prunes.
SAVED_STEPS = [4, 6, 8, 12]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits_root, single_process_group):
    out = tmp_path_factory.mktemp("straight")
    saved = []
    real_save = checkpointing.save_checkpoint

    def recording_save(engine, ckpt_dir, global_step, *args, **kwargs):
        saved.append(global_step)
        return real_save(engine, ckpt_dir, global_step, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(checkpointing, "save_checkpoint", recording_save)
    try:
        recipe = run(tiny_cfg(digits_root, out))
    finally:
        mp.undo()
    return {"out": out, "saved": saved, "weights": trained_weights(recipe), "history": recipe.history}


def test_each_step_is_saved_once(reference):
    assert reference["saved"] == SAVED_STEPS
    assert [p.name for p in checkpointing.complete_checkpoints(reference["out"] / "checkpoints")] == ["step_00000012"]
    assert len(reference["history"]) == 2


def _assert_same_run(out, reference, recipe):
    weights = trained_weights(recipe)
    assert weights.keys() == reference["weights"].keys()
    for name, value in weights.items():
        assert torch.equal(value, reference["weights"][name]), name
    assert recipe.history == reference["history"]
    assert scalars(out) == scalars(reference["out"])
    assert results(out) == results(reference["out"])


# (point, occurrence): each step of the save sequence in the epoch-end save of step 6 (the 2nd save, the
# first that prunes: `old_renamed` is reached once per pruned folder), and the commit of a mid-epoch save.
KILLS = [(point, 1 if point == "old_renamed" else 2) for point in checkpointing.SAVE_POINTS] + [("committed", 3)]


@pytest.mark.parametrize("point,n", KILLS, ids=[f"{p}-{n}" for p, n in KILLS])
def test_kill_at_each_save_step_resumes_to_the_same_run(tmp_path, monkeypatch, digits_root, reference, point, n):
    out = tmp_path / "run"
    killed = run(tiny_cfg(digits_root, out), kill_at=(point, n), monkeypatch=monkeypatch)
    assert not killed.finished
    ckpt = out / "checkpoints"
    assert checkpointing.find_latest(ckpt) is not None, sorted(p.name for p in ckpt.iterdir())
    resumed = run(tiny_cfg(digits_root, out))
    assert resumed.finished
    _assert_same_run(out, reference, resumed)
    assert not list(ckpt.glob("*.tmp"))


def test_kill_during_resume_save_of_a_kill(tmp_path, monkeypatch, digits_root, reference):
    """Two kills in a row (the second one in the first save after resuming) still end in the same run."""
    out = tmp_path / "run"
    run(tiny_cfg(digits_root, out), kill_at=("committed", 2), monkeypatch=monkeypatch)
    run(tiny_cfg(digits_root, out), kill_at=("pointer_written", 1), monkeypatch=monkeypatch)
    _assert_same_run(out, reference, run(tiny_cfg(digits_root, out)))


def test_explicit_resume_from_an_older_checkpoint_moves_the_later_ones_aside(tmp_path, digits_root, reference):
    out = tmp_path / "run"
    run(tiny_cfg(digits_root, out, "train.keep_last=0", "train.max_steps=9"))
    ckpt = out / "checkpoints"
    assert [p.name for p in checkpointing.complete_checkpoints(ckpt)] == [
        "step_00000004",
        "step_00000006",
        "step_00000008",
    ]
    resumed = run(tiny_cfg(digits_root, out, "train.keep_last=0", f"resume={ckpt / 'step_00000004'}"))
    assert sorted(p.name for p in (ckpt / checkpointing.ABANDONED).iterdir()) == ["step_00000006", "step_00000008"]
    _assert_same_run(out, reference, resumed)


# tools/train.py in a process that really dies (os._exit: no clean-up, no flush, lock dropped by the kernel)
# the n-th time the save sequence reaches a point.
_KILLING_TRAIN = """
import os, runpy, sys
from video_sparse.engine import checkpointing
point, n, seen = sys.argv[1], int(sys.argv[2]), [0]
def reached(name):
    if name == point:
        seen[0] += 1
        if seen[0] == n:
            os._exit(137)
checkpointing._reached = reached
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
ROOT = Path(__file__).resolve().parents[2]


def test_real_process_kill_between_commit_and_pointer(tmp_path, digits_root, reference):
    out = tmp_path / "run"
    train = [str(ROOT / "tools" / "train.py"), *tiny_overrides(digits_root, out)]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLING_TRAIN, "committed", "2", *train],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert killed.returncode == 137, killed.stderr[-3000:]
    assert (out / "run.lock").is_file() and (out / "checkpoints" / "latest").read_text() == "step_00000004"
    resumed = subprocess.run(
        [sys.executable, *train],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    adapter = torch.load(out / "adapter.pth", weights_only=True)["state_dict"]
    for name, value in reference["weights"].items():
        assert torch.equal(adapter[name], value), name
    assert scalars(out) == scalars(reference["out"])
    assert results(out) == results(reference["out"])


def test_finished_run_without_its_adapter_redoes_test_and_export(tmp_path, digits_root, reference):
    """A kill after training, while results.json was being written (truncated) and before adapter.pth (written
    last): the same command again tests and exports, instead of taking the run as done."""
    out = tmp_path / "run"
    shutil.copytree(reference["out"], out)
    (out / "adapter.pth").unlink()
    (out / "results.json").write_text('{"name": "tru')
    again = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), *tiny_overrides(digits_root, out)],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    adapter = torch.load(out / "adapter.pth", weights_only=True)["state_dict"]
    for name, value in reference["weights"].items():
        assert torch.equal(adapter[name], value), name
    assert results(out) == results(reference["out"])


def test_vtab_sweep_reruns_a_task_that_has_no_adapter(tmp_path, monkeypatch):
    """The sweep skips a task only when its adapter.pth (written last) exists, so a task killed while
    writing results.json runs again (and resumes) instead of breaking the sweep for ever."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vtab_sweep", ROOT / "tools" / "vtab_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    launched = []

    def fake_run(cfg):
        launched.append(cfg.output_dir)
        (tmp_path / "cifar" / "results.json").write_text("{}")
        (tmp_path / "cifar" / "adapter.pth").write_bytes(b"")

    import video_sparse.engine.finetune as finetune

    monkeypatch.setattr(finetune, "run_training", fake_run)
    (tmp_path / "cifar").mkdir()
    (tmp_path / "cifar" / "results.json").write_text('{"test": {"to')
    sweep.run_task("cifar", "root", tmp_path, [])
    assert launched == [str(tmp_path / "cifar")]
    sweep.run_task("cifar", "root", tmp_path, [])
    assert len(launched) == 1


# tools/train.py in a real process that sends itself SIGUSR1 while a given optimizer step runs (as SLURM's
# `--signal=USR1@120` would): the signal handler, not the test, decides where the run stops.
_SIGNALLED_TRAIN = """
import os, runpy, signal, sys
from video_sparse.engine.finetune import FinetuneRecipe
at_step, keep_rate = int(sys.argv[1]), FinetuneRecipe._keep_rate
def signalling_keep_rate(self, micro_step):
    if self.global_step == at_step and micro_step == self.step_in_epoch:
        os.kill(os.getpid(), signal.SIGUSR1)
    return keep_rate(self, micro_step)
FinetuneRecipe._keep_rate = signalling_keep_rate
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("at_step,saved", [(1, 2), (5, 6)], ids=["mid-epoch", "last-step-of-epoch"])
def test_preemption_signal_saves_a_step_and_resumes_to_the_same_run(tmp_path, digits_root, reference, at_step, saved):
    """SIGUSR1 during optimizer step 2 (mid-epoch: a step checkpoint no regular save makes) or step 6 (the
    epoch's last: validation and the epoch-end save run, then it stops): exit 75 after the checkpoint; the
    same command then ends bit-identical to the uninterrupted run."""
    from video_sparse.engine.preemption import PREEMPTED_EXIT_CODE

    out = tmp_path / "run"
    train = [str(ROOT / "tools" / "train.py"), *tiny_overrides(digits_root, out)]
    stopped = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_TRAIN, str(at_step), *train],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert stopped.returncode == PREEMPTED_EXIT_CODE == 75, stopped.stderr[-3000:]
    assert "preempted (SIGUSR1)" in stopped.stdout
    ckpt = out / "checkpoints"
    assert (ckpt / "latest").read_text() == checkpointing.step_tag(saved)
    assert not (out / "results.json").exists() and not (out / "adapter.pth").exists()
    resumed = subprocess.run(
        [sys.executable, *train],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {ckpt / checkpointing.step_tag(saved)}" in resumed.stdout
    adapter = torch.load(out / "adapter.pth", weights_only=True)["state_dict"]
    for name, value in reference["weights"].items():
        assert torch.equal(adapter[name], value), name
    assert scalars(out) == scalars(reference["out"])
    assert results(out) == results(reference["out"])


def test_a_flipped_bit_in_the_newest_checkpoint_resumes_from_the_previous(tmp_path, digits_root, reference):
    """One bit of the newest checkpoint's model file flipped (torch.load would read it silently): the resume
    sets it aside, continues from the previous checkpoint and ends as the uninterrupted run."""
    out = tmp_path / "run"
    run(tiny_cfg(digits_root, out, "train.keep_last=0", "train.max_steps=9"))
    ckpt = out / "checkpoints"
    model_file = next((ckpt / "step_00000008").rglob("*model_states.pt"))
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    resumed = run(tiny_cfg(digits_root, out, "train.keep_last=0"))
    assert (ckpt / checkpointing.DAMAGED / "step_00000008").is_dir()
    _assert_same_run(out, reference, resumed)
