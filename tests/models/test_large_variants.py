"""ViT-L/H images, VideoMAE ViT-L/H and VideoMAE V2 ViT-g: structure at full size (meta device, against
timm's own ViT-L/H/g), proportional sparsifying layers, a real forward at full width and tiny inputs,
and their checkpoint layouts (small files) giving the saving network's logits."""

from __future__ import annotations

import pytest
import timm
import torch

from video_sparse.checkpoint import create_model_from_checkpoint, load_pretrained
from video_sparse.models.vit import LARGE_VARIANTS, default_sparse_layers

# variant -> (timm reference with the same transformer, width, depth, MLP width, patch, sparse layers)
SPECS = {
    "sparse_vit_large_patch16_224": ("vit_large_patch16_224", 1024, 24, 4096, 16, (6, 12, 18)),
    "sparse_vit_huge_patch14_224": ("vit_huge_patch14_224", 1280, 32, 5120, 14, (8, 16, 24)),
    "sparse_videomae_large_patch16_224": ("vit_large_patch16_224", 1024, 24, 4096, 16, (6, 12, 18)),
    "sparse_videomae_huge_patch16_224": ("vit_huge_patch14_224", 1280, 32, 5120, 16, (8, 16, 24)),
    "sparse_videomae_v2_giant_patch14_224": ("vit_giant_patch14_224", 1408, 40, 6144, 14, (10, 20, 30)),
}


def test_every_large_variant_is_specified():
    assert set(SPECS) == set(LARGE_VARIANTS)
    assert all(name in timm.list_models("sparse_*") for name in LARGE_VARIANTS)


@pytest.mark.parametrize(
    "depth,expected",
    [
        (12, (3, 6, 9)),
        (24, (6, 12, 18)),
        (32, (8, 16, 24)),
        (40, (10, 20, 30)),
        (4, (1, 2, 3)),
        (6, (2, 3, 5)),
        (1, (0,)),
    ],
)
def test_default_sparse_layers_scale_the_paper_placement(depth, expected):
    assert default_sparse_layers(depth) == expected


@pytest.mark.parametrize("name", LARGE_VARIANTS)
def test_full_size_structure_matches_timm(name):
    ref_name, width, depth, mlp, patch, layers = SPECS[name]
    with torch.device("meta"):
        model = timm.create_model(name, adapter="none", num_classes=400)
        ref = timm.create_model(ref_name, num_classes=400)
    assert (model.embed_dim, len(model.blocks), model.sparse_layers) == (width, depth, layers)
    assert model.blocks[0].attn.num_heads == 16 == ref.blocks[0].attn.num_heads
    assert model.blocks[0].mlp.fc1.out_features == mlp
    ours, theirs = model.state_dict(), ref.state_dict()
    blocks = {k: v.shape for k, v in ours.items() if k.startswith("blocks.")}
    assert blocks == {k: v.shape for k, v in theirs.items() if k.startswith("blocks.")}
    kernel = ours["patch_embed.proj.weight"].shape
    assert kernel[-2:] == (patch, patch) and kernel[0] == width
    if model.is_video:
        assert kernel[2] == 2 and "pos_embed" not in ours and "cls_token" not in ours
        assert model.patch_embed.num_patches == 8 * (224 // patch) ** 2
    else:
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items() if k in ours}
        assert ours.keys() - theirs.keys() == set()


def test_configs_override_the_sparse_layers():
    with torch.device("meta"):
        model = timm.create_model("sparse_videomae_large_patch16_224", sparse_layers=(4, 8, 16))
    assert model.sparse_layers == (4, 8, 16) and model.model_args["sparse_layers"] == [4, 8, 16]


@pytest.mark.parametrize("name", LARGE_VARIANTS)
def test_full_width_forward_at_tiny_size(name):
    """Full width and heads, 4 blocks (sparsifying at 1, 2, 3), 2 frames of 2x2 patches."""
    _, width, _, _, patch, _ = SPECS[name]
    torch.manual_seed(0)
    video = "videomae" in name
    kwargs = {"depth": 4, "num_classes": 3, "img_size": 2 * patch, "keep_rate": 0.5}
    model = timm.create_model(name, **kwargs, **({"num_frames": 4} if video else {})).eval()
    assert model.sparse_layers == (1, 2, 3) and model.embed_dim == width
    x = torch.randn((1, 3, 4, 2 * patch, 2 * patch) if video else (1, 3, 2 * patch, 2 * patch))
    with torch.no_grad():
        out = model(x, return_kept=True)
    assert out.logits.shape == (1, 3) and torch.isfinite(out.logits).all()
    # kept + fused: video 8 tubes -> 4+1 -> 3+1 -> 2+1; image 4 patches -> 2+1 -> 2+1 -> 2+1
    assert [k.shape[1] for k in out.kept] == ([5, 4, 3] if video else [3, 3, 3])


