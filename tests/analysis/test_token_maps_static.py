"""Kept-token pictures tell tubes removed before the network from tubes removed by attention."""

import numpy as np
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.analysis.token_maps import DIM, STATIC_BLEND, STATIC_TINT, compute_kept_tokens, render_video


def _half_static_clip():
    """The left column of tubes is static (one repeated frame), the right column moves."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 16, 32, 32, generator=g)
    x[:, :, :, :, :16] = x[:, :, :1, :, :16]
    return x


def test_static_mask_and_attention_masks_of_a_half_static_clip():
    torch.manual_seed(0)
    model = timm.create_model("sparse_videomae_nano_patch16_64", img_size=32, static_tubes=0.05).eval()
    tokens = compute_kept_tokens(model, _half_static_clip())
    expected = np.ones((8, 2, 2), dtype=bool)
    expected[1:, :, 0] = False
    assert np.array_equal(tokens.static, expected)
    assert tokens.masks.shape == (len(tokens.layers), 8, 2, 2) and tokens.layers == [1, 2, 3]
    assert not (tokens.masks & ~tokens.static).any()  # a removed tube never comes back
    assert int(expected.sum()) == 18
    assert int(tokens.masks[0].sum()) == 13  # ceil(0.7 * 18) of the tubes that entered
    assert tokens.fused == [True, True, True]
    off = compute_kept_tokens(model, _half_static_clip(), static_tubes=0.0)
    assert off.static is None and int(off.masks[0].sum()) == 23  # ceil(0.7 * 32)


def test_picture_colours_filter_removed_and_attention_removed_tubes_differently():
    torch.manual_seed(0)
    model = timm.create_model("sparse_videomae_nano_patch16_64", img_size=32, static_tubes=0.05).eval()
    tokens = compute_kept_tokens(model, _half_static_clip())
    frames = np.full((16, 32, 32, 3), 200, dtype=np.uint8)
    strip = np.asarray(render_video(frames, tokens)[15])  # last tube: static column removed by the filter
    panel_w, top = 32 + 4, 16
    last = strip[top : top + 32, (1 + len(tokens.layers)) * panel_w : (1 + len(tokens.layers)) * panel_w + 32]
    tint = np.round((1 - STATIC_BLEND) * 200 + STATIC_BLEND * np.array(STATIC_TINT)).astype(np.uint8)
    assert (last[:, :16] == tint).all()  # left column: removed before the network
    right = tokens.masks[-1, 7, :, 1]
    for row, kept in enumerate(right):
        pixels = last[row * 16 : (row + 1) * 16, 16:]
        assert (pixels == (200 if kept else round(200 * DIM))).all()
