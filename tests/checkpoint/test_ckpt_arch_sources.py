"""Building the network a file describes: every architecture value from the caller, the file (tensors and
records), the named model or the layout, otherwise an error naming it; never a guess that wins. Shape
mismatches name the setting that fits the file; a stored fixed table is judged at the file's precision."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import pytest
import timm
import torch
from ckpt_helpers import randomize

from video_sparse.checkpoint import CheckpointError, create_model_from_checkpoint, load_pretrained
from video_sparse.checkpoint.load import sincos_tolerance
from video_sparse.layers import sincos_position_table
from video_sparse.models import SparseViT
from video_sparse.models.vit import default_sparse_layers

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo_backbone_nano.safetensors"
NANO_VIDEO, NANO_IMAGE = "sparse_videomae_nano_patch16_64", "sparse_vit_nano_patch16_64"
PLAIN = {"adapter": "none", "keep_rate": 1.0}


def _clip(frames: int = 16, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


def test_demo_backbone_through_its_named_model_is_that_model():
    """The 96-wide file has 3 heads (the named model's); a width rule would say 1."""
    torch.manual_seed(0)
    built = timm.create_model(NANO_VIDEO, checkpoint=str(DEMO), arch_from_checkpoint=True, num_classes=0, **PLAIN)
    torch.manual_seed(0)
    named = timm.create_model(NANO_VIDEO, num_classes=0, **PLAIN)
    load_pretrained(named, DEMO)
    assert built.model_args["num_heads"] == 3 and built.model_args["mlp_ratio"] == 4.0
    with torch.no_grad():
        torch.testing.assert_close(built.eval()(_clip()), named.eval()(_clip()), rtol=0, atol=0)


def test_demo_backbone_alone_takes_the_registered_model_its_metadata_names():
    model, report = create_model_from_checkpoint(DEMO, num_classes=0, **PLAIN)
    assert (model.model_args["num_heads"], model.num_frames, model.patch_embed.img_size) == (3, 16, (64, 64))
    assert (report.missing, report.unexpected) == ([], [])


def _video_file(tmp_path, name: str = "video.pth", records: dict | None = None, **kwargs):
    src = randomize(SparseViT(**{**dict(img_size=32, embed_dim=96, depth=2, num_frames=4, class_token=False,
                                          pos_embed="sincos", global_pool="avg", num_classes=5), **PLAIN, **kwargs}),
                    seed=1)  # fmt: skip
    path = tmp_path / name
    torch.save({"model": src.state_dict(), **(records or {})}, path)
    return src, path


def test_heads_are_never_guessed_from_the_width(tmp_path):
    _, path = _video_file(tmp_path, num_heads=6)
    with pytest.raises(CheckpointError, match=r"without num_heads.*attention heads is not in the tensors"):
        create_model_from_checkpoint(path, num_frames=4, img_size=32, **PLAIN)


def test_saved_model_args_win_over_the_named_model_with_an_info_line(tmp_path, caplog):
    src, path = _video_file(tmp_path, num_heads=6, num_frames=8)
    torch.save({"model": src.state_dict(), "model_args": src.model_args}, path)  # as model_final.pth
    with caplog.at_level(logging.INFO, logger="video_sparse.checkpoint.infer"):
        model = timm.create_model(NANO_VIDEO, checkpoint=str(path), arch_from_checkpoint=True, **PLAIN).eval()
    assert (model.model_args["num_heads"], model.num_frames, model.patch_embed.img_size) == (6, 8, (32, 32))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("num_heads=6" in m and "named model has 3" in m for m in lines)
    assert any("num_frames=8" in m and "named model has 16" in m for m in lines)
    assert model.sparse_layers == default_sparse_layers(2)  # the named 4-block placement does not fit 2 blocks
    x = _clip(frames=8, size=32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), src(x), rtol=1e-5, atol=1e-5)


def test_named_model_gives_what_the_file_does_not_show(tmp_path):
    src, path = _video_file(tmp_path, num_heads=3)
    model = create_model_from_checkpoint(path, defaults={"num_heads": 3, "num_frames": 4, "img_size": 32}, **PLAIN)[0]
    x = _clip(frames=4, size=32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src(x), rtol=1e-5, atol=1e-5)


