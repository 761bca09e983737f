"""The same network redistributed under other key names loads and computes what the saving network does:
Hugging Face ``transformers`` VideoMAE / ViT (with their ``config.json``) and mmaction2's VideoMAE.

The references are written from each layout's documented arithmetic (``layout_references``); a
refused file's hint comes from what the file shows, not from its key-name endings."""

from __future__ import annotations

import logging

import pytest
import torch
from layout_references import (
    HFVideoMAEForPreTraining,
    HFVideoMAEForVideoClassification,
    HFVideoMAEModel,
    HFViTForImageClassification,
    MMActionVideoMAE,
    randomize_,
    videomae_config,
    write_config,
)
from safetensors.torch import save_file

from video_sparse.checkpoint import CheckpointError, create_model_from_checkpoint, load_pretrained
from video_sparse.models import SparseViT

PLAIN = {"adapter": None, "keep_rate": 1.0}


def _clip(seed: int = 0, frames: int = 4, size: int = 32) -> torch.Tensor:
    """Pixel values in the Hugging Face order (B, T, C, H, W)."""
    return torch.randn(2, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _ours(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 1, 3, 4)  # SparseViT takes (B, C, T, H, W)


def _save(state_dict: dict, path) -> None:
    state = {k: v.detach().contiguous() for k, v in state_dict.items()}
    if str(path).endswith(".safetensors"):
        save_file(state, str(path))
    else:
        torch.save(state, path)


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin", "ddp.pth"])
def test_hf_videomae_classifier_builds_the_saving_network(tmp_path, filename):
    cfg = videomae_config()
    ref = randomize_(HFVideoMAEForVideoClassification(cfg), seed=0)
    write_config(tmp_path, cfg)
    if filename == "ddp.pth":  # fine-tuned under DistributedDataParallel and torch.compile, saved as {"model": ...}
        torch.save({"model": {f"module._orig_mod.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / filename)
    else:
        _save(ref.state_dict(), tmp_path / filename)

    model, report = create_model_from_checkpoint(tmp_path / filename, **PLAIN)
    model.eval()

    assert report.format == "hf-transformers"
    assert (report.missing, report.unexpected, report.dropped) == ([], [], [])
    args = model.model_args
    assert (args["num_heads"], args["num_frames"], args["img_size"], args["norm_eps"]) == (3, 4, 32, 1e-12)
    assert model.blocks[0].mlp.fc1.out_features == 144 and model.num_classes == 5
    x = _clip()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(_ours(x)), ref.videomae(x), rtol=1e-5, atol=1e-5)
        expected = ref(x)
        # the saving network's fc_norm is a default LayerNorm (eps 1e-5) under 1e-12 encoder norms
        torch.testing.assert_close(model(_ours(x)), expected, rtol=1e-4, atol=1e-4)
    assert expected.abs().max() > 0.1


def test_hf_videomae_base_model_without_prefix_keeps_its_final_layernorm(tmp_path):
    cfg = videomae_config(use_mean_pooling=False, architectures=["VideoMAEModel"])
    ref = randomize_(HFVideoMAEModel(cfg), seed=1)
    assert not any(k.startswith("videomae.") for k in ref.state_dict())
    write_config(tmp_path, cfg)
    _save(ref.state_dict(), tmp_path / "model.safetensors")

    model, report = create_model_from_checkpoint(tmp_path / "model.safetensors", num_classes=0, **PLAIN)

    assert (report.missing, report.unexpected) == ([], [])
    assert isinstance(model.norm, torch.nn.LayerNorm) and isinstance(model.fc_norm, torch.nn.Identity)
    x = _clip(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().forward_features(_ours(x)), ref(x), rtol=1e-5, atol=1e-5)


def test_hf_videomae_pretraining_file_loads_its_encoder_and_lists_the_decoder(tmp_path):
    cfg = videomae_config(use_mean_pooling=False, architectures=["VideoMAEForPreTraining"])
    ref = randomize_(HFVideoMAEForPreTraining(cfg), seed=3)
    write_config(tmp_path, cfg)
    _save(ref.state_dict(), tmp_path / "pytorch_model.bin")

    model, report = create_model_from_checkpoint(tmp_path / "pytorch_model.bin", num_classes=0, **PLAIN)

    assert report.missing == [] and report.unexpected
    assert all(k.startswith(("decoder.", "encoder_to_decoder", "mask_token")) for k in report.unexpected)
    x = _clip(seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().forward_features(_ours(x)), ref.videomae(x), rtol=1e-5, atol=1e-5)


def test_hf_videomae_into_a_model_built_by_hand(tmp_path):
    cfg = videomae_config()
    ref = randomize_(HFVideoMAEForVideoClassification(cfg), seed=5)
    _save(ref.state_dict(), tmp_path / "model.safetensors")  # no config.json: the model says it all
    model = SparseViT(
        img_size=32, embed_dim=48, depth=2, num_heads=3, mlp_ratio=3.0, num_frames=4, num_classes=5,
        class_token=False, pos_embed="sincos", global_pool="avg", norm_eps=1e-12, **PLAIN,
    ).eval()  # fmt: skip

    report = load_pretrained(model, tmp_path / "model.safetensors")

    assert report.format == "hf-transformers" and (report.missing, report.unexpected) == ([], [])
    x = _clip(seed=6)
    with torch.no_grad():
        torch.testing.assert_close(model(_ours(x)), ref(x), rtol=1e-4, atol=1e-4)


def test_hf_file_without_config_names_what_only_the_config_or_a_model_gives(tmp_path):
    ref = randomize_(HFVideoMAEForVideoClassification(videomae_config()), seed=0)
    _save(ref.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)
    for name in ("num_heads", "norm_eps", "num_frames", "img_size"):
        assert name in str(err.value)
    assert "model.safetensors" in str(err.value)


def test_hf_vit_image_classifier_builds_the_saving_network(tmp_path):
    cfg = videomae_config(model_type="vit", architectures=["ViTForImageClassification"])
    for key in ("num_frames", "tubelet_size", "use_mean_pooling"):
        del cfg[key]
    ref = randomize_(HFViTForImageClassification(cfg), seed=7)
    write_config(tmp_path, cfg)
    _save(ref.state_dict(), tmp_path / "model.safetensors")

    model, report = create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)

    assert (report.missing, report.unexpected) == ([], [])
    assert model.global_pool == "token" and model.model_args["num_heads"] == 3
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref(x), rtol=1e-5, atol=1e-5)


def test_hf_config_that_contradicts_the_weights_is_an_error(tmp_path):
    ref = randomize_(HFVideoMAEForVideoClassification(videomae_config()), seed=0)
    write_config(tmp_path, videomae_config(hidden_size=64, intermediate_size=256))
    _save(ref.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"config\.json says embed_dim=64 but the tensors show embed_dim=48"):
        create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)


