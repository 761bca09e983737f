"""Google ViT .npz checkpoints (original release / AugReg / big_vision layouts)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from ckpt_helpers import randomize, timm_vit, to_npz_arrays

from video_sparse.checkpoint import load_pretrained


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("scanned,root", [(False, ""), (False, "opt/target/"), (True, "params/")])
def test_npz_round_trip_gives_identical_logits(tmp_path, scanned, root):
    src = timm_vit(seed=0)
    arrays = to_npz_arrays(src.state_dict(), num_heads=3, scanned=scanned, root=root)
    path = _write(tmp_path / "vit.npz", arrays)
    dst = timm_vit(seed=1)
    x = torch.randn(2, 3, 64, 64)
    assert not torch.allclose(src(x), dst(x))

    report = load_pretrained(dst, path)

    assert report.format == "npz"
    assert report.missing == [] and report.unexpected == [] and report.expected_missing == []
    assert report.loaded == len(src.state_dict())
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_npz_original_release_extras_and_other_head(tmp_path, caplog):
    """ViT-B/16 IN-21k style file: a pre_logits layer and a 21k-class head, loaded into a 5-class model."""
    src = timm_vit(seed=0, num_classes=21)
    arrays = to_npz_arrays(src.state_dict(), num_heads=3)
    arrays["pre_logits/kernel"] = np.random.randn(192, 192).astype(np.float32)
    arrays["pre_logits/bias"] = np.zeros(192, np.float32)
    path = _write(tmp_path / "ViT-B_16.npz", arrays)
    dst = timm_vit(seed=1, num_classes=5)
    head_before = dst.head.weight.detach().clone()

    with caplog.at_level("INFO", logger="video_sparse.checkpoint"):
        report = load_pretrained(dst, path)

    assert sorted(report.unexpected) == ["pre_logits/bias", "pre_logits/kernel"]
    assert sorted(report.dropped) == ["head.bias", "head.weight"]
    assert sorted(report.expected_missing) == ["head.bias", "head.weight"]
    assert report.missing == []
    assert torch.equal(dst.head.weight, head_before)
    assert torch.equal(dst.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    assert any("head not loaded" in r.getMessage() for r in caplog.records)
    messages = [r.getMessage() for r in caplog.records if "pre_logits/kernel" in r.getMessage()]
    assert len([m for m in messages if "not part of this network left out" in m]) == 1  # listed in full once
    assert len([m for m in messages if "in the file but left out" in m]) == 1  # and counted in the summary


def test_npz_position_table_is_resized_for_another_image_size(tmp_path):
    src = timm_vit(seed=0)  # 64 px -> 4x4 grid
    path = _write(tmp_path / "vit.npz", to_npz_arrays(src.state_dict(), num_heads=3))
    dst = timm_vit(seed=1, img_size=96)  # 6x6 grid

    report = load_pretrained(dst, path)

    assert report.resized == ["pos_embed"]
    assert dst.pos_embed.shape == (1, 1 + 36, 192)
    assert torch.equal(dst.pos_embed[:, :1], src.pos_embed[:, :1])  # CLS row kept
    assert torch.isfinite(dst(torch.randn(1, 3, 96, 96))).all()


def test_npz_into_sparse_vit_matches_timm(tmp_path, image_nano):
    """The same .npz gives SparseViT (dense setting) the logits of timm's ViT."""
    src = randomize(
        timm.create_model("vit_tiny_patch16_224", embed_dim=96, depth=4, num_heads=3, img_size=64, num_classes=6),
        seed=3,
    )
    path = _write(tmp_path / "vit.npz", to_npz_arrays(src.state_dict(), num_heads=3))
    model = image_nano(adapter=None, keep_rate=1.0, num_classes=6)

    report = load_pretrained(model, path)

    assert report.missing == [] and report.unexpected == []
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), src(x), rtol=1e-5, atol=1e-5)


def test_npz_into_sparse_vit_with_adapters_reports_them_as_expected(tmp_path, image_nano):
    src = randomize(
        timm.create_model("vit_tiny_patch16_224", embed_dim=96, depth=4, num_heads=3, img_size=64, num_classes=6),
        seed=3,
    )
    path = _write(tmp_path / "vit.npz", to_npz_arrays(src.state_dict(), num_heads=3))
    model = image_nano(num_classes=10)

    report = load_pretrained(model, path)

    adapter_keys = [k for k in model.state_dict() if ".adapter." in k]
    assert adapter_keys and set(adapter_keys) <= set(report.expected_missing)
    assert set(report.expected_missing) == set(adapter_keys) | {"head.weight", "head.bias"}
    assert report.missing == []
