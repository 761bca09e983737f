"""Preflight: path resolution from any folder, worker cap, defaults from the model, list checks."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from video_sparse.engine.config import CONFIG_DIR, REPO_DIR
from video_sparse.engine.preflight import (
    available_cpus,
    cap_workers,
    model_inputs,
    prepare_run,
    resolve_user_path,
)
from video_sparse.errors import ConfigError


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="train", overrides=overrides)


def test_cap_workers_leaves_a_core_per_process():
    assert cap_workers(8, 1, cpus=2) == 1
    assert cap_workers(8, 2, cpus=2) == 0
    assert cap_workers(8, 1, cpus=64) == 8
    assert cap_workers(3, 4, cpus=64) == 3
    assert cap_workers(0, 1, cpus=64) == 0
    assert available_cpus() == len(os.sched_getaffinity(0))


def test_paths_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_user_path("assets/demo_backbone_nano.safetensors") == str(
        REPO_DIR / "assets" / "demo_backbone_nano.safetensors"
    )
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "demo_backbone_nano.safetensors").write_bytes(b"")  # the current folder wins
    assert resolve_user_path("assets/demo_backbone_nano.safetensors") == str(
        tmp_path / "assets" / "demo_backbone_nano.safetensors"
    )
    assert resolve_user_path("new/run") == str(tmp_path / "new" / "run")
    assert resolve_user_path("~/x") == str(Path.home() / "x")
    assert _compose([]).data.root == str(REPO_DIR / "demo_data")  # never the current folder


def _clip_folder(root: Path, labels=(0, 1, 1)) -> None:
    root.mkdir(parents=True)
    for split in ("train", "val", "test"):
        (root / f"{split}.txt").write_text("".join(f"c{i}/v{i}.mp4 {label}\n" for i, label in enumerate(labels)))
    (root / "labels.txt").write_text("a\nb\n")


def test_custom_data_is_filled_from_the_model_and_label_map(tmp_path):
    _clip_folder(tmp_path / "clips")
    cfg = _compose(
        ["data=custom", f"data.root={tmp_path / 'clips'}", "data.num_workers=64", f"output_dir={tmp_path / 'out'}"]
    )
    prepare_run(cfg, "train")
    demo = model_inputs("sparse_videomae_nano_patch16_64")
    assert cfg.data.num_classes == 2 and cfg.model.num_classes == 2
    assert cfg.data.input_size == cfg.data.short_side_size == cfg.model.img_size == demo["input_size"]
    assert list(cfg.data.mean) == demo["mean"] and cfg.data.num_frames == 16
    assert cfg.data.num_workers == max(0, min(64, available_cpus() - 1))
    assert cfg.pretrained == str(REPO_DIR / "assets" / "demo_backbone_nano.safetensors")


def test_label_out_of_range_names_the_list_before_training(tmp_path):
    _clip_folder(tmp_path / "clips", labels=(0, 1, 2))
    cfg = _compose(["data=custom", f"data.root={tmp_path / 'clips'}", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match=r"data.train_list: .*train.txt:3: label 2"):
        prepare_run(cfg, "train")


def test_missing_list_is_named(tmp_path):
    _clip_folder(tmp_path / "clips")
    (tmp_path / "clips" / "val.txt").unlink()
    cfg = _compose(["data=custom", f"data.root={tmp_path / 'clips'}", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(FileNotFoundError, match="data.val_list=.*val.txt: list file not found"):
        prepare_run(cfg, "train")


def test_non_numbers_are_refused_by_key(tmp_path):
    cfg = _compose(["epochs=abc", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match="epochs='abc' must be an integer"):
        prepare_run(cfg, "train")
    cfg = _compose(["optim.lr=fast", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match="optim.lr='fast' must be a number"):
        prepare_run(cfg, "train")
