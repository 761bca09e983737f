"""Image transforms: sizes, normalisation, augmentation switches."""

import numpy as np
import pytest
import torch
from PIL import Image

from video_sparse.data.image_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    train_transform,
    vtab_transform,
)


def gradient_image(w=60, h=30):
    x = np.tile(np.linspace(0, 255, w, dtype=np.float32), (h, 1))
    return Image.fromarray(np.stack([x, x, 255 - x], axis=-1).astype(np.uint8))


def test_vtab_transform_resizes_directly_and_normalises():
    out = vtab_transform(224)(Image.new("RGB", (50, 20), (255, 0, 128)))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 100, 100], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]))
    mean_std = vtab_transform(8, mean=IMAGENET_MEAN, std=IMAGENET_STD)(Image.new("RGB", (8, 8), (0, 0, 0)))
    torch.testing.assert_close(mean_std[:, 0, 0], -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))


def test_direct_resize_keeps_the_whole_image():
    out = vtab_transform(32)(gradient_image())  # a 2:1 image squeezed, not cropped
    assert out[0, :, 0].mean() < -0.9 and out[0, :, -1].mean() > 0.9


def test_eval_transform_crops_centre():
    out = eval_transform(30, crop_pct=1.0)(gradient_image())  # shorter side 30 -> 60x30 -> centre 30x30
    assert out.shape == (3, 30, 30)
    assert -0.6 < float(out[0, :, 0].mean()) < -0.4 and 0.4 < float(out[0, :, -1].mean()) < 0.6
    with pytest.raises(ValueError, match="crop_pct"):
        eval_transform(30, crop_pct=1.5)


def test_train_transform_is_random_and_sized():
    torch.manual_seed(0)
    t = train_transform(24, rand_augment=True)
    outs = [t(gradient_image()) for _ in range(4)]
    assert all(o.shape == (3, 24, 24) for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    no_aug = train_transform(24, scale=(1.0, 1.0), hflip=0.0)
    assert "RandAugment" not in repr(no_aug) and "Flip" not in repr(no_aug)
    with pytest.raises(ValueError, match="interpolation"):
        vtab_transform(8, interpolation="lanczos9")
