"""The attention each key receives, from fused kernels: values and gradients equal an fp64 explicit
reference (the full softmax matrix), in the kernel alone and inside models (with and without a class
token, with activation checkpointing)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from video_sparse.layers import Attention
from video_sparse.layers.attention import received_kernel
from video_sparse.layers.received_attention import fused_attention_with_received
from video_sparse.models.vit import SparseViT
from video_sparse.sparsify import num_kept_tokens


def _reference(q, k, v, scale):
    """fp64 output and received sums from the materialised softmax matrix."""
    q, k, v = (t.double() for t in (q, k, v))
    attn = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    return attn @ v, attn.sum(dim=2)


def _qkv(n: int, batch: int = 1, heads: int = 2, dim: int = 8, seed: int = 0, spread: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, heads, n, dim, generator=g) * spread).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("n", [17, 197, 1568, 1569])
def test_output_received_and_gradients_equal_the_fp64_reference(n):
    q, k, v = _qkv(n)
    scale = 8**-0.5
    out, received = fused_attention_with_received(q, k, v, scale)
    ref_out, ref_received = _reference(q, k, v, scale)
    assert received.dtype == torch.float32 and received.shape == (1, 2, n)
    assert ((received.double() - ref_received) / ref_received).abs().max() <= 1e-5
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)

    g = torch.Generator().manual_seed(3)
    d_out, d_received = torch.randn(out.shape, generator=g), torch.randn(received.shape, generator=g)
    grads = torch.autograd.grad((out * d_out).sum() + (received * d_received).sum(), (q, k, v))
    ref_grads = torch.autograd.grad(
        (ref_out * d_out.double()).sum() + (ref_received * d_received.double()).sum(), (q, k, v)
    )
    for name, a, b in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-4, msg=f"d{name}")


@pytest.mark.parametrize("used", ["out", "received"])
def test_gradient_of_one_output_alone(used):
    """An unused output contributes nothing (its gradient arrives as None or zeros)."""
    q, k, v = _qkv(40, batch=2)
    out, received = fused_attention_with_received(q, k, v, 0.3)
    ref_out, ref_received = _reference(q, k, v, 0.3)
    loss = (out**2).sum() if used == "out" else (received**2).sum()
    ref_loss = (ref_out**2).sum() if used == "out" else (ref_received**2).sum()
    grads = torch.autograd.grad(loss, (q, k, v), materialize_grads=True)
    ref_grads = torch.autograd.grad(ref_loss, (q, k, v), materialize_grads=True)  # received ignores v
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-5)


def test_half_precision_keeps_the_log_sum_exp_bias_exact():
    """bf16 kernels see -lse split into three bf16 parts: the received sums keep fp32-like accuracy
    (one bf16 column would lose about 1 %)."""
    q, k, v = (t.detach().bfloat16() for t in _qkv(300, dim=64, spread=1.0))
    _, received = fused_attention_with_received(q, k, v, 64**-0.5)
    _, ref_received = _reference(q, k, v, 64**-0.5)
    assert ((received.double() - ref_received) / ref_received).abs().max() <= 1e-4


def test_kernel_choice_is_one_function():
    assert received_kernel("auto", torch.device("cpu")) == "fused"
    assert received_kernel("auto", torch.device("meta")) == "chunked"
    assert received_kernel("chunked", torch.device("cpu")) == "chunked"
    with pytest.raises(ValueError, match="score_kernel"):
        received_kernel("flash", torch.device("cpu"))
    with pytest.raises(ValueError, match="score_kernel"):
        Attention(16, 2, score_kernel="nope")


@pytest.mark.parametrize("kernel", ["fused", "chunked"])
def test_attention_layer_scores_with_either_kernel(kernel):
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, score_kernel=kernel).eval()
    x = torch.randn(2, 23, 32)
    B, N, C = x.shape
    q, k, v = attn.qkv(x).reshape(B, N, 3, 4, 8).permute(2, 0, 3, 1, 4)
    _, ref_received = _reference(q, k, v, attn.scale)
    _, scores = attn(x, score="mean_attn", num_prefix_tokens=1)
    torch.testing.assert_close(scores.double(), (ref_received.mean(1) / N)[:, 1:], rtol=1e-5, atol=1e-7)


def _model(class_token: bool, img_size: int, **kwargs) -> SparseViT:
    torch.manual_seed(0)
    model = SparseViT(
        img_size=img_size,
        class_token=class_token,
        pos_embed="sincos",
        global_pool="avg",
        score="mean_attn",
        embed_dim=16,
        depth=3,
        num_heads=2,
        num_classes=4,
        sparse_layers=(1, 2),
        adapter_dim=8,
        keep_rate=0.5,
        **kwargs,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter" in name:  # non-zero adapter outputs: every gradient path carries something
                p.normal_(0, 0.05)
            elif "qkv.weight" in name:  # peaked attention: scores far apart, one top-k in any precision
                p.normal_(0, 0.5)
    return model


def _set_kernel(model: SparseViT, impl: str, kernel: str = "auto") -> None:
    for block in model.blocks:
        block.attn.attn_impl, block.attn.score_kernel = impl, kernel


def _run(model, x):
    model.zero_grad(set_to_none=True)
    out = model(x, return_kept=True)
    F.cross_entropy(out.logits, torch.arange(x.shape[0]) % 4).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize(
    "class_token,frames,img_size,checkpointing,tokens",
    [(True, 8, 32, False, 17), (False, 8, 64, True, 64), (True, 16, 224, False, 1569), (False, 16, 224, True, 1568)],
    ids=["N17", "N64-ckpt", "N1569", "N1568-ckpt"],
)
def test_model_kept_tokens_logits_and_gradients_equal_the_fp64_explicit_model(
    class_token, frames, img_size, checkpointing, tokens
):
    model = _model(class_token, img_size, num_frames=frames, grad_checkpointing=checkpointing).train()
    x = torch.randn(2, 3, frames, img_size, img_size, generator=torch.Generator().manual_seed(1))
    assert model.patch_embed.num_patches + model.num_prefix_tokens == tokens
    _set_kernel(model, "sdpa", "fused")
    out, grads = _run(model, x)

    reference = _model(class_token, img_size, num_frames=frames, grad_checkpointing=checkpointing).double().train()
    reference.load_state_dict(model.state_dict())
    _set_kernel(reference, "explicit")
    ref_out, ref_grads = _run(reference, x.double())

    assert len(out.kept) == 2
    for ours, theirs in zip(out.kept, ref_out.kept):  # kept sets (equal scores may swap places in the order)
        assert torch.equal(ours.sort(dim=1).values, theirs.sort(dim=1).values)
    torch.testing.assert_close(out.logits.double(), ref_out.logits, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and any("qkv" in n for n in grads)
    for name, g in grads.items():
        torch.testing.assert_close(g.double(), ref_grads[name], rtol=1e-4, atol=1e-4, msg=name)


def test_kept_tokens_match_wherever_the_scores_are_separated():
    """Over many inputs, the top-k of the fused scores equals the fp64 top-k whenever the k-th and
    (k+1)-th reference scores differ by more than the fp32 error; such samples are most of them."""
    torch.manual_seed(0)
    attn = Attention(16, num_heads=2).eval()
    x = torch.randn(64, 197, 16)
    B, N, C = x.shape
    with torch.no_grad():
        q, k, v = attn.qkv(x).reshape(B, N, 3, 2, 8).permute(2, 0, 3, 1, 4)
        _, ref = _reference(q, k, v, attn.scale)
        ref = (ref.mean(1) / N)[:, 1:]
        _, scores = attn(x, score="mean_attn", num_prefix_tokens=1)
    keep = num_kept_tokens(N - 1, 0.7)
    ordered = ref.sort(dim=1, descending=True).values
    separated = (ordered[:, keep - 1] - ordered[:, keep]) > 1e-5 * ordered[:, 0]
    assert separated.sum() >= 32
    ours = scores.topk(keep, dim=1).indices.sort(dim=1).values
    theirs = ref.topk(keep, dim=1).indices.sort(dim=1).values
    assert torch.equal(ours[separated], theirs[separated])
