"""Nothing in a checkpoint is dropped silently: every tensor loads into its place or is named in an
error; the model can be built from what the file shows; torch.compile prefixes load like any other."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from ckpt_helpers import randomize, timm_vit, to_videomae_pretrain

from video_sparse.checkpoint import CheckpointError, create_model_from_checkpoint, load_pretrained
from video_sparse.layers import sincos_position_table
from video_sparse.models import SparseViT

TINY = {
    "embed_dim": 192,
    "depth": 2,
    "num_heads": 3,
    "img_size": 64,
    "num_classes": 7,
    "adapter": None,
    "keep_rate": 1.0,
}


def _image(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _layerscale_file(tmp_path):
    src = timm_vit(seed=0, init_values=0.1)  # trained gammas: random, not 0.1
    path = tmp_path / "vit_ls.pth"
    torch.save(src.state_dict(), path)
    return src, path


def test_layerscale_into_a_model_without_it_is_an_error_naming_the_gammas(tmp_path):
    _, path = _layerscale_file(tmp_path)
    dst = SparseViT(**TINY).eval()
    before = {k: v.clone() for k, v in dst.state_dict().items()}

    with pytest.raises(CheckpointError, match=r"blocks\.0\.ls1\.gamma") as info:
        load_pretrained(dst, path)

    assert "4 checkpoint key(s)" in str(info.value) and "init_values" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())  # unchanged when it raises


def test_layerscale_dropped_only_when_allowed_and_then_reported(tmp_path, caplog):
    src, path = _layerscale_file(tmp_path)
    dst = SparseViT(**TINY).eval()
    report = load_pretrained(dst, path, allow_dropped=["blocks.*.ls?.gamma"])
    assert sorted(report.unexpected) == [f"blocks.{i}.ls{j}.gamma" for i in range(2) for j in (1, 2)]
    with torch.no_grad():
        assert (dst(_image()) - src(_image())).abs().max() > 1e-2  # the network really differs
    with caplog.at_level(logging.WARNING):
        load_pretrained(SparseViT(**TINY), path, strict=False)
    assert any("ls1.gamma" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_model_built_from_the_file_has_layerscale_and_the_savers_logits(tmp_path):
    src, path = _layerscale_file(tmp_path)
    model, report = create_model_from_checkpoint(path, adapter=None, keep_rate=1.0, num_heads=3)
    model.eval()
    assert model.model_args["init_values"] is not None and model.num_classes == 7
    assert (report.missing, report.unexpected, report.dropped) == ([], [], [])
    with torch.no_grad():
        torch.testing.assert_close(model(_image()), src(_image()), rtol=1e-5, atol=1e-5)


def test_arch_from_checkpoint_through_timm_create_model(tmp_path):
    src, path = _layerscale_file(tmp_path)
    model = timm.create_model(
        "sparse_vit_base_patch16_224",
        checkpoint=str(path),
        arch_from_checkpoint=True,
        adapter="none",
        keep_rate=1.0,
        num_heads=3,  # not in the file; the named ViT-B's 12 would be used otherwise
    ).eval()
    assert (model.embed_dim, len(model.blocks), model.patch_embed.img_size) == (192, 2, (64, 64))
    with torch.no_grad():
        torch.testing.assert_close(model(_image()), src(_image()), rtol=1e-5, atol=1e-5)


def test_avg_pooled_fc_norm_file_builds_an_avg_pooled_model(tmp_path):
    """timm ``global_pool='avg'`` saves ``fc_norm`` and no final ``norm``: a CLS-pooled model refuses it."""
    src = timm_vit(seed=3, global_pool="avg")
    path = tmp_path / "vit_avg.pth"
    torch.save(src.state_dict(), path)
    with pytest.raises(CheckpointError, match="fc_norm"):
        load_pretrained(SparseViT(**TINY), path)
    model, _ = create_model_from_checkpoint(path, adapter=None, keep_rate=1.0, num_heads=3)
    model.eval()
    assert model.global_pool == "avg"
    with torch.no_grad():
        torch.testing.assert_close(model(_image()), src(_image()), rtol=1e-5, atol=1e-5)


def test_qkv_bias_in_the_file_but_not_in_the_model_is_an_error(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(timm_vit(seed=0).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"attn\.qkv\.bias.*|qkv_bias=True"):
        load_pretrained(SparseViT(**TINY, qkv_bias=False), path)


def test_learned_table_into_a_fixed_table_model_is_an_error_the_fixed_one_is_not(tmp_path, video_nano):
    model = video_nano(adapter="none", num_classes=5)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    grid = model.patch_embed.num_patches
    learned = torch.randn(1, grid, 96)
    torch.save({**sd, "pos_embed": learned}, tmp_path / "learned.pth")
    torch.save({**sd, "pos_embed": sincos_position_table(grid, 96)}, tmp_path / "fixed.pth")

    with pytest.raises(CheckpointError, match="pos_embed='learn'"):
        load_pretrained(video_nano(adapter="none", num_classes=5), tmp_path / "learned.pth")
    torch.save({**sd, "pos_embed": sincos_position_table(grid // 2, 96)}, tmp_path / "fixed_8_frames.pth")
    for name in ("fixed.pth", "fixed_8_frames.pth"):  # the fixed table, at the model's length or another
        report = load_pretrained(video_nano(adapter="none", num_classes=5), tmp_path / name)
        assert report.dropped == ["pos_embed"] and report.unexpected == []
    built, _ = create_model_from_checkpoint(tmp_path / "learned.pth", num_frames=16, img_size=64, num_heads=3)
    assert isinstance(built.pos_embed, torch.nn.Parameter) and torch.equal(built.pos_embed, learned)


@pytest.mark.parametrize("wrap", ["_orig_mod.{}", "module._orig_mod.{}", "_orig_mod.module.{}"])
def test_torch_compile_prefix_loads_like_any_other(tmp_path, wrap):
    src = timm_vit(seed=4)
    compiled = torch.compile(src)  # lazily compiled: its state dict is enough, no forward needed
    sd = compiled.state_dict()
    assert all(k.startswith("_orig_mod.") for k in sd)
    path = tmp_path / "compiled.pth"
    torch.save({"model": {wrap.format(k[len("_orig_mod.") :]): v for k, v in sd.items()}}, path)
    dst = timm_vit(seed=5)
    report = load_pretrained(dst, path)
    assert report.loaded == len(src.state_dict()) and report.unexpected == []
    with torch.no_grad():
        torch.testing.assert_close(dst(_image()), src(_image()), rtol=0, atol=0)


def test_pretraining_decoder_is_not_an_error_and_is_listed(tmp_path, video_nano):
    model = randomize(video_nano(adapter="none"), seed=2)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.bias[96:192].zero_()  # VideoMAE has no key bias
    path = tmp_path / "pt.pth"
    torch.save({"model": to_videomae_pretrain(model.state_dict())}, path)
    report = load_pretrained(video_nano(adapter="none"), path)
    assert report.unexpected and all(
        k.startswith(("decoder.", "encoder_to_decoder", "mask_token")) for k in report.unexpected
    )


def test_unknown_module_is_an_error(tmp_path):
    sd = timm_vit(seed=0).state_dict()
    sd["dist_token"] = torch.zeros(1, 1, 192)
    path = tmp_path / "deit.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="dist_token"):
        load_pretrained(timm_vit(seed=1), path)


def test_adapter_checkpoint_with_tensors_the_model_cannot_hold_is_an_error(tmp_path, image_nano):
    from video_sparse.checkpoint import load_adapter_checkpoint, save_adapter_checkpoint

    path = tmp_path / "adapter.pth"
    save_adapter_checkpoint(image_nano(head_norm="batchnorm", num_classes=4), path)
    with pytest.raises(CheckpointError, match=r"head_norm\.running_mean"):
        load_adapter_checkpoint(image_nano(num_classes=4), path)
    report = load_adapter_checkpoint(image_nano(head_norm="batchnorm", num_classes=4), path)
    assert report.missing == [] and report.unexpected == []
