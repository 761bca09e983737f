"""The synthetic motion-direction demo set: files, lists, idempotence, and that order carries the label."""

import os

import numpy as np
import pytest
import torch

from video_sparse.data.demo import DEMO_CLASSES, make_demo_dataset, render_motion_clip
from video_sparse.data.lists import load_label_map, parse_list_file
from video_sparse.data.readers import PyAVReader
from video_sparse.data.video_dataset import build_video_dataset

STEP = {(0, -1): "left", (0, 1): "right", (-1, 0): "up", (1, 0): "down"}


def motion_direction(frames: np.ndarray) -> str:
    """Direction of the white-outlined square, from circular cross-correlation of consecutive masks."""
    masks = (frames.min(axis=-1) > 225).astype(float)
    size = masks.shape[1]
    total = np.zeros(2)
    for a, b in zip(masks[:-1], masks[1:]):
        corr = np.fft.ifft2(np.fft.fft2(b) * np.conj(np.fft.fft2(a))).real
        dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
        total += [(dy + size // 2) % size - size // 2, (dx + size // 2) % size - size // 2]
    axis = int(np.argmax(np.abs(total)))
    step = [0, 0]
    step[axis] = int(np.sign(total[axis]))
    return STEP[tuple(step)]


def test_rendered_direction_is_the_label_and_reversal_flips_it():
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    for i in range(40):
        label = i % 4
        frames = render_motion_clip(np.random.default_rng(i), label, 16, 64)
        assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
        assert motion_direction(frames) == DEMO_CLASSES[label]
        # the same frames in reverse order are a clip of the opposite class
        assert motion_direction(frames[::-1]) == opposite[DEMO_CLASSES[label]]


def test_first_frames_cover_the_frame_for_every_class():
    """Per class, the square's outline in frame 0 lands on every row and column across clips."""
    for label in range(4):
        hits = np.zeros((64, 64), dtype=bool)
        for i in range(60):
            hits |= render_motion_clip(np.random.default_rng([label, i]), label, 2, 64)[0].min(-1) == 255
        assert hits.any(axis=0).mean() > 0.95 and hits.any(axis=1).mean() > 0.95


def test_make_demo_dataset_files_lists_and_reuse(tmp_path):
    out = make_demo_dataset(tmp_path / "demo", num_train=12, num_val=4, num_test=8, num_frames=16, size=64)
    assert set(out) == {"root", "train", "val", "test", "labels"}
    assert load_label_map(out["labels"]) == list(DEMO_CLASSES)
    records, layout = parse_list_file(out["test"], label_map=out["labels"])
    assert layout == "video" and len(records) == 8
    assert sorted(r.label for r in records) == [0, 0, 1, 1, 2, 2, 3, 3]
    for r in records:
        with PyAVReader(tmp_path / "demo" / r.path) as reader:
            frames = reader.get_frames(range(reader.num_frames))
        assert frames.shape == (16, 64, 64, 3)
        assert motion_direction(frames) == DEMO_CLASSES[r.label]  # survives H.264 encoding
    video = tmp_path / "demo" / records[0].path
    stamp = os.stat(video).st_mtime_ns
    again = make_demo_dataset(tmp_path / "demo", num_train=12, num_val=4, num_test=8, num_frames=16, size=64)
    assert again == out and os.stat(video).st_mtime_ns == stamp
    make_demo_dataset(tmp_path / "demo", num_train=12, num_val=4, num_test=8, num_frames=16, size=64, seed=1)
    assert os.stat(video).st_mtime_ns != stamp  # other parameters: files are rewritten


@pytest.mark.parametrize("input_size", [64, 32])
def test_demo_training_configuration(tmp_path, input_size):
    out = make_demo_dataset(tmp_path, num_train=8, num_val=4, num_test=4, seed=3)
    train = build_video_dataset(
        out["root"],
        out["train"],
        "train",
        backend="pyav",
        num_frames=16,
        frame_interval=1,
        input_size=input_size,
        hflip=False,
        min_scale=0.5,
        label_map=out["labels"],
    )
    torch.manual_seed(0)
    item = train[5]
    assert item["input"].shape == (3, 16, input_size, input_size) and item["label"] == 1
    val = build_video_dataset(
        out["root"],
        out["val"],
        "val",
        backend="pyav",
        num_frames=16,
        frame_interval=1,
        input_size=input_size,
        short_side_size=input_size,
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    for i in range(len(val)):
        item = val[i]
        if input_size == 64:  # full frames: the motion is intact after the eval transform
            pixels = ((item["input"] * std + mean) * 255).round().clamp(0, 255).permute(1, 2, 3, 0).numpy()
            assert motion_direction(pixels) == DEMO_CLASSES[item["label"]]