def test_hf_classifier_on_the_first_patch_token_is_refused(tmp_path):
    cfg = videomae_config(use_mean_pooling=False)
    ref = randomize_(HFVideoMAEForVideoClassification(cfg), seed=0)
    write_config(tmp_path, cfg)
    _save(ref.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="first patch token"):
        create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)


def test_unconverted_key_hint_names_the_layout_not_a_setting(tmp_path):
    """A key no converter knows is named with the layout the file was read as, not with a setting
    guessed from how its name ends (``...attention.qkv.bias`` is not a model's q/k/v bias)."""
    cfg = videomae_config()
    sd = randomize_(HFVideoMAEForVideoClassification(cfg), seed=0).state_dict()
    sd["videomae.encoder.layer.0.attention.extra.qkv.bias"] = torch.zeros(144)
    write_config(tmp_path, cfg)
    _save(sd, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)
    message = str(err.value)
    assert "videomae.encoder.layer.0.attention.extra.qkv.bias" in message and "'hf-transformers'" in message
    assert "qkv_bias=True" not in message


def test_qkv_bias_hint_when_the_model_lacks_what_the_file_has(tmp_path):
    cfg = videomae_config()
    ref = randomize_(HFVideoMAEForVideoClassification(cfg), seed=0)
    _save(ref.state_dict(), tmp_path / "model.safetensors")
    model = SparseViT(
        img_size=32, embed_dim=48, depth=2, num_heads=3, mlp_ratio=3.0, num_frames=4, num_classes=5,
        class_token=False, pos_embed="sincos", global_pool="avg", qkv_bias=False, **PLAIN,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match=r"qkv_bias=True") as err:
        load_pretrained(model, tmp_path / "model.safetensors")
    assert "not parameter names of this model" not in str(err.value)


