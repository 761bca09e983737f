"""Position-table resizing (2-D bicubic, 3-D trilinear) and its use by the loader."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from video_sparse.checkpoint import CheckpointError, load_pretrained, resize_pos_embed_2d, resize_pos_embed_3d
from video_sparse.checkpoint.resize_pos_embed import infer_source_grid
from video_sparse.models import vit


def test_2d_same_size_is_exact_and_prefix_kept():
    pos = torch.randn(1, 1 + 14 * 14, 8)
    assert torch.equal(resize_pos_embed_2d(pos, (14, 14), (14, 14), num_prefix_tokens=1), pos)
    out = resize_pos_embed_2d(pos, (14, 14), (16, 12), num_prefix_tokens=1)
    assert out.shape == (1, 1 + 16 * 12, 8)
    assert torch.equal(out[:, :1], pos[:, :1])


@pytest.mark.parametrize("new", [(7, 7), (20, 20), (10, 5)])
def test_2d_constant_table_stays_constant(new):
    pos = torch.full((1, 14 * 14, 4), 0.25)
    out = resize_pos_embed_2d(pos, (14, 14), new, num_prefix_tokens=0)
    assert out.shape == (1, new[0] * new[1], 4)
    torch.testing.assert_close(out, torch.full_like(out, 0.25), rtol=0, atol=1e-6)


def test_2d_keeps_token_order_row_major():
    """A table that varies only along W must still vary only along W after resizing."""
    h, w, c = 4, 6, 3
    ramp = torch.arange(w, dtype=torch.float32).repeat(h)  # value = column index
    pos = ramp.view(1, h * w, 1).expand(1, h * w, c).contiguous()
    out = resize_pos_embed_2d(pos, (h, w), (8, 6), num_prefix_tokens=0).view(8, 6, c)
    torch.testing.assert_close(out, out[:1].expand_as(out))  # every row identical
    torch.testing.assert_close(out[0, :, 0], torch.arange(6, dtype=torch.float32))


def test_3d_same_size_is_exact():
    pos = torch.randn(1, 8 * 4 * 4, 6)
    assert torch.equal(resize_pos_embed_3d(pos, (8, 4, 4), (8, 4, 4)), pos)


def test_3d_time_axis_matches_independent_linear_interpolation():
    """Trilinear resize of a table varying only in T equals 1-D linear interpolation (half-pixel centres)."""
    t_old, t_new, h, w = 4, 8, 3, 2
    values = torch.tensor([0.0, 1.0, 5.0, 2.0])
    pos = values.view(t_old, 1, 1, 1).expand(t_old, h, w, 2).reshape(1, -1, 2)
    out = resize_pos_embed_3d(pos, (t_old, h, w), (t_new, h, w)).view(t_new, h, w, 2)

    coords = (np.arange(t_new) + 0.5) * t_old / t_new - 0.5  # sample positions on the old axis
    expected = np.interp(np.clip(coords, 0, t_old - 1), np.arange(t_old), values.numpy())
    for i in range(t_new):
        torch.testing.assert_close(out[i], torch.full((h, w, 2), float(expected[i])), rtol=0, atol=1e-6)


def test_3d_shape_and_errors():
    pos = torch.randn(1, 4 * 4 * 4, 6)
    assert resize_pos_embed_3d(pos, (4, 4, 4), (8, 7, 7)).shape == (1, 8 * 49, 6)
    with pytest.raises(ValueError, match="does not match"):
        resize_pos_embed_3d(pos, (4, 4, 5), (8, 4, 4))
    with pytest.raises(ValueError, match="3-D grids"):
        resize_pos_embed_3d(pos, (8, 8), (8, 4, 4))


def test_infer_source_grid():
    assert infer_source_grid(196, (16, 16)) == (14, 14)
    assert infer_source_grid(195, (16, 16)) is None
    assert infer_source_grid(8 * 14 * 14, (4, 14, 14)) == (8, 14, 14)  # other frame count
    assert infer_source_grid(8 * 16 * 16, (8, 14, 14)) == (8, 16, 16)  # other image size
    assert infer_source_grid(7 * 5 * 3, (8, 14, 14)) is None


def test_loader_resizes_a_learned_video_table(tmp_path, video_nano):
    src = video_nano(pos_embed="learn", num_frames=8)  # grid (4, 4, 4)
    path = tmp_path / "video.pth"
    torch.save(src.state_dict(), path)
    dst = video_nano(seed=1, pos_embed="learn", num_frames=16)  # grid (8, 4, 4)

    report = load_pretrained(dst, path)

    assert report.resized == ["pos_embed"]
    expected = resize_pos_embed_3d(src.pos_embed.detach(), (4, 4, 4), (8, 4, 4))
    assert torch.equal(dst.pos_embed.detach(), expected)


def test_loader_keeps_same_size_table_untouched(tmp_path, image_nano):
    src = image_nano()
    path = tmp_path / "img.pth"
    torch.save(src.state_dict(), path)
    dst = image_nano(seed=1)
    report = load_pretrained(dst, path)
    assert report.resized == []
    assert torch.equal(dst.pos_embed, src.pos_embed)


def test_loader_refuses_a_table_it_cannot_map(tmp_path, image_nano):
    src = image_nano()
    sd = src.state_dict()
    sd["pos_embed"] = torch.randn(1, 1 + 15, 96)  # 15 patches: no square grid
    path = tmp_path / "img.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="cannot resize pos_embed"):
        load_pretrained(image_nano(seed=1), path)


def test_dinov2_518px_table_loads_into_the_224px_variant(tmp_path):
    """timm's DINOv2 ViT-S/14 state dict (37x37 table at 518 px) into the 224-px SparseViT (16x16)."""
    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, depth=1)
    path = tmp_path / "dinov2.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    model = vit.sparse_vit_small_patch14_dinov2(depth=1, sparse_layers=(0,), num_classes=3)

    report = load_pretrained(model, path)

    assert report.resized == ["pos_embed"] and report.missing == []
    expected = resize_pos_embed_2d(src.pos_embed.detach(), (37, 37), (16, 16), num_prefix_tokens=1)
    assert torch.equal(model.pos_embed.detach(), expected)
    assert torch.equal(model.blocks[0].ls1.gamma, src.blocks[0].ls1.gamma)
