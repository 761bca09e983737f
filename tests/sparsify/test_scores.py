"""Score policies computed cheaply equal the same numbers read from a full attention matrix."""

import pytest
import torch

from video_sparse.layers import Attention


def _full_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    B, N, C = x.shape
    q, k, _ = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    return ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1)  # (B, H, N, N)


@pytest.fixture
def attn_and_x():
    torch.manual_seed(0)
    return Attention(32, num_heads=4, score_chunk_size=7).eval(), torch.randn(2, 23, 32)


def test_cls_score_is_the_cls_attention_row(attn_and_x):
    attn, x = attn_and_x
    full = _full_attention(attn, x)
    _, scores = attn(x, score="cls", num_prefix_tokens=1)
    torch.testing.assert_close(scores, full[:, :, 0, 1:].mean(1), rtol=1e-5, atol=1e-6)


def test_mean_attention_received_is_exact_and_output_unchanged(attn_and_x):
    attn, x = attn_and_x
    full = _full_attention(attn, x)
    out_plain, none = attn(x)
    out, scores = attn(x, score="mean_attn")
    assert none is None
    torch.testing.assert_close(scores, full.mean(2).mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, out_plain, rtol=1e-5, atol=1e-5)
    assert torch.allclose(scores.sum(-1), torch.ones(2))


def test_mean_query_proxy(attn_and_x):
    attn, x = attn_and_x
    B, N, C = x.shape
    q, k, _ = attn.qkv(x).reshape(B, N, 3, 4, 8).permute(2, 0, 3, 1, 4)
    expected = ((q.mean(2, keepdim=True) @ k.transpose(-2, -1)) * attn.scale).softmax(-1)[:, :, 0].mean(1)
    _, scores = attn(x, score="mean_query")
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy,prefix", [("cls", 1), ("mean_attn", 0), ("mean_query", 0)])
def test_explicit_and_sdpa_agree(attn_and_x, policy, prefix):
    attn, x = attn_and_x
    explicit = Attention(32, num_heads=4, attn_impl="explicit").eval()
    explicit.load_state_dict(attn.state_dict())
    out_a, s_a = attn(x, score=policy, num_prefix_tokens=prefix)
    out_b, s_b = explicit(x, score=policy, num_prefix_tokens=prefix)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s_a, s_b, rtol=1e-5, atol=1e-6)


def test_bad_policy_errors(attn_and_x):
    attn, x = attn_and_x
    with pytest.raises(ValueError, match="class token"):
        attn(x, score="cls", num_prefix_tokens=0)
    with pytest.raises(ValueError, match="unknown score policy"):
        attn(x, score="nope")


def _max_received(received: torch.Tensor, num_queries: int) -> torch.Tensor:
    return received.amax(dim=1) / num_queries


def test_a_new_policy_is_one_registration(attn_and_x, monkeypatch):
    """A policy needing the whole matrix: read from it (explicit) or from the chunked per-key sums (SDPA)."""
    import timm

    import video_sparse  # noqa: F401
    from video_sparse.sparsify import SCORE_POLICIES, ScorePolicy

    policy = ScorePolicy(from_attention=lambda a: a.mean(dim=2).amax(dim=1), from_received=_max_received)
    monkeypatch.setitem(SCORE_POLICIES, "max_head", policy)
    attn, x = attn_and_x
    expected = _full_attention(attn, x).mean(2).amax(1)
    explicit = Attention(32, num_heads=4, attn_impl="explicit").eval()
    explicit.load_state_dict(attn.state_dict())
    for layer in (attn, explicit):
        _, scores = layer(x, score="max_head")
        torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    model = timm.create_model("sparse_videomae_nano_patch16_64", num_classes=3, score="max_head").eval()
    with torch.no_grad():
        kept = model(torch.randn(1, 3, 16, 64, 64), return_kept=True).kept
    assert len(kept) == 3 and kept[0].shape[1] < model.patch_embed.num_patches


def test_a_model_without_class_token_refuses_the_cls_policy():
    import timm

    import video_sparse  # noqa: F401

    with pytest.raises(ValueError, match="needs a class token"):
        timm.create_model("sparse_videomae_nano_patch16_64", score="cls")