def _videomae_layout(sd: dict[str, torch.Tensor], layout: str) -> dict:
    """timm-named video state dict -> a VideoMAE / VideoMAE V2 file (written independently of the loader)."""
    out = {}
    for k, v in sd.items():
        if k.endswith("attn.qkv.bias"):
            q, key_bias, val = v.chunk(3)
            assert torch.count_nonzero(key_bias) == 0
            out[k.replace("qkv.bias", "q_bias")], out[k.replace("qkv.bias", "v_bias")] = q.clone(), val.clone()
        else:
            out[k] = v.clone()
    if layout == "finetune":  # VideoMAE / V2 fine-tuned: {'module': ...} with fc_norm and head
        return {"module": out}
    if layout == "compiled_ds":  # DeepSpeed + torch.compile
        return {"module": {"module._orig_mod." + k: v for k, v in out.items()}}
    raise AssertionError(layout)


@pytest.mark.parametrize(
    "name",
    ["sparse_videomae_large_patch16_224", "sparse_videomae_huge_patch16_224", "sparse_videomae_v2_giant_patch14_224"],
)
@pytest.mark.parametrize("layout", ["finetune", "compiled_ds"])
def test_videomae_layouts_give_the_saving_networks_logits(tmp_path, name, layout):
    patch = SPECS[name][4]
    small = {
        "embed_dim": 88,
        "depth": 2,
        "num_heads": 2,
        "num_frames": 4,
        "img_size": 2 * patch,
        "num_classes": 6,
        "adapter": "none",
        "keep_rate": 1.0,
    }
    torch.manual_seed(1)
    saver = timm.create_model(name, **small).eval()
    with torch.no_grad():
        for p in saver.parameters():
            p.normal_(0, 0.1)
        for block in saver.blocks:
            block.attn.qkv.bias[88:176].zero_()
    path = tmp_path / "videomae.pth"
    torch.save(_videomae_layout(saver.state_dict(), layout), path)
    x = torch.randn(2, 3, 4, 2 * patch, 2 * patch)

    torch.manual_seed(2)
    model = timm.create_model(name, **small).eval()
    report = load_pretrained(model, path)
    built, built_report = create_model_from_checkpoint(
        path, num_frames=4, img_size=2 * patch, num_heads=2, keep_rate=1.0
    )
    assert report.format == built_report.format == "videomae"
    assert (report.missing, report.unexpected, built_report.missing, built_report.unexpected) == ([],) * 4
    assert built.blocks[0].mlp.fc1.out_features == saver.blocks[0].mlp.fc1.out_features
    assert built.patch_embed.proj.weight.shape == saver.patch_embed.proj.weight.shape
    with torch.no_grad():
        expected = saver(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(built.eval()(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "config,name,layers",
    [
        ("videomae_large", "sparse_videomae_large_patch16_224", [6, 12, 18]),
        ("videomae_huge", "sparse_videomae_huge_patch16_224", [8, 16, 24]),
        ("videomae_v2_giant", "sparse_videomae_v2_giant_patch14_224", [10, 20, 30]),
        ("vit_large", "sparse_vit_large_patch16_224", [6, 12, 18]),
        ("vit_huge_patch14", "sparse_vit_huge_patch14_224", [8, 16, 24]),
    ],
)
def test_model_configs_compose_with_the_paper_sparsity(config, name, layers):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from video_sparse.engine.builders import build_model

    root = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(root), version_base=None):
        cfg = compose("train", overrides=[f"model={config}", "sparsity=paper", "model.grad_checkpointing=true"])
    assert cfg.model.model_name == name
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.sparsity)
    assert list(model.sparse_layers) == layers and model.grad_checkpointing