def _mm_file(tmp_path, dtype: torch.dtype, seed: int = 0, **kwargs):
    ref = randomize_(MMActionVideoMAE(**kwargs), seed=seed)
    with torch.no_grad():  # the reference computes with the weights as the file stores them
        for p in ref.parameters():
            p.copy_(p.to(dtype).float())
    state = {k: v.to(dtype) for k, v in ref.state_dict().items()}
    path = tmp_path / "best_acc_top1_epoch_3.pth"
    torch.save({"meta": {"epoch": 3, "mmengine_version": "0.10.1", "dataset_meta": None}, "state_dict": state}, path)
    return ref, path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_mmaction2_recognizer_builds_the_saving_network(tmp_path, dtype):
    """Its sin-cos ``pos_embed`` buffer is saved (in the file's precision) and is the table the model builds."""
    ref, path = _mm_file(tmp_path, dtype)

    model, report = create_model_from_checkpoint(path, num_heads=3, num_frames=4, img_size=32, **PLAIN)
    model.eval()

    assert report.format == "mmaction2"
    assert (report.missing, report.unexpected, report.dropped) == ([], [], ["pos_embed"])
    assert model.model_args["pos_embed"] == "sincos" and model.model_args["init_values"] is not None
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert expected.abs().max() > 0.1


def test_mmaction2_into_a_model_without_layerscale_names_the_gammas(tmp_path):
    _, path = _mm_file(tmp_path, torch.float32)
    model = SparseViT(
        img_size=32, embed_dim=48, depth=2, num_heads=3, num_frames=4, num_classes=5,
        class_token=False, pos_embed="sincos", global_pool="avg", **PLAIN,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match=r"blocks\.0\.ls1\.gamma.*|init_values"):
        load_pretrained(model, path)


def test_mmaction2_first_token_recognizer_is_refused(tmp_path, caplog):
    ref = randomize_(MMActionVideoMAE(), seed=0)
    state = ref.state_dict()
    for part in ("weight", "bias"):  # use_mean_pooling=False: a final norm, the first token classified
        state[f"backbone.norm.{part}"] = state.pop(f"backbone.fc_norm.{part}")
    torch.save({"state_dict": state}, tmp_path / "first_token.pth")
    with caplog.at_level(logging.INFO), pytest.raises(CheckpointError, match="first patch token"):
        create_model_from_checkpoint(tmp_path / "first_token.pth", num_heads=3, num_frames=4, img_size=32, **PLAIN)


def test_first_token_classifier_into_a_mean_pooling_model_is_refused_unless_the_head_is_new(tmp_path):
    cfg = videomae_config(use_mean_pooling=False)
    ref = randomize_(HFVideoMAEForVideoClassification(cfg), seed=0)
    _save(ref.state_dict(), tmp_path / "model.safetensors")
    sizes = dict(img_size=32, embed_dim=48, depth=2, num_heads=3, mlp_ratio=3.0, num_frames=4, class_token=False,
                 pos_embed="sincos", global_pool="avg", norm_eps=1e-12, **PLAIN)  # fmt: skip
    with pytest.raises(CheckpointError, match="first patch token"):
        load_pretrained(SparseViT(num_classes=5, **sizes), tmp_path / "model.safetensors")
    report = load_pretrained(SparseViT(num_classes=7, **sizes), tmp_path / "model.safetensors")  # a new task
    assert sorted(report.dropped) == ["head.bias", "head.weight"]


def test_own_mean_pooled_file_with_a_final_norm_is_not_taken_for_a_first_token_classifier(tmp_path):
    sizes = dict(img_size=32, embed_dim=48, depth=2, num_heads=3, num_frames=4, class_token=False,
                 pos_embed="sincos", global_pool="avg", fc_norm=False, num_classes=5, **PLAIN)  # fmt: skip
    src = randomize_(SparseViT(**sizes), seed=1)
    torch.save({"model": src.state_dict(), "model_args": src.model_args}, tmp_path / "model_final.pth")
    model, _ = create_model_from_checkpoint(tmp_path / "model_final.pth")
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src(x), rtol=1e-5, atol=1e-5)


def test_loading_into_a_given_model_ignores_a_broken_config_beside_the_file(tmp_path):
    cfg = videomae_config()
    ref = randomize_(HFVideoMAEForVideoClassification(cfg), seed=0)
    _save(ref.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text('{"model_type": "videomae",\n  "hidden_size": }', encoding="utf-8")
    model = SparseViT(
        img_size=32, embed_dim=48, depth=2, num_heads=3, mlp_ratio=3.0, num_frames=4, num_classes=5,
        class_token=False, pos_embed="sincos", global_pool="avg", norm_eps=1e-12, **PLAIN,
    )  # fmt: skip
    assert load_pretrained(model, tmp_path / "model.safetensors").missing == []
    with pytest.raises(CheckpointError, match=r"config\.json:2: not valid JSON"):
        create_model_from_checkpoint(tmp_path / "model.safetensors", **PLAIN)
