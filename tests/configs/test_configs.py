"""Every experiment composes and instantiates every object it names; mistakes give the promised messages."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from video_sparse.engine.builders import build_model, build_optimizer, instantiate_group, resolve_precision
from video_sparse.engine.config import CONFIG_DIR, group_options  # registers the resolvers
from video_sparse.engine.schema import check_config
from video_sparse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _compose(overrides, config_name="train"):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def _required(experiment: str) -> list[str]:
    return ["data.root=/nonexistent"] + (["data.task=cifar"] if experiment == "vtab" else [])


def _instantiate_all(cfg):
    """Every object of a run, as the recipe builds them (the model on the meta device: shapes only)."""
    check_config(cfg)
    data = instantiate_group(cfg.data, "data")
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.sparsity, freeze_backbone=cfg.train.freeze_backbone)
    optimizer = build_optimizer(cfg.optim.optimizer, model, lr=1e-3)
    scheduler = instantiate_group(cfg.optim.scheduler, "optim.scheduler")(
        optimizer, steps_per_epoch=10, epochs=int(cfg.epochs)
    )
    ds_config = instantiate_group(cfg.deepspeed, "deepspeed")(
        micro_batch=data.batch_size, accumulate=1, clip_grad=None, precision="fp32"
    )
    return data, model, optimizer, scheduler, ds_config


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes_and_instantiates_every_object(experiment):
    cfg = _compose([f"experiment={experiment}", *_required(experiment)])
    data, model, optimizer, scheduler, ds_config = _instantiate_all(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert data.num_classes == resolved["data"]["num_classes"] == model.num_classes
    assert data.batch_size == resolved["data"]["batch_size"] == ds_config["train_micro_batch_size_per_gpu"]
    assert model.keep_rate == resolved["sparsity"]["keep_rate"]
    assert model.model_args["adapter"] == resolved["model"]["adapter"] or resolved["model"]["adapter"] is None
    assert ds_config["zero_optimization"]["stage"] == resolved["deepspeed"]["stage"]
    decay = optimizer.param_groups[0]["weight_decay"]
    assert decay == resolved["optim"]["optimizer"]["weight_decay"]
    assert optimizer.param_groups[0]["betas"] == tuple(resolved["optim"]["optimizer"]["betas"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if resolved["model"]["adapter"] is not None and resolved["train"]["freeze_backbone"] is None:
        assert trainable and all("adapter" in n or n.startswith("head") for n in trainable)
    warmup = resolved["optim"]["scheduler"]["warmup_epochs"]
    if warmup:  # the first step of the warm-up: 1 / (warmup steps) of the peak
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / round(warmup * 10))
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)


@pytest.mark.parametrize("group", ["model", "data", "deepspeed", "sparsity", "optim"])
def test_every_group_option_instantiates(group):
    for option in group_options(group):
        overrides = [f"{group}={option}", "data.root=/nonexistent"]
        if group == "data":
            overrides += ["data.task=cifar"] if option == "vtab" else []
            if option in ("vtab", "cifar100", "svhn", "food101", "fashion_mnist"):
                overrides.append("model=vit_base")
            if option == "custom":  # null settings are filled from the model before a run
                overrides += [
                    "data.num_classes=5",
                    "data.num_frames=16",
                    "data.input_size=224",
                    "data.mean=[0.5,0.5,0.5]",
                    "data.std=[0.5,0.5,0.5]",
                    "data.label_map=null",
                ]
        _instantiate_all(_compose(overrides))


def test_test_config_composes():
    cfg = _compose(["checkpoint=/x/adapter.pth"], config_name="test")
    check_config(cfg)
    assert cfg.resume is None and cfg.output_dir.endswith("/test")


def test_paper_settings_in_experiments():
    k400 = OmegaConf.to_container(_compose(["experiment=k400_videomae_base", "data.root=/x"]), resolve=True)
    assert (k400["data"]["test_num_clips"], k400["data"]["test_num_crops"]) == (5, 3)
    assert (k400["data"]["sampling"], k400["data"]["frame_interval"]) == ("dense", 4)
    ssv2 = OmegaConf.to_container(_compose(["experiment=ssv2_videomae_base", "data.root=/x"]), resolve=True)
    assert (ssv2["data"]["test_num_clips"], ssv2["data"]["hflip"], ssv2["data"]["sampling"]) == (2, False, "segment")
    for cfg in (k400, ssv2):
        # null: the model's proportional rule, blocks 3/6/9 for these 12-block backbones
        assert cfg["sparsity"]["keep_rate"] == 0.7 and cfg["sparsity"]["sparse_layers"] is None
        assert cfg["optim"]["blr"] == 1e-3 and cfg["optim"]["scheduler"]["warmup_epochs"] == 5


@pytest.mark.parametrize(
    "key, message",
    [
        ("+data.foo=1", r"data\.foo is not an argument of VideoData"),
        ("+data.strat_index=0", r"data\.strat_index is not an argument of VideoData"),
        ("+model.foo=1", r"model\.foo"),
        ("+optim.optimizer.foo=1", r"optim\.optimizer\.foo is not an argument of AdamW"),
        ("+optim.scheduler.foo=1", r"optim\.scheduler\.foo is not an argument of warmup_cosine_scheduler"),
        ("+deepspeed.foo=1", r"deepspeed\.foo is not an argument of build_ds_config"),
        ("+optim.lrr=0.1", r"optim\.lrr is not a setting of optim"),
        ("+train.eval_evry=2", r"train\.eval_evry is not a setting of train"),
        ("+sparsity.keep=0.5", r"sparsity\.keep is not a setting of sparsity"),
        ("+epoch=3", r"epoch is not a setting"),
    ],
)
def test_unknown_key_is_refused_with_its_name(key, message):
    cfg = _compose(["experiment=k400_videomae_base", "data.root=/x", key])
    with pytest.raises(ConfigError, match=message):
        _instantiate_all(cfg)


def test_wrong_type_is_refused_with_its_key():
    with pytest.raises(ConfigError, match=r"epochs='abc'"):
        check_config(_compose(["epochs=abc"]))
    with pytest.raises(ConfigError, match=r"train\.keep_last"):
        check_config(_compose(["train.keep_last=many"]))


def test_missing_target_and_unimportable_target():
    with pytest.raises(ConfigError, match="data has no _target_"):
        instantiate_group({"root": "/x"}, "data")
    with pytest.raises(ConfigError, match=r"data\._target_=video_sparse\.data\.AudioData: cannot be imported"):
        instantiate_group({"_target_": "video_sparse.data.AudioData"}, "data")


def test_precision_and_stage_errors():
    with pytest.raises(ConfigError, match="cannot run on the CPU"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError, match="precision must be"):
        resolve_precision("fp8", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    cfg = _compose(["deepspeed.stage=5"])
    with pytest.raises(ConfigError, match="ZeRO stage"):
        instantiate_group(cfg.deepspeed, "deepspeed")(micro_batch=8, accumulate=1, clip_grad=None, precision="fp32")


def test_unknown_model_name_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="sparse_nothing"):
        build_model({"_target_": "video_sparse.models.create_model", "model_name": "sparse_nothing"}, {})


def _train(*overrides):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_cli_unknown_group_option_lists_the_valid_ones():
    result = _train("model=vit_huge")
    assert result.returncode != 0
    assert "Available options in 'model'" in result.stderr and "videomae_base" in result.stderr


def test_cli_unknown_key_is_named(tmp_path):
    result = _train("optim.lrr=0.1")
    assert result.returncode != 0
    assert "optim.lrr is not a setting; did you mean optim.lr?" in result.stderr
    result = _train("+optim.lrr=0.1", f"output_dir={tmp_path}/a")
    assert result.returncode == 2 and "optim.lrr is not a setting of optim" in result.stderr, result.stderr[-2000:]
    result = _train("+model.adapter_dimm=8", f"output_dir={tmp_path}/b")
    assert result.returncode == 2 and "model.adapter_dimm" in result.stderr, result.stderr[-2000:]


def test_cli_bad_stage_and_missing_root(tmp_path):
    result = _train("deepspeed.stage=7", f"output_dir={tmp_path}/a")
    assert result.returncode == 2 and "ZeRO stage" in result.stderr, result.stderr[-2000:]
    result = _train("experiment=k400_videomae_base", "data.root=/no/such/k400", f"output_dir={tmp_path}/b")
    assert result.returncode == 2 and "/no/such/k400" in result.stderr, result.stderr[-2000:]
