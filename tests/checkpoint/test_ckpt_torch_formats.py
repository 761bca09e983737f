"""timm state dicts (.pth/.bin/.safetensors, wrapped and prefixed) and VideoMAE checkpoints."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from ckpt_helpers import randomize, timm_vit, to_videomae_pretrain
from safetensors.torch import save_file

from video_sparse.adapters import is_add_on_key
from video_sparse.checkpoint import load_pretrained


def _wrap(sd, how):
    if how == "plain":
        return sd
    if how == "model":
        return {"model": sd, "epoch": 4, "args": {"lr": 0.1}}
    if how == "module+prefix":
        return {"module": {"module." + k: v for k, v in sd.items()}, "global_steps": 10}
    if how == "state_dict+backbone":
        return {"state_dict": {"backbone." + k: v for k, v in sd.items()}}
    if how == "model_state":
        return {"model_state": sd, "optimizer_state": {"state": {}, "param_groups": []}}
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how,suffix",
    [
        ("plain", ".pth"),
        ("model", ".pth"),
        ("module+prefix", ".pt"),
        ("state_dict+backbone", ".ckpt"),
        ("model_state", ".pth"),
        ("plain", ".bin"),
    ],
)
def test_timm_torch_file_round_trip(tmp_path, how, suffix):
    src = timm_vit(seed=0)
    path = tmp_path / f"vit{suffix}"
    torch.save(_wrap(src.state_dict(), how), path)
    dst = timm_vit(seed=1)

    report = load_pretrained(dst, path)

    assert report.format == "timm"
    assert (report.missing, report.unexpected, report.dropped) == ([], [], [])
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key


def test_safetensors_round_trip(tmp_path):
    src = timm_vit(seed=0)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dst = timm_vit(seed=1)

    report = load_pretrained(dst, path)

    assert report.format == "timm" and report.loaded == len(src.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def _video_source(video_nano, **kwargs):
    """A dense video model with random weights and zero key biases (VideoMAE has none)."""
    src = randomize(video_nano(adapter=None, keep_rate=1.0, **kwargs), seed=5)
    with torch.no_grad():
        for blk in src.blocks:
            c = blk.attn.qkv.bias.shape[0] // 3
            blk.attn.qkv.bias[c : 2 * c] = 0
    return src


def test_videomae_pretrain_checkpoint_lands_every_backbone_weight(tmp_path, video_nano, caplog):
    src = _video_source(video_nano)
    file_sd = to_videomae_pretrain(src.state_dict())
    path = tmp_path / "videomae_pretrain.pth"
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-3}]}
    torch.save({"model": file_sd, "epoch": 799, "optimizer": optimizer}, path)
    dst = video_nano(seed=1, num_classes=10)  # with adapters

    with caplog.at_level(logging.INFO, logger="video_sparse.checkpoint"):
        report = load_pretrained(dst, path)

    assert report.format == "videomae"
    assert report.missing == []
    decoder_keys = {
        "encoder_to_decoder.weight",
        "mask_token",
        "decoder.blocks.0.attn.qkv.weight",
        "decoder.norm.weight",
        "decoder.head.weight",
    }
    assert set(report.unexpected) == decoder_keys
    assert len([r for r in caplog.records if "decoder.norm.weight" in r.getMessage()]) == 1
    adapter_keys = {k for k in dst.state_dict() if ".adapter." in k}
    assert set(report.expected_missing) == adapter_keys | {"head.weight", "head.bias"}
    dst_sd = dst.state_dict()
    backbone = [k for k in src.state_dict() if not k.startswith("head.")]
    assert report.loaded == len(backbone)
    for key in backbone:
        assert torch.equal(dst_sd[key], src.state_dict()[key]), key
    # the bias of block 0 is [q_bias, 0, v_bias] built from the file's separate tensors
    q, v = file_sd["encoder.blocks.0.attn.q_bias"], file_sd["encoder.blocks.0.attn.v_bias"]
    assert torch.equal(dst_sd["blocks.0.attn.qkv.bias"], torch.cat([q, torch.zeros_like(q), v]))
    # the encoder's final norm went to fc_norm
    assert torch.equal(dst.fc_norm.weight, file_sd["encoder.norm.weight"])


def test_videomae_finetune_checkpoint(tmp_path, video_nano):
    """Fine-tuned layout: `module` wrapper, no prefix, fc_norm, a 400-class head, a stored sin-cos table."""
    src = _video_source(video_nano, num_classes=400)
    file_sd = {}
    for k, v in src.state_dict().items():
        if k.endswith("attn.qkv.bias"):
            q, _, val = v.chunk(3)
            file_sd[k.replace("qkv.bias", "q_bias")], file_sd[k.replace("qkv.bias", "v_bias")] = q, val
        else:
            file_sd[k] = v
    file_sd["pos_embed"] = src.pos_embed.clone()  # fixed table some releases store
    path = tmp_path / "videomae_k400_ft.pth"
    torch.save({"module": file_sd}, path)
    dst = video_nano(seed=1, adapter=None, keep_rate=1.0, num_classes=10)

    report = load_pretrained(dst, path)

    assert report.format == "videomae"
    assert sorted(report.dropped) == ["head.bias", "head.weight", "pos_embed"]
    assert report.missing == [] and report.unexpected == []
    for key, value in src.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(dst.state_dict()[key], value), key
    # same backbone, same features: compare the pooled, normalised features
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst.forward_features(x), src.forward_features(x), rtol=0, atol=0)


def test_norm_is_not_renamed_when_the_model_has_norm(tmp_path):
    """An image model with a final `norm` takes the file's `norm` as is; no fc_norm appears."""
    src = timm_vit(seed=0)
    path = tmp_path / "vit.pth"
    torch.save(src.state_dict(), path)
    dst = timm_vit(seed=1)
    load_pretrained(dst, path)
    assert torch.equal(dst.norm.weight, src.norm.weight)
    assert "fc_norm.weight" not in dst.state_dict()


@pytest.mark.parametrize("name", ["sparse_vit_tiny_patch16_224", "sparse_videomae_tiny_patch16_224"])
def test_registered_variant_loads_backbone_through_timm(tmp_path, name):
    """`timm.create_model(name, checkpoint=path)` loads a backbone-only file, adapters and head new."""
    src = timm.create_model(name, num_classes=4)
    backbone = {k: v for k, v in src.state_dict().items() if not is_add_on_key(k)}
    path = tmp_path / "backbone.pth"
    torch.save({"model": backbone}, path)

    model = timm.create_model(name, num_classes=4, checkpoint=str(path))

    for key, value in backbone.items():
        assert torch.equal(model.state_dict()[key], value), key
