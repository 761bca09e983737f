"""Every experiment composes and builds; configuration mistakes give the promised messages."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from video_sparse.engine.builders import (ConfigError, build_dataset, build_ds_config, build_model,
                                          resolve_precision)
from video_sparse.engine.config import CONFIG_DIR, group_options  # registers the resolvers

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ["data.root=/nonexistent", "+data.task=cifar"]


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes_and_builds_a_tiny_model(experiment):
    overrides = [f"experiment={experiment}", "data.root=/nonexistent"]
    if experiment == "vtab":
        overrides.append("data.task=cifar")
    cfg = _compose(overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["name"] and resolved["model"]["num_classes"] > 0
    model_cfg = dict(resolved["model"])
    video = "videomae" in model_cfg["name"]
    model_cfg.update(name="sparse_videomae_nano_patch16_64" if video else "sparse_vit_nano_patch16_64",
                     img_size=64, adapter_dim=8)
    if video:
        model_cfg["num_frames"] = 16
    sparsity = dict(resolved["sparsity"], sparse_layers=[1, 2, 3])
    model = build_model(model_cfg, sparsity)
    assert model.num_classes == resolved["model"]["num_classes"]
    assert model.keep_rate == resolved["sparsity"]["keep_rate"]
    ds = build_ds_config(resolved["deepspeed"], resolved["data"]["batch_size"],
                         resolved["optim"]["accumulate_steps"], resolved["optim"]["clip_grad"], "fp32")
    assert ds["zero_optimization"]["stage"] == resolved["deepspeed"]["stage"]
    assert ds["train_micro_batch_size_per_gpu"] == resolved["data"]["batch_size"]


def test_paper_settings_in_experiments():
    k400 = OmegaConf.to_container(_compose(["experiment=k400_videomae_base", "data.root=/x"]), resolve=True)
    assert (k400["data"]["test_num_clips"], k400["data"]["test_num_crops"]) == (5, 3)
    assert (k400["data"]["sampling"], k400["data"]["frame_interval"]) == ("dense", 4)
    ssv2 = OmegaConf.to_container(_compose(["experiment=ssv2_videomae_base", "data.root=/x"]), resolve=True)
    assert (ssv2["data"]["test_num_clips"], ssv2["data"]["hflip"], ssv2["data"]["sampling"]) == (2, False, "segment")
    for cfg in (k400, ssv2):
        # null: the model's proportional rule, blocks 3/6/9 for these 12-block backbones
        assert cfg["sparsity"]["keep_rate"] == 0.7 and cfg["sparsity"]["sparse_layers"] is None


def test_precision_and_stage_errors():
    with pytest.raises(ConfigError, match="cannot run on the CPU"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError, match="precision must be"):
        resolve_precision("fp8", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(ConfigError, match="ZeRO stage"):
        build_ds_config({"stage": 5}, 8, 1, None, "fp32")


def test_missing_data_root_and_unknown_kind():
    with pytest.raises(FileNotFoundError, match="/nonexistent/k400"):
        build_dataset({"kind": "video", "root": "/nonexistent/k400", "train_list": "/x.txt"}, "train")
    with pytest.raises(ConfigError, match="data.kind"):
        build_dataset({"kind": "audio", "root": "/x"}, "train")
    with pytest.raises(ConfigError, match="model.name"):
        build_model({"name": "sparse_nothing"}, {})


def _train(*overrides):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *overrides], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_cli_unknown_group_option_lists_the_valid_ones():
    result = _train("model=vit_huge")
    assert result.returncode != 0
    assert "Available options in 'model'" in result.stderr and "videomae_base" in result.stderr


def test_cli_unknown_key_is_named():
    result = _train("optim.lrr=0.1")
    assert result.returncode != 0
    assert "Could not override 'optim.lrr'" in result.stderr


def test_cli_bad_stage_and_missing_root(tmp_path):
    result = _train("deepspeed.stage=7", f"output_dir={tmp_path}/a")
    assert result.returncode == 2 and "ZeRO stage" in result.stderr, result.stderr[-2000:]
    result = _train("experiment=k400_videomae_base", "data.root=/no/such/k400", f"output_dir={tmp_path}/b")
    assert result.returncode == 2 and "/no/such/k400" in result.stderr, result.stderr[-2000:]
