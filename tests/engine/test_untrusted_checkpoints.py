"""No load path runs code from a file: a pickle whose ``__reduce__`` would create a marker folder is
refused with a clear error in every path (pretrained, test checkpoint, adapter-only, resume auto and
explicit, each DeepSpeed file, the VTAB sweep), and the marker never appears."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recipe_helpers import run, subprocess_env, tiny_cfg

from video_sparse.checkpoint import CheckpointError
from video_sparse.engine import safe_load

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this calls ``os.makedirs(marker)``: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def write_payload(path: Path, marker: Path, **content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module": {"head.weight": torch.zeros(2, 2)}, **content, "payload": _Payload(marker)}, path)
    return path


def reseal(folder: Path) -> None:
    """Rewrite a checkpoint's checksums in meta.json to match its (changed) files."""
    import json

    from video_sparse.checkpoint.digest import json_digest, manifest
    from video_sparse.engine import checkpointing

    meta = json.loads((folder / checkpointing.META).read_text())
    meta.pop("digest")
    meta["files"] = manifest(folder, exclude=(checkpointing.META,))
    meta["digest"] = json_digest(meta)
    (folder / checkpointing.META).write_text(json.dumps(meta))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "the payload ran"


def test_the_payload_is_live(tmp_path):
    """Control: the same file loaded the unsafe way runs the payload."""
    marker = tmp_path / "ran"
    torch.load(write_payload(tmp_path / "p.pth", marker), weights_only=False)
    assert marker.is_dir()


def _nano_model():
    from video_sparse.engine.builders import build_model

    return build_model(
        {
            "_target_": "video_sparse.models.create_model",
            "model_name": "sparse_vit_nano_patch16_64",
            "num_classes": 10,
            "img_size": 32,
            "adapter_dim": 16,
        },
        {"sparse_layers": [1, 2, 3], "keep_rate": 0.7},
    )


def test_pretrained_checkpoint_and_adapter_paths_refuse(tmp_path, marker):
    from video_sparse.checkpoint import load_adapter_checkpoint, load_pretrained, load_trained_weights

    payload = write_payload(tmp_path / "weights.pth", marker, state_dict={}, model_args={})
    model = _nano_model()
    for load in (load_pretrained, load_adapter_checkpoint, load_trained_weights):
        with pytest.raises(CheckpointError, match=r"refusing to load .*weights\.pth"):
            load(model, payload)


def _plant(folder: Path, marker: Path, file: str = "mp_rank_00_model_states.pt") -> Path:
    write_payload(folder / file, marker)
    (folder / "meta.json").write_text('{"global_step": 5}')
    return folder


def test_resume_auto_refuses_a_planted_checkpoint(tmp_path, digits_root, single_process_group, marker):
    out = tmp_path / "run"
    _plant(out / "checkpoints" / "step_00000005", marker)
    (out / "checkpoints" / "latest").write_text("step_00000005")
    with pytest.raises(CheckpointError, match=r"refusing to load .*step_00000005.*mp_rank_00_model_states\.pt"):
        run(tiny_cfg(digits_root, out))


def test_resume_explicit_refuses_a_planted_folder(tmp_path, digits_root, single_process_group, marker):
    planted = _plant(tmp_path / "elsewhere" / "ckpt", marker)
    with pytest.raises(CheckpointError, match="refusing to load"):
        run(tiny_cfg(digits_root, tmp_path / "run", f"resume={planted}"))


@pytest.fixture(scope="module")
def genuine_checkpoint(tmp_path_factory, digits_root, single_process_group) -> Path:
    """A real ZeRO-2 checkpoint (model states, optimizer shard with DeepSpeed types, RNG file)."""
    out = tmp_path_factory.mktemp("genuine")
    run(tiny_cfg(digits_root, out, "train.max_steps=4"))
    return out / "checkpoints" / "step_00000004"


