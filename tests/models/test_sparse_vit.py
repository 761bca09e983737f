"""SparseViT behaviour: kept indices, trainable parameters, dense connections, pooling, registry."""

import math

import pytest
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.adapters import set_trainable
from video_sparse.models import VARIANTS, SparseViT

NANO_IMAGE = "sparse_vit_nano_patch16_64"
NANO_VIDEO = "sparse_videomae_nano_patch16_64"


def _video(batch=2, seed=0):
    return torch.randn(batch, 3, 16, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_kept_indices_follow_the_scores_of_the_sparsifying_block():
    torch.manual_seed(0)
    model = timm.create_model(NANO_IMAGE, num_classes=3, score="cls").eval()
    captured = {}
    block = model.blocks[1]

    def keep_input(module, args):
        captured.setdefault("x", args[0])

    block.register_forward_pre_hook(keep_input)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, return_kept=True)
        # independent: full attention matrix of block 1 on its input, CLS row averaged over heads
        h = block.norm1(captured["x"])
        B, N, C = h.shape
        q, k, _ = block.attn.qkv(h).reshape(B, N, 3, 3, C // 3).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (C // 3) ** -0.5).softmax(-1)
        expected = attn[:, :, 0, 1:].mean(1).topk(math.ceil(0.7 * 16), dim=1).indices
    assert out.kept[0][:, :-1].tolist() == expected.tolist()
    assert (out.kept[0][:, -1] == -1).all()


def test_kept_indices_are_valid_and_per_sample():
    torch.manual_seed(0)
    model = timm.create_model(NANO_VIDEO, num_classes=4).eval()
    x = _video()
    x[1] = torch.flip(x[1], dims=[-1])
    with torch.no_grad():
        out = model(x, return_kept=True)
    assert len(out.kept) == 3
    num_patches = model.patch_embed.num_patches
    for layer in out.kept:
        for row in layer.tolist():
            real = [i for i in row if i >= 0]
            assert len(set(real)) == len(real)
            assert all(0 <= i < num_patches for i in real)
            assert all(i == -1 for i in row if i < 0)
    assert out.kept[0][0].tolist() != out.kept[0][1].tolist()
    assert [k.shape[1] for k in out.kept] == [n - 0 for _, n in model.tokens_per_block()[1:4]]


@pytest.mark.parametrize("adapter", ["dense", "dense_paper", "parallel"])
def test_only_adapters_and_head_receive_gradients(adapter):
    torch.manual_seed(0)
    model = timm.create_model(NANO_VIDEO, num_classes=4, adapter=adapter)
    set_trainable(model)
    # make up-projections non-zero so gradients reach every adapter layer
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter" in name:
                p.add_(0.01 * torch.randn_like(p))
    model(_video()).sum().backward()
    for name, param in model.named_parameters():
        trainable = "adapter" in name or name.startswith("head.")
        assert param.requires_grad == trainable, name
        if trainable:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    assert set(_trainable(model)) == {n for n, _ in model.named_parameters() if "adapter" in n or n.startswith("head.")}


def test_dense_connections_match_a_manual_stage_loop():
    torch.manual_seed(0)
    model = timm.create_model(NANO_IMAGE, num_classes=3, sparse_layers=(2,), keep_rate=0.5).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter" in name:
                p.copy_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got = model.forward_features(x)
        h = model._embed(x)
        for stage in ([0, 1], [2, 3]):
            outs = []
            for i in stage:
                h, a, _ = model.blocks[i](h, model.keep_rate)
                outs.append(a)
            # the final stage leaves out its last block by default (released-code behaviour)
            h = h + sum(outs if stage[0] == 0 else outs[:-1])
        torch.testing.assert_close(got, model.norm(h))


def test_mass_pooling_weights_the_fused_token():
    torch.manual_seed(0)
    model = timm.create_model(NANO_VIDEO, num_classes=4, fused_pool_weight="mass").eval()
    with torch.no_grad():
        tokens, mass, _ = model.forward_tokens(_video())
        assert torch.allclose(mass.sum(1), torch.full((2,), float(model.patch_embed.num_patches)))
        assert mass[:, -1].min() > 1  # the fused token absorbed many tokens
        expected = model.head(model.fc_norm((tokens * mass.unsqueeze(-1)).sum(1) / mass.sum(1, keepdim=True)))
        torch.testing.assert_close(model(_video()), expected)
        model.fused_pool_weight = "one"
        assert not torch.allclose(model(_video()), expected)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_registered_variant_builds(name):
    model = timm.create_model(name, num_classes=7)
    assert isinstance(model, SparseViT)
    assert model.head.out_features == 7
    rebuilt = SparseViT(**model.model_args)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    if "nano" in name:
        x = _video(1) if model.is_video else torch.randn(1, 3, 64, 64)
        assert model(x).shape == (1, 7)


def test_pretrained_without_a_local_file_is_refused():
    with pytest.raises(ValueError, match="never downloads"):
        timm.create_model(NANO_IMAGE, pretrained=True)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"score": "attention"}, "score must be"),
        ({"sparse_layers": (9,)}, "sparse_layers"),
        ({"keep_rate": 1.5}, "keep_rate"),
        ({"adapter": "lora"}, "adapter must be"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        timm.create_model(NANO_IMAGE, **kwargs)


def test_explicit_attention_model_matches_sdpa_model():
    torch.manual_seed(0)
    a = timm.create_model(NANO_VIDEO, num_classes=4, score="mean_attn").eval()
    b = timm.create_model(NANO_VIDEO, num_classes=4, score="mean_attn", attn_impl="explicit").eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        oa, ob = a(_video(), return_kept=True), b(_video(), return_kept=True)
    torch.testing.assert_close(oa.logits, ob.logits, rtol=1e-4, atol=1e-5)
    assert oa.kept[0].tolist() == ob.kept[0].tolist()
    for ka, kb in zip(oa.kept[1:], ob.kept[1:]):  # later layers may swap near-tied tokens
        for row_a, row_b in zip(ka.tolist(), kb.tolist()):
            assert len(set(row_a) & set(row_b)) >= 0.9 * len(row_a)


def test_wrong_input_shape_is_a_clear_error():
    model = timm.create_model(NANO_VIDEO)
    with pytest.raises(ValueError, match="num_frames"):
        model(torch.zeros(1, 3, 8, 64, 64))


def _trainable(model: torch.nn.Module) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]
