"""Data keys reach the dataset or are refused by name; lists are checked before any model is built.

The failing input: frame folders numbered from 0 (``img_00000.jpg``) with the Kinetics experiment
composed through Hydra. ``data.start_index=0`` must be accepted and reach the dataset (frames read
at the right numbers), and a key nothing reads (``+data.foo=1``) must be refused with its name: the
``data`` group is the constructor of its ``_target_``, so every argument is a key and every key an argument.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from video_sparse.engine.builders import instantiate_group
from video_sparse.engine.config import CONFIG_DIR
from video_sparse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NUM_FRAMES = 6


def _data_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="train", overrides=["experiment=k400_videomae_base", *overrides])
    return cfg.data


def _data(overrides):
    return instantiate_group(_data_cfg(overrides), "data")


def _frame_set(root: Path, tmpl: str, first: int) -> None:
    """Two folders of NUM_FRAMES frames numbered from ``first``; frame k is grey level 40 * k."""
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(NUM_FRAMES):
            Image.fromarray(np.full((16, 16, 3), 40 * k, np.uint8)).save(
                root / name / tmpl.format(first + k), quality=100
            )
    for split in ("train", "val", "test"):
        (root / f"{split}.txt").write_text(f"a {NUM_FRAMES} 0\nb {NUM_FRAMES} 399\n")


def _small(root: Path) -> list[str]:
    return [
        f"data.root={root}",
        f"data.train_list={root}/train.txt",
        f"data.val_list={root}/val.txt",
        f"data.test_list={root}/test.txt",
        f"data.num_frames={NUM_FRAMES}",
        "data.frame_interval=1",
        "data.input_size=16",
        "data.short_side_size=16",
        "data.test_num_clips=1",
        "data.test_num_crops=1",
        "data.backend=pyav",
    ]


def _grey_levels(item) -> list[int]:
    clip = item["input"]  # (C, T, H, W), ImageNet-normalised
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = clip.mean(dim=(2, 3)).numpy().T * std + mean  # (T, C)
    return [round(float(p.mean()) * 255 / 40) for p in pixels]


@pytest.mark.parametrize(
    "tmpl, overrides",
    [
        ("img_{:05d}.jpg", ["data.start_index=0"]),
        ("frame_{:04d}.jpg", ["data.start_index=0", "data.filename_tmpl='frame_{:04d}.jpg'"]),
    ],
)
def test_frame_folders_numbered_from_zero_through_hydra(tmp_path, tmpl, overrides):
    _frame_set(tmp_path, tmpl, first=0)
    cfg = _data_cfg(_small(tmp_path) + overrides)
    assert cfg.start_index == 0 and cfg.filename_tmpl == tmpl
    test_set = instantiate_group(cfg, "data").dataset("test")
    assert test_set.num_classes == 400
    items = [test_set[i] for i in range(len(test_set))]
    assert not any(item.get("failed") for item in items)
    assert _grey_levels(items[0]) == list(range(NUM_FRAMES))  # every frame, none read one late

    # without the override every frame is read one late: the last one is missing, every video excluded
    default = _data(_small(tmp_path) + overrides[1:])
    assert default.start_index == 1
    default_set = default.dataset("test")
    assert all(default_set[i].get("failed") for i in range(len(default_set)))


@pytest.mark.parametrize("key", ["foo", "strat_index", "filename_template"])
def test_unknown_data_key_is_refused_with_its_name(tmp_path, key):
    _frame_set(tmp_path, "img_{:05d}.jpg", first=1)
    with pytest.raises(ConfigError, match=rf"data\.{key} is not an argument of VideoData"):
        _data([*_small(tmp_path), f"+data.{key}=1"])


def test_label_out_of_range_names_file_line_and_key(tmp_path):
    _frame_set(tmp_path, "img_{:05d}.jpg", first=1)
    (tmp_path / "test.txt").write_text(f"a {NUM_FRAMES} 0\nb {NUM_FRAMES} 400\n")
    data = _data(_small(tmp_path))
    with pytest.raises(ConfigError, match=r"test.txt:2: label 400 out of range for data.num_classes=400"):
        data.check_lists()
    with pytest.raises(ValueError, match=r"test.txt:2: label 400 out of range for data.num_classes=400"):
        data.dataset("test")
    data.dataset("train")  # the other lists are fine


def _tool(name, *overrides):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / f"{name}.py"), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def test_train_and_test_fail_on_a_bad_label_before_any_model_is_built(tmp_path):
    """``pretrained`` is an unreadable file: had a model been built and loaded first, that error would show."""
    import torch

    _frame_set(tmp_path / "data", "img_{:05d}.jpg", first=1)
    (tmp_path / "data" / "test.txt").write_text(f"a {NUM_FRAMES} 0\nb {NUM_FRAMES} 400\n")
    (tmp_path / "junk_backbone.pth").write_bytes(b"not a checkpoint")
    torch.save({}, tmp_path / "weights.pth")
    common = [
        "experiment=k400_videomae_base",
        *_small(tmp_path / "data"),
        "device=cpu",
        f"pretrained={tmp_path}/junk_backbone.pth",
    ]
    for tool, extra in (
        ("train", [f"output_dir={tmp_path}/train"]),
        ("test", [f"output_dir={tmp_path}/test", f"checkpoint={tmp_path}/weights.pth"]),
    ):
        result = _tool(tool, *common, *extra)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "test.txt:2: label 400 out of range for data.num_classes=400" in result.stderr
        assert "junk_backbone" not in result.stderr
    (tmp_path / "data" / "test.txt").write_text(f"a {NUM_FRAMES} 0\nb {NUM_FRAMES} 399\n")
    result = _tool("train", *common, "+data.foo=1", f"output_dir={tmp_path}/foo")
    assert result.returncode == 2 and "data.foo is not an argument of VideoData" in result.stderr, result.stderr[-2000:]