def test_training_args_record_frames_size_and_a_published_size(tmp_path):
    """VideoMAE saves ``args`` (``num_frames``, ``input_size``, ``model``); ViT-S's name fixes 6 heads at width 384."""
    args = argparse.Namespace(model="vit_small_patch16_224", num_frames=4, input_size=32, tubelet_size=2)
    src, path = _video_file(tmp_path, records={"args": args}, embed_dim=384, depth=1, num_heads=6)
    model, report = create_model_from_checkpoint(path, **PLAIN)
    assert (model.model_args["num_heads"], model.num_frames, model.model_args["img_size"]) == (6, 4, 32)
    x = _clip(frames=4, size=32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src(x), rtol=1e-5, atol=1e-5)


def test_a_published_name_of_another_width_states_nothing(tmp_path):
    args = argparse.Namespace(model="vit_base_patch16_224", num_frames=4, input_size=32)
    _, path = _video_file(tmp_path, records={"args": args}, num_heads=6)  # 96 wide: not ViT-B
    with pytest.raises(CheckpointError, match="num_heads"):
        create_model_from_checkpoint(path, **PLAIN)


def test_a_record_that_contradicts_the_tensors_is_an_error(tmp_path):
    src, path = _video_file(tmp_path, num_heads=6)
    torch.save({"model": src.state_dict(), "model_args": {**src.model_args, "embed_dim": 192}}, path)
    with pytest.raises(CheckpointError, match=r"model_args says embed_dim=192 but the tensors show embed_dim=96"):
        create_model_from_checkpoint(path, **PLAIN)


def test_video_file_without_frame_count_names_num_frames(tmp_path):
    _, path = _video_file(tmp_path, num_heads=3)
    with pytest.raises(CheckpointError) as err:
        create_model_from_checkpoint(path, num_heads=3, **PLAIN)
    message = str(err.value)
    assert "num_frames" in message and "img_size" in message and str(path) in message
    assert "tubes of 2 frames" in message


def test_layerscale_pooling_and_eps_of_the_file_win_over_the_named_model(tmp_path, caplog):
    src = randomize(timm.create_model(NANO_IMAGE, init_values=0.1, global_pool="avg", **PLAIN), seed=3)
    path = tmp_path / "image.pth"
    torch.save(src.state_dict(), path)
    model = timm.create_model(NANO_IMAGE, checkpoint=str(path), arch_from_checkpoint=True, **PLAIN)
    assert model.model_args["init_values"] is not None and model.global_pool == "avg"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src(x), rtol=1e-5, atol=1e-5)


def _mismatch_lines(err: pytest.ExceptionInfo) -> list[str]:
    lines = [line.strip() for line in str(err.value).splitlines()[1:]]
    return [line for line in lines if not line.startswith("... and")]  # the listing is capped


