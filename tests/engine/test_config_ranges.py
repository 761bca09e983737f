"""Numeric settings outside their range stop a run before anything runs, with one line naming the key."""

import pytest
from hydra import compose, initialize_config_dir

from video_sparse.engine.config import CONFIG_DIR
from video_sparse.engine.preflight import prepare_run
from video_sparse.engine.schema import RANGES, Range, check_config
from video_sparse.errors import ConfigError


def _compose(overrides, config_name="train"):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


BAD = [
    ("epochs=0", r"epochs=0 must be an integer > 0"),
    ("epochs=-3", r"epochs=-3 must be an integer > 0"),
    ("optim.lr=0", r"optim.lr=0 must be a number > 0"),
    ("optim.lr=-1e-3", r"optim.lr=-0.001 must be a number > 0"),
    ("optim.blr=0", r"optim.blr=0 must be a number > 0"),
    ("optim.lr=nan", r"optim.lr=nan must be a number > 0"),
    ("optim.accumulate_steps=0", r"optim.accumulate_steps=0 must be an integer > 0"),
    ("optim.clip_grad=-1", r"optim.clip_grad=-1 must be a number >= 0"),
    ("optim.label_smoothing=1", r"optim.label_smoothing=1 must be a number in \[0, 1\)"),
    ("optim.mixup_prob=1.5", r"optim.mixup_prob=1.5 must be a number in \[0, 1\]"),
    ("optim.mixup=-0.1", r"optim.mixup=-0.1 must be a number >= 0"),
    ("optim.scheduler.warmup_epochs=-1", r"optim.scheduler.warmup_epochs=-1 must be a number >= 0"),
    ("sparsity.keep_rate=0", r"sparsity.keep_rate=0 must be a number in \(0, 1\]"),
    ("sparsity.keep_rate=1.2", r"sparsity.keep_rate=1.2 must be a number in \(0, 1\]"),
    ("sparsity.ramp_epochs=-2", r"sparsity.ramp_epochs=-2 must be a number >= 0"),
    ("train.log_every=0", r"train.log_every=0 must be an integer > 0"),
    ("train.keep_last=-1", r"train.keep_last=-1 must be an integer >= 0"),
    ("train.save_every_steps=-5", r"train.save_every_steps=-5 must be an integer >= 0"),
    ("train.max_steps=0", r"train.max_steps=0 must be an integer > 0"),
    ("train.max_steps_per_epoch=0", r"train.max_steps_per_epoch=0 must be an integer > 0"),
    ("test.batch_size=0", r"test.batch_size=0 must be an integer > 0"),
    ("data.batch_size=0", r"data.batch_size=0 must be an integer > 0"),
    ("data.num_workers=-1", r"data.num_workers=-1 must be an integer >= 0"),
    ("data.test_num_clips=0", r"data.test_num_clips=0 must be an integer > 0"),
    ("data.test_num_crops=0", r"data.test_num_crops=0 must be an integer > 0"),
    ("data.num_frames=0", r"data.num_frames=0 must be an integer > 0"),
    ("data.input_size=0", r"data.input_size=0 must be an integer > 0"),
    ("data.num_classes=0", r"data.num_classes=0 must be an integer >= 1"),
    ("data.batch_size=2.5", r"data.batch_size=2.5 must be an integer > 0"),
    ("data.min_scale=0", r"data.min_scale=0 must be a number in \(0, 1\]"),
    ("data.min_scale=0.9 data.max_scale=0.5", r"data.min_scale=0.9 must not exceed data.max_scale=0.5"),
    ("model.drop_path_rate=1.0", r"model.drop_path_rate=1.0 must be a number in \[0, 1\)"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[o for o, _ in BAD])
def test_out_of_range_setting_is_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as caught:
        check_config(_compose(overrides.split()))
    assert "\n" not in str(caught.value)


def test_prepare_run_refuses_before_anything_is_written(tmp_path):
    cfg = _compose(["epochs=0", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match="epochs=0"):
        prepare_run(cfg, "train")
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("experiment", ["demo", "vtab", "k400_videomae_base"])
def test_shipped_settings_and_boundaries_pass(experiment):
    required = ["data.root=/x"] + (["data.task=cifar"] if experiment == "vtab" else [])
    check_config(_compose([f"experiment={experiment}", *required]))
    check_config(_compose(["sparsity.keep_rate=1.0", "optim.clip_grad=0", "data.num_workers=0", "optim.lr=null"]))
    check_config(_compose(["train.max_steps=null", "optim.scheduler.warmup_epochs=0"]))


def test_warm_up_as_long_as_the_run_is_allowed_and_said(caplog):
    """A one-epoch trial of a schedule with a longer warm-up runs (the scheduler warms up throughout)."""
    with caplog.at_level("WARNING"):
        check_config(_compose(["epochs=1", "optim.scheduler.warmup_epochs=1"]))
        check_config(_compose(["epochs=2", "optim.scheduler.warmup_epochs=10"]))
    assert sum("warms up for the whole run" in r.getMessage() for r in caplog.records) == 2
    from video_sparse.engine.schedules import warmup_cosine

    assert [warmup_cosine(s, 4, 10) for s in range(4)] == [0.1, 0.2, 0.3, 0.4]


def test_every_range_describes_itself_and_checks_its_bounds():
    for key, allowed in RANGES.items():
        assert key and allowed.describe().startswith(("a number", "an integer"))
    assert Range(0, 1, low_open=True).holds(1.0) and not Range(0, 1, low_open=True).holds(0.0)
    assert not Range(0, None, integer=True).holds(float("inf"))
