"""A new user's first hour: CPU runs need no compiler, tools work from any folder, clear messages."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.demo.num_train=16",
    "data.demo.num_val=4",
    "data.demo.num_test=4",
    "data.demo.size=32",
    "data.input_size=32",
    "data.short_side_size=32",
    "data.num_frames=8",
    "data.batch_size=4",
    "data.test_num_clips=1",
    "data.test_num_crops=1",
    "epochs=1",
]


def _no_compiler_env(tmp: Path) -> dict[str, str]:
    """No C++ compiler reachable and an empty extension cache: any JIT build would fail."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DS_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))
    }
    env.update(
        CXX="/nonexistent/c++",
        CC="/nonexistent/cc",
        TORCH_EXTENSIONS_DIR=str(tmp / "extensions"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _tool(name: str, *overrides: str, cwd: Path, env: dict[str, str], timeout: int = 300):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / f"{name}.py"), *overrides],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CPU process trains the demo for one epoch, started from a folder outside the repository."""
    tmp = tmp_path_factory.mktemp("first_hour")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = _no_compiler_env(tmp)
    result = _tool(
        "train",
        *TINY,
        "train.log_every=1",
        f"data.root={tmp / 'data'}",
        f"output_dir={tmp / 'run'}",
        cwd=elsewhere,
        env=env,
    )
    return tmp, elsewhere, env, result


def test_cpu_training_builds_no_extension(trained):
    tmp, _, _, result = trained
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (tmp / "run" / "adapter.pth").is_file()
    assert not (tmp / "extensions").exists(), "a C++ extension was built"
    assert "shm_comm" not in output and "Error building extension" not in output
    assert "Setting accelerator to CPU" not in output and "CUDA_HOME" not in output
    assert "epoch 1/1:" not in output, "a training progress bar was written to a file"
    assert "epoch 1/1 step 4/4: loss" in output  # progress as log lines instead


def test_cpu_test_tool_builds_no_extension(trained):
    tmp, elsewhere, env, _ = trained
    result = _tool(
        "test",
        *TINY,
        f"data.root={tmp / 'data'}",
        f"checkpoint={tmp / 'run' / 'adapter.pth'}",
        f"output_dir={tmp / 'test'}",
        cwd=elsewhere,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (tmp / "test" / "results.json").is_file()
    assert not (tmp / "extensions").exists(), "a C++ extension was built"
    assert "shm_comm" not in output


def test_rerun_of_a_finished_training_says_it_is_complete(trained):
    tmp, elsewhere, env, _ = trained
    result = _tool("train", *TINY, f"data.root={tmp / 'data'}", f"output_dir={tmp / 'run'}", cwd=elsewhere, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "is already complete" in output and "resume=null" in output and "output_dir=" in output
    assert "training done" not in output and "test: top1" not in output  # nothing trained or tested again


def test_checkpoint_head_mismatch_is_one_line_before_any_work(trained):
    tmp, elsewhere, env, _ = trained
    result = _tool(
        "test",
        *TINY,
        f"data.root={tmp / 'nodata'}",
        "data.num_classes=400",
        f"checkpoint={tmp / 'run' / 'adapter.pth'}",
        f"output_dir={tmp / 'test_bad'}",
        cwd=elsewhere,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    assert "class counts disagree" in result.stderr and "data.num_classes: 400" in result.stderr
    assert "(its head): 4" in result.stderr
    assert not (tmp / "nodata").exists(), "demo clips were written before the check"


def test_missing_root_is_one_line(tmp_path):
    result = _tool("train", "data=custom", cwd=tmp_path, env=_no_compiler_env(tmp_path))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "data.root must be set" in result.stderr


def test_prepare_frames_clean_rerun_removes_the_old_failures_file(tmp_path):
    import importlib.util

    import av
    import numpy as np

    spec = importlib.util.spec_from_file_location("tool_prepare_frames", REPO / "tools" / "prepare_frames.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    videos = tmp_path / "videos" / "a"
    videos.mkdir(parents=True)
    with av.open(str(videos / "ok.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 32
        for t in range(6):
            frame = np.full((32, 32, 3), 20 * t, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    (videos / "bad.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    (tmp_path / "labels.txt").write_text("a\n")
    args = [
        "--videos",
        str(tmp_path / "videos"),
        "--out",
        str(tmp_path / "frames"),
        "--out-list",
        str(tmp_path / "frames.txt"),
        "--label-map",
        str(tmp_path / "labels.txt"),
        "--workers",
        "0",
        "--no-progress",
    ]
    assert tool.main(args) == 0
    assert (tmp_path / "frames.txt.failures.txt").is_file()
    (videos / "bad.mp4").unlink()
    assert tool.main(args) == 0
    assert not (tmp_path / "frames.txt.failures.txt").exists()


def test_prepare_frames_help_shows_defaults_and_the_training_decoder():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "prepare_frames.py"), "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = " ".join(result.stdout.split())
    assert result.returncode == 0 and "(default: 256)" in text and "(default: auto)" in text