@pytest.mark.parametrize(
    "saved,loaded,key,setting",
    [
        ({"num_frames": 4}, {"num_frames": None}, "patch_embed.proj.weight", "set num_frames (the file is a video"),
        ({"num_frames": None}, {"num_frames": 4}, "patch_embed.proj.weight", "set num_frames=None"),
        ({"num_frames": 4, "tubelet_size": 4}, {"num_frames": 4}, "patch_embed.proj.weight", "set tubelet_size=4"),
        ({"num_frames": 4, "in_chans": 1}, {"num_frames": 4}, "patch_embed.proj.weight", "set in_chans=1"),
        ({"num_frames": 4, "patch_size": 8}, {"num_frames": 4}, "patch_embed.proj.weight", "set patch_size=8"),
        ({"num_frames": 4, "mlp_ratio": 2.0}, {"num_frames": 4}, "blocks.0.mlp.fc1.weight", "set mlp_ratio=2"),
        ({"num_frames": 4, "mlp_ratio": 2.0}, {"num_frames": 4}, "blocks.1.mlp.fc2.weight", "set mlp_ratio=2"),
        ({"num_frames": 4, "embed_dim": 48}, {"num_frames": 4}, "blocks.0.attn.qkv.weight", "set embed_dim=48"),
        ({"num_frames": 4, "embed_dim": 48}, {"num_frames": 4}, "blocks.0.attn.qkv.bias", "set embed_dim=48"),
    ],
)
def test_every_shape_mismatch_is_one_line_with_key_shapes_and_setting(tmp_path, saved, loaded, key, setting):
    base = dict(img_size=32, embed_dim=96, depth=2, num_heads=3, class_token=False, pos_embed="sincos",
                global_pool="avg", num_classes=5, **PLAIN)  # fmt: skip
    src = SparseViT(**{**base, **saved})
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = SparseViT(**{**base, **loaded})
    with pytest.raises(CheckpointError, match="shape mismatch") as err:
        load_pretrained(dst, tmp_path / "w.pth")
    lines = _mismatch_lines(err)
    assert lines and all(re.fullmatch(r"\S+: checkpoint \([\d, ]*\) vs model \([\d, ]*\); set .+", ln) for ln in lines)
    line = next(ln for ln in lines if ln.startswith(key + ":"))
    file_shape, model_shape = tuple(src.state_dict()[key].shape), tuple(dst.state_dict()[key].shape)
    assert f"checkpoint {file_shape} vs model {model_shape}; {setting}" in line


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("frames", [16, 8])
def test_fixed_table_stored_in_half_precision_is_the_fixed_table(tmp_path, video_nano, dtype, frames):
    """A half-precision file of a model whose sin-cos table was saved (at 16 frames or another count)."""
    model = video_nano(adapter="none", num_classes=5)
    n = model.patch_embed.num_patches * frames // 16
    table = sincos_position_table(n, 96)
    assert (table.to(dtype).float() - table).abs().max() > 1e-4  # the old fixed tolerance refused it
    sd = {k: v.to(dtype) for k, v in model.state_dict().items()} | {"pos_embed": table.to(dtype)}
    torch.save(sd, tmp_path / "half.pth")

    report = load_pretrained(video_nano(adapter="none", num_classes=5, seed=1), tmp_path / "half.pth")
    built, _ = create_model_from_checkpoint(tmp_path / "half.pth", num_heads=3, num_frames=16, img_size=64, **PLAIN)

    assert report.dropped == ["pos_embed"] and report.unexpected == []
    assert built.model_args["pos_embed"] == "sincos" and not isinstance(built.pos_embed, torch.nn.Parameter)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_learned_table_near_the_fixed_one_is_still_learned(tmp_path, video_nano, dtype):
    model = video_nano(adapter="none", num_classes=5)
    n = model.patch_embed.num_patches
    noise = torch.randn(1, n, 96, generator=torch.Generator().manual_seed(0)) * 0.02
    learned = (sincos_position_table(n, 96) + noise).to(dtype)
    assert sincos_tolerance(dtype, n) < 0.02
    torch.save({**model.state_dict(), "pos_embed": learned}, tmp_path / "learned.pth")
    with pytest.raises(CheckpointError, match="pos_embed='learn'"):
        load_pretrained(video_nano(adapter="none", num_classes=5), tmp_path / "learned.pth")


def test_image_fixed_table_with_a_class_token_row_in_bf16(tmp_path):
    model = SparseViT(img_size=64, embed_dim=96, depth=2, num_heads=3, pos_embed="sincos", num_classes=5, **PLAIN)
    sd = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    sd["pos_embed"] = model.pos_embed.to(torch.bfloat16)  # zero class-token row, then the sin-cos table
    torch.save(sd, tmp_path / "img.pth")
    report = load_pretrained(
        SparseViT(img_size=64, embed_dim=96, depth=2, num_heads=3, pos_embed="sincos", num_classes=5, **PLAIN),
        tmp_path / "img.pth",
    )
    assert report.dropped == ["pos_embed"]