def test_genuine_checkpoint_resumes_under_weights_only(tmp_path, genuine_checkpoint, digits_root):
    recipe = run(
        tiny_cfg(digits_root, tmp_path / "run", f"resume={genuine_checkpoint}", "train.max_steps=5"), test=False
    )
    assert recipe.global_step == 5


@pytest.mark.parametrize("stage", [0, 3])
def test_every_zero_stage_resumes_under_weights_only(tmp_path, monkeypatch, digits_root, single_process_group, stage):
    """ZeRO-0 (optimizer inside the model states) and ZeRO-3 (partitioned model and optimizer files)."""
    from video_sparse.engine import checkpointing

    out = tmp_path / "run"
    run(tiny_cfg(digits_root, out, f"deepspeed=zero{stage}", "train.max_steps=4"), test=False)
    assert len(list((out / "checkpoints" / "step_00000004").glob("*optim_states.pt"))) == (0 if stage == 0 else 1)
    loaded, real_load = [], checkpointing.load_checkpoint
    monkeypatch.setattr(checkpointing, "load_checkpoint", lambda *a, **k: loaded.append(a[1]) or real_load(*a, **k))
    recipe = run(tiny_cfg(digits_root, out, f"deepspeed=zero{stage}", "train.max_steps=5"), test=False)
    assert loaded == [out / "checkpoints" / "step_00000004"] and recipe.global_step == 5


@pytest.mark.parametrize("file", ["zero_pp_rank_0_mp_rank_00_optim_states.pt", "rng_rank0.pt"])
def test_each_deepspeed_file_is_read_weights_only(tmp_path, genuine_checkpoint, digits_root, marker, file):
    folder = tmp_path / "ckpt" / "step_00000004"
    shutil.copytree(genuine_checkpoint, folder)
    write_payload(folder / file, marker)
    reseal(folder)  # an attacker who also rewrites the checksums: the weights-only load still refuses
    with pytest.raises(CheckpointError, match=f"refusing to load .*{file}"):
        run(tiny_cfg(digits_root, tmp_path / "run", f"resume={folder}"))
    assert torch.load is safe_load._torch_load  # the guard is lifted after the failed load


def test_vtab_sweep_refuses_a_payload_backbone(tmp_path, digits_root, marker):
    payload = write_payload(tmp_path / "backbone.pth", marker)
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "vtab_sweep.py"),
        "--root",
        str(digits_root),
        "--out",
        str(out),
        "--tasks",
        "cifar",
        "--",
        "model=vit_nano",
        "sparsity=nano",
        f"pretrained={payload}",
        "data.num_classes=10",
        "data.input_size=32",
        "data.batch_size=4",
        "data.num_workers=0",
        "epochs=1",
        "device=cpu",
    ]
    result = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=600, cwd=ROOT, env=subprocess_env()
    )
    assert result.returncode != 0
    assert "refusing to load" in result.stderr and "backbone.pth" in result.stderr, result.stderr[-3000:]
    assert not (out / "cifar" / "results.json").exists()


def test_allowed_deepspeed_types_round_trip(tmp_path):
    """The DeepSpeed objects its files hold (fp16 dynamic scaling included, which the CPU cannot run) load."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    dynamic = DynamicLossScaler(
        init_scale=2**16,
        scale_window=1000,
        min_scale=1,
        delayed_shift=2,
        consecutive_hysteresis=False,
        dtype=torch.float16,
    )
    path = tmp_path / "optim_states.pt"
    torch.save(
        {
            "dynamic": dynamic,
            "static": LossScaler(1.0),
            "stage": ZeroStageEnum.weights,
            "slices": {"w": fragment_address(numel=3, start=1)},
        },
        path,
    )
    loaded = safe_load.safe_torch_load(path)
    assert vars(loaded["dynamic"]) == vars(dynamic) and loaded["static"].cur_scale == 1.0
    assert loaded["stage"] is ZeroStageEnum.weights and loaded["slices"]["w"] == fragment_address(numel=3, start=1)
