"""Kept-token masks and pictures."""

import av
import numpy as np
import pytest
import timm
import torch
from PIL import Image

import video_sparse  # noqa: F401
from video_sparse.analysis.token_maps import (
    DIM,
    center_crop,
    compute_kept_tokens,
    contact_sheet,
    dim_dropped,
    dropping_layers,
    kept_masks,
    render_image,
    render_video,
    save_animation,
    to_model_input,
)
from video_sparse.sparsify import num_kept_tokens


def test_kept_masks_match_a_loop():
    gen = torch.Generator().manual_seed(0)
    first = torch.randperm(20, generator=gen)[:9].reshape(1, 9).repeat(2, 1)
    kept = [first, torch.tensor([[3, -1], [19, 0]])]
    masks = kept_masks(kept, 20)
    assert masks.shape == (2, 2, 20)
    for layer, ids in enumerate(kept):
        for b in range(2):
            expected = [i in ids[b].tolist() for i in range(20)]
            assert masks[layer, b].tolist() == expected
    with pytest.raises(ValueError, match="out of range"):
        kept_masks([torch.tensor([[20]])], 20)


@pytest.mark.parametrize("name,keep", [("sparse_vit_nano_patch16_64", 0.7), ("sparse_videomae_nano_patch16_64", 0.5)])
def test_masks_follow_the_token_counts(name, keep):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=3)
    shape = (1, 3, 16, 64, 64) if model.is_video else (1, 3, 64, 64)
    x = torch.randn(shape)
    tokens = compute_kept_tokens(model, x, keep_rate=keep)
    with torch.no_grad():
        kept = model.eval()(x, return_kept=True, keep_rate=keep).kept
    grid = tuple(model.patch_embed.grid_size)
    assert tokens.masks.shape == (3, *grid) and tokens.layers == [1, 2, 3] == dropping_layers(model, keep)
    n, prev = int(np.prod(grid)), np.ones(grid, dtype=bool)
    for mask, fused, ids in zip(tokens.masks, tokens.fused, kept):
        k = num_kept_tokens(n, keep)
        ids = ids[0].tolist()
        assert len(ids) == k + 1 and ids[-1] == -1 and fused
        # the k places go to original patches (drawn) and to fused tokens kept from earlier layers
        assert mask.sum() + ids[:-1].count(-1) == k
        assert sorted(np.flatnonzero(mask.reshape(-1)).tolist()) == sorted(i for i in ids if i >= 0)
        assert not (mask & ~prev).any()  # a dropped patch never comes back
        n, prev = k + 1, mask
    assert tokens.logits.shape == (3,)


def test_dim_dropped_darkens_only_dropped_patches():
    image = np.full((8, 12, 3), 200, dtype=np.uint8)
    mask = np.array([[True, False, True], [False, True, True]])
    out = dim_dropped(image, mask)
    assert out[0, 0].tolist() == [200] * 3 and out[4, 4].tolist() == [200] * 3
    assert out[0, 4].tolist() == [round(200 * DIM)] * 3 and out[5, 1].tolist() == [round(200 * DIM)] * 3
    with pytest.raises(ValueError, match="whole number"):
        dim_dropped(np.zeros((7, 12, 3), np.uint8), mask)


def test_render_image_layout():
    torch.manual_seed(0)
    model = timm.create_model("sparse_vit_nano_patch16_64", num_classes=3)
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    tokens = compute_kept_tokens(model, to_model_input(pixels, (0.5,) * 3, (0.5,) * 3))
    picture = render_image(pixels, tokens, scale=2)
    assert picture.size == (4 * 128 + 3 * 4, 128 + 16)
    first = np.asarray(picture)[16:, :128]
    assert np.array_equal(first, pixels.repeat(2, 0).repeat(2, 1))  # the input panel is the input


def test_render_video_and_animations(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("sparse_videomae_nano_patch16_64", num_classes=3)
    frames = np.random.default_rng(1).integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    tokens = compute_kept_tokens(model, to_model_input(frames, (0.45,) * 3, (0.22,) * 3), keep_rate=0.5)
    strips = render_video(frames, tokens)
    assert len(strips) == 16
    # frames of one tube share masks: their layer panels differ only by the frame content
    last = np.asarray(strips[0])[16:, -64:].astype(int)
    expected = dim_dropped(frames[0], tokens.masks[-1, 0]).astype(int)
    assert np.array_equal(last, expected)
    gif = save_animation(strips, tmp_path / "kept.gif", fps=5)
    with Image.open(gif) as image:
        assert image.n_frames == 16 and image.size == strips[0].size
    mp4 = save_animation(strips, tmp_path / "kept.mp4", fps=5)
    with av.open(str(mp4)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 16
    sheet = contact_sheet(strips[::2])
    assert sheet.size == (strips[0].width, 8 * strips[0].height)
    with pytest.raises(ValueError, match=".gif or .mp4"):
        save_animation(strips, tmp_path / "kept.avi")


def test_center_crop_and_normalisation():
    image = Image.fromarray(np.zeros((60, 100, 3), dtype=np.uint8))
    assert center_crop(image, 32).shape == (32, 32, 3)
    pixels = np.full((4, 4, 3), 255, dtype=np.uint8)
    x = to_model_input(pixels, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert x.shape == (1, 3, 4, 4)
    assert x[0, :, 0, 0].tolist() == pytest.approx([2.0, 1.0, 0.5])
    assert to_model_input(np.zeros((2, 4, 4, 3), np.uint8), (0.0,) * 3, (1.0,) * 3).shape == (1, 3, 2, 4, 4)