def test_videomae_layerscale_gammas_load_as_layerscale(tmp_path):
    """VideoMAE / mmaction2 name LayerScale ``blocks.N.gamma_1``/``gamma_2`` (``x + gamma_1 * attn(...)``)."""
    src = randomize(SparseViT(img_size=32, embed_dim=96, depth=2, num_heads=3, num_frames=4, class_token=False,
                              pos_embed="sincos", global_pool="avg", num_classes=5, init_values=0.1, **PLAIN),
                    seed=4)  # fmt: skip
    with torch.no_grad():
        for blk in src.blocks:
            blk.attn.qkv.bias[96:192].zero_()  # VideoMAE has no key bias
    sd = {}
    for key, value in src.state_dict().items():
        key = re.sub(r"\.ls([12])\.gamma$", r".gamma_\1", key)
        if key.endswith("attn.qkv.bias"):
            q, _, v = value.chunk(3)
            sd[key.replace("qkv.bias", "q_bias")], sd[key.replace("qkv.bias", "v_bias")] = q, v
        else:
            sd[key] = value
    torch.save({"module": sd}, tmp_path / "videomae_ls.pth")
    model, report = create_model_from_checkpoint(
        tmp_path / "videomae_ls.pth", num_heads=3, num_frames=4, img_size=32, **PLAIN
    )
    assert report.format == "videomae" and (report.missing, report.unexpected) == ([], [])
    x = _clip(frames=4, size=32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src(x), rtol=1e-5, atol=1e-5)


def test_timm_hub_folder_config_names_the_architecture(tmp_path):
    """A timm Hub folder: timm names in model.safetensors, the timm architecture in config.json."""
    import json

    from ckpt_helpers import timm_vit
    from safetensors.torch import save_file

    src = timm_vit(seed=6)  # vit_tiny: 192 wide, 3 heads
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="num_heads"):
        create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)
    config = {"architecture": "vit_tiny_patch16_224.augreg_in21k_ft_in1k", "num_classes": 7, "global_pool": "token"}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    model, report = create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)
    assert model.model_args["num_heads"] == 3 and (report.missing, report.unexpected) == ([], [])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src(x), rtol=1e-5, atol=1e-5)


def test_config_listing_constructor_arguments_and_a_wrapper_prefix(tmp_path):
    """A Hub folder whose config.json lists the constructor arguments (``model_config``, VideoMAE names)
    and whose weights sit under a wrapper module (``model.`` on every key)."""
    import json

    from safetensors.torch import save_file

    src = randomize(SparseViT(img_size=32, embed_dim=96, depth=2, num_heads=6, num_frames=4, class_token=False,
                              pos_embed="sincos", global_pool="avg", num_classes=5, init_values=0.1, **PLAIN),
                    seed=5)  # fmt: skip
    sd = {f"model.{k}": v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, str(tmp_path / "model.safetensors"))
    listed = {"img_size": 32, "patch_size": 16, "embed_dim": 96, "depth": 2, "num_heads": 6, "mlp_ratio": 4,
              "qkv_bias": True, "num_frames": 4, "tubelet_size": 2, "use_mean_pooling": True,
              "init_values": 0.1}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "VideoMAEv2_Base", "model_config": listed}))
    model, report = create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)
    assert (report.missing, report.unexpected) == ([], []) and model.model_args["num_heads"] == 6
    x = _clip(frames=4, size=32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src(x), rtol=1e-5, atol=1e-5)


def test_class_token_file_with_a_final_norm_never_gets_an_fc_norm(tmp_path):
    """Named model: mean pooling (whose default puts a LayerNorm after pooling). The file's final norm
    says its saver had no fc_norm: the built model keeps the per-token norm, pooling as named."""
    from ckpt_helpers import timm_vit

    src = timm_vit(seed=7, global_pool="avg", fc_norm=False)
    torch.save(src.state_dict(), tmp_path / "avg_no_fc_norm.pth")
    model, _ = create_model_from_checkpoint(
        tmp_path / "avg_no_fc_norm.pth", defaults={"global_pool": "avg", "num_heads": 3}, **PLAIN
    )
    assert isinstance(model.norm, torch.nn.LayerNorm) and isinstance(model.fc_norm, torch.nn.Identity)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src(x), rtol=1e-5, atol=1e-5)
