"""One run per output folder: a second live run is refused naming the holder; a dead run's lock is taken over."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_helpers import die, run, tiny_cfg

from video_sparse.engine.run_lock import LOCK_NAME, RunLock, RunLockedError

RUN_LOCK_FILE = Path(__file__).resolve().parents[2] / "video_sparse" / "engine" / "run_lock.py"

# A separate process takes the lock (the module loaded on its own, without the package) and waits.
_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("run_lock", sys.argv[1])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
module.RunLock(sys.argv[2]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_names_its_holder_and_is_released(tmp_path):
    with RunLock(tmp_path) as lock:
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert lock.held
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path).acquire().release()  # free again


def test_second_lock_in_this_process_is_refused(tmp_path):
    expected = rf"in use by another run: pid {os.getpid()} on host {socket.gethostname()}"
    with RunLock(tmp_path), pytest.raises(RunLockedError, match=expected):
        RunLock(tmp_path).acquire()


def test_live_holder_in_another_process_is_refused_then_its_stale_lock_taken_over(tmp_path, caplog):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(RUN_LOCK_FILE), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} on host"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the lock file stays
        holder.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING), RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"stale lock of pid {holder.pid}" in caplog.text


def test_lock_file_of_a_dead_pid_is_taken_over(tmp_path, caplog):
    dead = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": 0.0}))
    with caplog.at_level(logging.WARNING), RunLock(tmp_path):
        pass
    assert f"stale lock of pid {dead}" in caplog.text


def test_without_file_locks_the_pid_decides(tmp_path, monkeypatch):
    from video_sparse.engine import run_lock

    monkeypatch.setattr(run_lock, "fcntl", None)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(RunLockedError, match=f"pid {os.getppid()}"):
        RunLock(tmp_path).acquire()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    RunLock(tmp_path).acquire().release()


def test_two_runs_into_one_output_dir(tmp_path, digits_root, single_process_group):
    """A second run is refused while the first lives, leaving its files alone; after the first dies
    (killed: lock file left behind) a new run takes the folder over and finishes."""
    from video_sparse.engine.finetune import FinetuneRecipe

    out = tmp_path / "run"
    first = FinetuneRecipe(tiny_cfg(digits_root, out, "train.max_steps=4"))
    first.setup()
    first.train()
    config = (out / "config.yaml").read_text()
    second = FinetuneRecipe(tiny_cfg(digits_root, out, "epochs=3"))
    with pytest.raises(RunLockedError, match=f"{out} is in use by another run: pid {os.getpid()}"):
        second.setup()
    assert (out / "config.yaml").read_text() == config
    die(first)
    assert (out / LOCK_NAME).is_file()
    third = run(tiny_cfg(digits_root, out))
    assert third.finished and not (out / LOCK_NAME).exists()
