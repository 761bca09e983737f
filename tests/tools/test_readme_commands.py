"""Every fenced command of README.md, run as written from a folder outside the repository.

The README's text is extracted and handed to bash (``~`` expanded by the shell as a user's would be,
``python`` the environment's). Long commands run with a cheap variant: extra arguments appended to the
README text (fewer clips, one epoch, one view). Commands that need GPUs, several nodes or a real
dataset run with a recording stand-in for ``python`` (and ``deepspeed``, and the launch scripts'
``PYTHON``): bash runs the README text, the stand-in writes down the tool and arguments it was handed,
and the test composes them with Hydra the way the tool would (``~``, quoting, groups, keys), without
training. ``COMMANDS`` maps each
command to its check; a command added to the README or changed there without an entry fails
``test_every_readme_command_has_a_check``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from moving_clips import write_moving_clip
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
TIMES: dict[str, float] = {}

# the demo at its model's input size (the ONNX example feeds (B, 3, 16, 64, 64)), few clips, one view
DEMO_SMALL = (
    "data.root={tmp}/demo_data data.demo.num_train=16 data.demo.num_val=4 data.demo.num_test=4 "
    "data.test_num_clips=1 data.test_num_crops=1"
)
OWN_SMALL = "data.input_size=32 data.num_frames=8 data.batch_size=2 data.test_num_clips=1 data.test_num_crops=1"

# command (README text without its comment) -> (how, extra arguments appended to the README text)
#   run:      run as written + extra, from the work folder (extra may name {tmp})
#   compose:  run as written with the recording stand-ins; the recorded train.py/test.py calls are composed
#   repo:     check from the repository folder (set-up commands)
COMMANDS: dict[str, tuple[str, str]] = {
    "bash tools/setup_env.sh && .venv/bin/python tools/train.py": ("repo", ""),
    "bash tools/setup_env.sh && .venv/bin/python -m pytest -q": ("repo", ""),
    "source .venv/bin/activate": ("run", ""),
    "python tools/build_lists.py folders ~/my_clips": ("run", ""),
    "python tools/train.py data=custom data.root=~/my_clips name=my_clips": ("run", OWN_SMALL + " epochs=1"),
    "python tools/test.py data=custom data.root=~/my_clips name=my_clips checkpoint=outputs/my_clips/adapter.pth": (
        "run",
        "data.test_num_clips=1 data.test_num_crops=1",
    ),
    "python tools/build_lists.py folders --help": ("run", ""),
    "python tools/build_lists.py kinetics --help": ("run", ""),
    "python tools/build_lists.py ssv2 --help": ("run", ""),
    "python tools/prepare_frames.py --help": ("run", ""),
    "python tools/train.py experiment=k400_videomae_base data.root=/data/k400 "
    "pretrained=/w/videomae_vit_b_k400_pt.pth": ("compose", ""),
    "bash tools/dist_train.sh k400_videomae_base 8 data.root=/data/k400 pretrained=/w/videomae_vit_b_k400_pt.pth": (
        "compose",
        "",
    ),
    "bash tools/dist_train.sh ssv2_videomae_base 8 data.root=/data/ssv2 pretrained=/w/videomae_vit_b_ssv2_pt.pth": (
        "compose",
        "",
    ),
    "NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 bash tools/dist_train.sh k400_videomae_base 8 data.root=...": (
        "compose",
        "",
    ),
    "NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 bash tools/dist_train.sh k400_videomae_base 8 data.root=...": (
        "compose",
        "",
    ),
    "deepspeed --hostfile hostfile tools/train.py experiment=k400_videomae_base data.root=...": ("compose", ""),
    "python tools/zero_memory.py fit --gpus 8 --batch 8": (
        "run",
        "--frames 4 --size 32 --model B=sparse_videomae_base_patch16_224",
    ),
    "bash tools/dist_test.sh k400_videomae_base outputs/k400_videomae_base/adapter.pth 8 "
    "data.root=/data/k400 pretrained=/w/videomae_vit_b_k400_pt.pth": ("compose", ""),
    "bash tools/dist_test.sh ssv2_videomae_base outputs/ssv2_videomae_base/adapter.pth 8 "
    "data.root=/data/ssv2 pretrained=/w/videomae_vit_b_ssv2_pt.pth": ("compose", ""),
    "python tools/test.py experiment=demo checkpoint=outputs/demo/adapter.pth "
    "pretrained=assets/demo_backbone_nano.safetensors": ("run", DEMO_SMALL),
    "python tools/train.py": ("run", DEMO_SMALL + " data.batch_size=4 epochs=1"),
    "python tools/predict.py my_clips/ clip.mp4 --experiment demo --checkpoint outputs/demo/adapter.pth": (
        "run",
        "--single-view --quiet",
    ),
    "python tools/export_onnx.py --experiment demo --checkpoint outputs/demo/adapter.pth --out outputs/onnx/demo": (
        "run",
        "-- " + DEMO_SMALL,
    ),
    "python tools/train.py experiment=vtab data.root=/data/vtab-1k data.task=dtd pretrained=/w/ViT-B_16.npz": (
        "run",
        "",
    ),
    "python tools/vtab_sweep.py --root /data/vtab-1k --out outputs/vtab -- pretrained=/w/ViT-B_16.npz": (
        "run",
        "",
    ),
    "python tools/train.py experiment=cifar100 data.root=/data/cifar100 pretrained=/w/ViT-B_16.npz": ("compose", ""),
    "python tools/study.py --plan": ("run", ""),
    "python tools/study.py": ("compose", ""),
    # the SLURM batch script, run as one block by test_slurm_script_requeues_only_a_preempted_run
    'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) MASTER_PORT=29500': ("slurm", ""),
    "srun bash -c 'RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS python tools/train.py "
    "experiment=k400_videomae_base data.root=/data/k400 pretrained=/w/videomae_vit_b_k400_pt.pth "
    "output_dir=outputs/k400_run1'": ("slurm", ""),
    "status=$?": ("slurm", ""),
    '[ "$status" -eq 75 ] && scontrol requeue "$SLURM_JOB_ID"': ("slurm", ""),
    'exit "$status"': ("slurm", ""),
}
# python blocks, by their first line: "run" in the work folder after the commands above, "repo" in the
# repository folder (a block reading the repository's own assets), or "compile" (a block that needs
# weights nothing here ships)
PYTHON_BLOCKS = {
    "import timm, torch, video_sparse  # importing video_sparse registers the models": "compile",
    "from video_sparse.inference import VideoClassifier": "run",
    "import onnxruntime as ort": "run",
    "import timm  # run from the repository folder: the paths below are its assets": "repo",
}
# what each README python block needs defined first (its own text says what `clips` is)
PYTHON_PRELUDE = {"import onnxruntime as ort": "import numpy as np\nclips = np.zeros((2, 3, 16, 64, 64), np.float32)\n"}


def _strip_comment(line: str) -> str:
    """``line`` without a shell comment (a ``#`` at a word start, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """Fenced blocks of ``text`` as ``(language, body)``."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def readme_commands(text: str) -> list[str]:
    """Each shell command of the bash blocks: continuation lines joined, comments removed, spaces collapsed."""
    commands = []
    for language, body in readme_blocks(text):
        if language != "bash":
            continue
        pending = ""
        for raw in body.splitlines():
            line = _strip_comment(raw)
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            command = " ".join((pending + line).split())
            pending = ""
            if command:
                commands.append(command)
    return commands


class Workspace:
    """A folder outside the repository with ``tools`` linked in, a home with class folders, stand-ins."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.work = tmp / "work"
        self.home = tmp / "home"
        self.work.mkdir()
        (self.work / "tools").symlink_to(REPO / "tools")  # the README's relative tool paths
        (self.work / ".venv").symlink_to(Path(sys.prefix))  # `source .venv/bin/activate`
        for i in range(4):
            write_moving_clip(self.home / "my_clips" / "moving right" / f"r{i}.mp4", 2, 0, seed=i)
            write_moving_clip(self.home / "my_clips" / "moving down" / f"d{i}.mp4", 0, 2, seed=10 + i)
            write_moving_clip(self.home / "my_clips" / "moving left" / f"l{i}.mp4", -2, 0, seed=20 + i)
        write_moving_clip(self.work / "clip.mp4", 2, 0, seed=30)
        write_moving_clip(self.work / "my_clips" / "a.mp4", 0, 2, seed=31)
        (self.work / "my_clips" / "b.mp4").write_bytes(b"not a video")  # reported, the others go on
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        # stands in for python, `deepspeed` and the launch scripts' PYTHON: writes down the tool it was
        # handed and that tool's arguments (launcher options before it dropped); `-c` checks pass
        self.record = tmp / "recorded.jsonl"
        recorder = tmp / "record" / "python"
        recorder.parent.mkdir()
        recorder.write_text(
            f"#!{sys.executable} -I\nimport json, sys\nargs = sys.argv[1:]\n"
            'if args[:1] == ["-c"]:\n    sys.exit(0)\n'
            'while args and not args[0].endswith(".py"):\n    args.pop(0)\n'
            f"with open({str(self.record)!r}, 'a') as f:\n    f.write(json.dumps(args) + '\\n')\n"
        )
        recorder.chmod(0o755)
        (recorder.parent / "deepspeed").symlink_to(recorder)
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))
        }
        self.env.update(
            HOME=str(self.home),
            # `python` is this environment's (a venv's python must keep its folder); the stand-ins go first
            PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), self.env.get("PATH", "")]),
            PYTHONPATH=str(REPO),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        self.record_env = dict(self.env, PYTHON=str(recorder))
        self.record_env["PATH"] = os.pathsep.join([str(recorder.parent), self.env["PATH"]])

    def run(self, command: str, timeout: int = 400) -> subprocess.CompletedProcess:
        """The README ``command`` with its check's extra arguments, through bash; records the time."""
        how, extra = COMMANDS[command]
        cwd = REPO if how == "repo" else self.work
        env = self.record_env if how == "compose" else self.env
        line = f"{command} {extra.format(tmp=self.tmp)}".strip()
        start = time.perf_counter()
        result = subprocess.run(
            ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        TIMES[command] = time.perf_counter() - start
        return result


def _load_tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ok(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("readme"))
    yield workspace
    report = Path(os.environ.get("README_TIMES", workspace.tmp / "times.json"))
    report.write_text(json.dumps(TIMES, indent=1))


def test_every_readme_command_has_a_check():
    """A README command added or changed without a check here fails; so does a check of a removed one."""
    text = README.read_text()
    commands = readme_commands(text)
    assert len(commands) == len(set(commands))
    assert set(commands) == set(COMMANDS), (
        f"without a check: {sorted(set(commands) - set(COMMANDS))}; stale: {sorted(set(COMMANDS) - set(commands))}"
    )
    firsts = [body.splitlines()[0] for language, body in readme_blocks(text) if language == "python"]
    assert sorted(firsts) == sorted(PYTHON_BLOCKS)


def test_extraction_joins_continuations_and_drops_comments():
    text = "```bash\n# a comment\nbash x.sh a \\\n     b  # note\necho '#not a comment'\n```\n"
    assert readme_commands(text) == ["bash x.sh a b", "echo '#not a comment'"]


def test_set_up_commands(ws):
    """setup_env.sh is valid bash (it installs, so it is not run); what follows it runs from the repository."""
    syntax = subprocess.run(["bash", "-n", str(REPO / "tools" / "setup_env.sh")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    # what follows `bash tools/setup_env.sh &&`, with `.venv/bin/python` the environment's python
    checks = {
        "bash tools/setup_env.sh && .venv/bin/python tools/train.py": "python tools/train.py --cfg job",
        "bash tools/setup_env.sh && .venv/bin/python -m pytest -q": (
            "python -m pytest -q --collect-only tests/tools/test_zero_memory.py"
        ),
    }
    for command, check in checks.items():
        assert command.split(" && ", 1)[1].replace(".venv/bin/", "") in check
        start = time.perf_counter()
        result = subprocess.run(
            ["bash", "-c", check], cwd=REPO, env=ws.env, capture_output=True, text=True, timeout=300
        )
        TIMES[command] = time.perf_counter() - start
        _ok(result)
    result = ws.run("source .venv/bin/activate")
    _ok(result)
    activated = subprocess.run(
        ["bash", "-c", "source .venv/bin/activate && python -c 'import sys; print(sys.prefix)'"],
        cwd=ws.work,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert Path(_ok(activated).strip()).resolve() == Path(sys.prefix).resolve()


def test_your_own_videos_three_commands(ws):
    """The three commands as typed: `~/my_clips` after `=` reaches Hydra unexpanded and must still work."""
    built = ws.run("python tools/build_lists.py folders ~/my_clips")
    assert "3 classes, 12 videos" in _ok(built)
    clips = ws.home / "my_clips"
    assert (clips / "labels.txt").read_text().split("\n")[:3] == ["moving down", "moving left", "moving right"]
    train = _ok(ws.run("python tools/train.py data=custom data.root=~/my_clips name=my_clips"))
    assert "data.num_classes=3 (from data.label_map=" in train
    run_dir = ws.work / "outputs" / "my_clips"
    assert f"outputs written to {run_dir}: results.json" in train
    test = _ok(
        ws.run(
            "python tools/test.py data=custom data.root=~/my_clips name=my_clips "
            "checkpoint=outputs/my_clips/adapter.pth"
        )
    )
    for line in ("data.input_size=32 (from the checkpoint)", "data.num_frames=8 (from the checkpoint)"):
        assert line in test
    tested = json.loads((run_dir / "test" / "results.json").read_text())
    assert tested["test"]["num_videos"] == 3
    header = (run_dir / "test" / "video_scores.csv").read_text().splitlines()[0].split(",")
    assert header[4:] == ["score_moving down", "score_moving left", "score_moving right"]
    assert f"outputs written to {run_dir / 'test'}: results.json (results), video_scores.csv" in test
    trained = json.loads((run_dir / "results.json").read_text())
    assert tested["test"]["top1"] == pytest.approx(trained["test"]["top1"])  # same views, same weights

    # the 3-class adapter against another folder's 2-class labels.txt: one line before any work
    other = ws.home / "two_clips"
    other.mkdir()
    (other / "labels.txt").write_text("moving down\nmoving right\n")
    for split in ("train", "val", "test"):
        (other / f"{split}.txt").write_text("moving down/d0.mp4 0\n")
    wrong = subprocess.run(
        [
            "bash",
            "-c",
            "python tools/test.py data=custom data.root=~/two_clips checkpoint=outputs/my_clips/adapter.pth",
        ],
        cwd=ws.work,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode == 2 and wrong.stderr.strip().count("\n") == 0, wrong.stderr
    assert "class counts disagree" in wrong.stderr and f"{other}/labels.txt: 2" in wrong.stderr
    assert "checkpoint=" in wrong.stderr and "(its head): 3" in wrong.stderr
    assert not (ws.work / "outputs" / "two_clips").exists() and "top1" not in wrong.stdout


@pytest.fixture(scope="module")
def demo(ws):
    """`python tools/train.py` (the demo) run as written, small, from the work folder."""
    result = ws.run("python tools/train.py")
    output = _ok(result)
    assert (ws.work / "outputs" / "demo" / "adapter.pth").is_file()
    return output


def test_demo_training_says_what_loaded_and_where_results_are(ws, demo):
    assert "backbone: 52 tensors loaded; adapters and head (42 tensors) start fresh, as expected" in demo
    assert "expected missing" not in demo
    assert f"outputs written to {ws.work / 'outputs' / 'demo'}: results.json (results)" in demo
    assert "epoch 1/1 step 1/4: loss" in demo and "epoch 1: train_loss=" in demo  # 4 steps < train.log_every


def test_testing_predict_onnx_and_python_blocks(ws, demo):
    test = _ok(
        ws.run(
            "python tools/test.py experiment=demo checkpoint=outputs/demo/adapter.pth "
            "pretrained=assets/demo_backbone_nano.safetensors"
        )
    )
    assert "outputs written to" in test
    header = (ws.work / "outputs" / "demo" / "test" / "video_scores.csv").read_text().splitlines()[0]
    assert header.endswith("score_left,score_right,score_up,score_down")
    predict = ws.run(
        "python tools/predict.py my_clips/ clip.mp4 --experiment demo --checkpoint outputs/demo/adapter.pth"
    )
    assert predict.returncode == 1, predict.stderr[-3000:]  # my_clips/b.mp4 is not a video: reported, exit 1
    assert "2/3 inputs classified, 1 failed" in predict.stdout and "b.mp4: FAILED" in predict.stdout
    onnx = _ok(
        ws.run(
            "python tools/export_onnx.py --experiment demo --checkpoint outputs/demo/adapter.pth "
            "--out outputs/onnx/demo"
        )
    )
    assert "kept-token indices identical" in onnx
    for language, body in readme_blocks(README.read_text()):
        first = body.splitlines()[0] if language == "python" else None
        if first is None:
            continue
        code = PYTHON_PRELUDE.get(first, "") + body
        if PYTHON_BLOCKS[first] == "compile":
            compile(code, "README.md", "exec")
            continue
        start = time.perf_counter()
        cwd = REPO if PYTHON_BLOCKS[first] == "repo" else ws.work
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, env=ws.env, capture_output=True, text=True, timeout=300
        )
        TIMES[f"python block: {first}"] = time.perf_counter() - start
        _ok(result)


def test_cpu_tools_and_help(ws):
    for command in (
        "python tools/build_lists.py folders --help",
        "python tools/build_lists.py kinetics --help",
        "python tools/build_lists.py ssv2 --help",
        "python tools/prepare_frames.py --help",
    ):
        assert "usage:" in _ok(ws.run(command))
    table = _ok(ws.run("python tools/zero_memory.py fit --gpus 8 --batch 8"))
    assert "ZeRO-3" in table
    assert "estimated" in _ok(ws.run("python tools/study.py --plan")).lower()


def test_gpu_and_dataset_commands_compose(ws):
    """Commands for GPUs, nodes or real datasets: the tool each launches gets arguments its Hydra config
    composes, with the README's values (the launch scripts' experiment, checkpoint and run folder too)."""
    from video_sparse.engine.config import compose_config

    study = _load_tool("study")
    for command, (how, _) in COMMANDS.items():
        if how != "compose":
            continue
        ws.record.unlink(missing_ok=True)
        _ok(ws.run(command))
        calls = [json.loads(line) for line in ws.record.read_text().splitlines()]
        assert len(calls) == 1, (command, calls)
        tool, *args = calls[0]
        if Path(tool).name == "study.py":
            assert study.parse_args(args)[0].plan is False  # the study's own parser takes it
            continue
        assert Path(tool).name in ("train.py", "test.py") and Path(tool).resolve().parent == REPO / "tools"
        cfg = compose_config(args, Path(tool).stem)
        assert cfg.model.model_name.startswith("sparse_"), command
        for word in command.split():
            if word.startswith(("data.root=", "pretrained=")) and not word.endswith("..."):
                key, value = word.split("=", 1)
                assert OmegaConf.select(cfg, key) == value, (command, key)
        if "dist_test.sh" in command:
            assert cfg.checkpoint == command.split()[3] and cfg.output_dir.endswith("/test")


def test_vtab_sweep_parses_and_stops_at_the_missing_folder(ws):
    """The sweep's parser takes the README's arguments; with no VTAB-1K here it stops on the first task's
    folder with one line (nothing trained)."""
    result = ws.run("python tools/vtab_sweep.py --root /data/vtab-1k --out outputs/vtab -- pretrained=/w/ViT-B_16.npz")
    assert result.returncode == 2 and "usage:" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "/w/ViT-B_16.npz" in result.stderr


def test_slurm_script_requeues_only_a_preempted_run(ws, tmp_path):
    """The README's SLURM script, run whole with stand-ins for ``srun``, ``scontrol`` and ``python``: the
    training gets the rank variables and arguments its config composes; exit status 75 (preempted, step
    saved) requeues the job and is passed on, any other status is passed on without a requeue."""
    from video_sparse.engine.config import compose_config

    script = next(body for language, body in readme_blocks(README.read_text()) if "scontrol requeue" in body)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    stand_in = (
        f"#!{sys.executable} -I\nimport json, os, sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:], "
        "{k: os.environ.get(k) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR')}]) + '\\n')\n"
        "if sys.argv[1:3] == ['show', 'hostnames']:\n    print('node0')\n"
        "sys.exit(int(os.environ['TRAIN_STATUS']) if os.path.basename(sys.argv[0]) == 'python' else 0)\n"
    )
    for name in ("python", "scontrol"):
        (bin_dir / name).write_text(stand_in)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "srun").write_text('#!/bin/bash\nexec "$@"\n')  # one task here
    (bin_dir / "srun").chmod(0o755)
    slurm = {"SLURM_JOB_NODELIST": "node[0-1]", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0"}
    slurm.update(SLURM_LOCALID="0", SLURM_NTASKS="1", PATH=os.pathsep.join([str(bin_dir), ws.env["PATH"]]))
    for status, requeued in ((75, True), (0, False), (1, False)):
        calls.unlink(missing_ok=True)
        env = dict(ws.env, TRAIN_STATUS=str(status), **slurm)
        result = subprocess.run(["bash", "-c", script], cwd=ws.work, env=env, capture_output=True, text=True)
        assert result.returncode == status, result.stderr
        recorded = [json.loads(line) for line in calls.read_text().splitlines()]
        train = [c for c in recorded if c[0] == "python"]
        assert len(train) == 1 and train[0][1] == "tools/train.py"
        assert train[0][-1] == {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "node0"}
        requeues = [c[1:-1] for c in recorded if c[0] == "scontrol" and c[1] == "requeue"]
        assert requeues == ([["requeue", "4242"]] if requeued else []), (status, recorded)
    cfg = compose_config(train[0][2:-1], "train")
    assert cfg.output_dir == "outputs/k400_run1" and cfg.data.root == "/data/k400" and cfg.resume == "auto"
