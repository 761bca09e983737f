"""The attention each key receives, from fused kernels: values and gradients equal an fp64 explicit
reference (the full softmax matrix), in the kernel alone and inside models (with and without a class
token, with activation checkpointing), with and without a key padding mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from video_sparse.layers import Attention, received_attention
from video_sparse.layers.attention import received_kernel
from video_sparse.layers.chunked_attention import attention_with_received
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


def _masked_reference(q, k, v, scale, valid):
    """fp64 output and received sums of a key padding mask: softmax over the real keys, received
    as column sums over the real query rows."""
    q, k, v = (t.double() for t in (q, k, v))
    logits = ((q @ k.transpose(-2, -1)) * scale).masked_fill(~valid[:, None, None, :], float("-inf"))
    attn = logits.softmax(dim=-1)
    return attn @ v, (attn * valid[:, None, :, None]).sum(dim=2)


def _valid(n: int, counts: list[int], class_token: bool, seed: int = 0) -> torch.Tensor:
    """(len(counts), n) bool with ``counts[b]`` real tokens at random places (the first one real
    with ``class_token``)."""
    g = torch.Generator().manual_seed(seed)
    valid = torch.zeros(len(counts), n, dtype=torch.bool)
    for b, count in enumerate(counts):
        if class_token:
            valid[b, 0] = True
            valid[b, 1 + torch.randperm(n - 1, generator=g)[: count - 1]] = True
        else:
            valid[b, torch.randperm(n, generator=g)[:count]] = True
    return valid


@pytest.mark.parametrize("class_token", [False, True], ids=["no-cls", "cls"])
@pytest.mark.parametrize("n", [17, 50, 197])
def test_masked_output_received_and_gradients_equal_the_chunked_kernel_and_the_fp64_reference(n, class_token):
    valid = _valid(n, [n, 1, 2, n // 3], class_token, seed=n)
    q, k, v = _qkv(n, batch=4, seed=n)
    scale = 8**-0.5
    out, received = fused_attention_with_received(q, k, v, scale, valid)
    chunked_out, chunked_received = attention_with_received(q, k, v, scale, 16, valid)
    ref_out, ref_received = _masked_reference(q, k, v, scale, valid)
    rows = valid[:, None, :, None]  # padded query rows: finite, otherwise unused
    assert out.isfinite().all() and received.dtype == torch.float32 and received.shape == (4, 2, n)
    padded = ~valid[:, None, :].expand_as(received)
    assert torch.equal(chunked_received[padded], torch.zeros(int(padded.sum())))  # padded keys receive 0
    assert torch.equal(received[padded], chunked_received[padded])
    assert ((received.double() - ref_received) / ref_received)[~padded].abs().max() <= 1e-5
    torch.testing.assert_close(received, chunked_received, rtol=1e-5, atol=0)
    for reference in (ref_out, chunked_out.double()):
        torch.testing.assert_close(out.double() * rows, reference * rows, rtol=1e-5, atol=1e-5)

    g = torch.Generator().manual_seed(3)
    d_out, d_received = torch.randn(out.shape, generator=g) * rows, torch.randn(received.shape, generator=g)
    grads = torch.autograd.grad((out * d_out).sum() + (received * d_received).sum(), (q, k, v))
    chunked_grads = torch.autograd.grad((chunked_out * d_out).sum() + (chunked_received * d_received).sum(), (q, k, v))
    ref_grads = torch.autograd.grad(
        (ref_out * d_out.double()).sum() + (ref_received * d_received.double()).sum(), (q, k, v)
    )
    for name, a, b, c in zip("qkv", grads, ref_grads, chunked_grads):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-4, msg=f"d{name} vs fp64")
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4, msg=f"d{name} vs chunked")


def test_a_mask_of_real_tokens_only_equals_no_mask():
    """Within fp32 rounding: the masked kernels run on wider tensors, which changes the order of some
    sums (on the CPUs tried, out and received were bitwise equal, the gradients differed by about
    1e-6 of their largest value, less than either's error against fp64)."""
    q, k, v = _qkv(197, batch=2, dim=64, seed=5)
    results = []
    for valid in (None, torch.ones(2, 197, dtype=torch.bool)):
        out, received = fused_attention_with_received(q, k, v, 0.125, valid)
        grads = torch.autograd.grad((out**2).sum() + (received**2).sum(), (q, k, v))
        results.append((out, received, *grads))
    for name, a, b in zip(("out", "received", "dq", "dk", "dv"), *results):
        assert (a - b).abs().max() <= (1e-6 if name in ("out", "received") else 1e-5) * b.abs().max(), name


def test_masked_half_precision():
    """bf16 inputs (CPU flash kernel) against the fp64 reference of the same rounded inputs: received
    keeps fp32-like accuracy (the -lse parts; the padding column is exact in bf16), the output and
    gradients bf16 accuracy."""
    n = 300
    q, k, v = (t.detach().bfloat16().requires_grad_() for t in _qkv(n, batch=3, dim=64, spread=1.0))
    valid = _valid(n, [n, 2, 120], class_token=True)
    out, received = fused_attention_with_received(q, k, v, 64**-0.5, valid)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref_out, ref_received = _masked_reference(q64, k64, v64, 64**-0.5, valid)
    padded = ~valid[:, None, :].expand_as(received)
    assert torch.equal(received[padded], torch.zeros(int(padded.sum())))
    assert ((received.double() - ref_received) / ref_received)[~padded].abs().max() <= 1e-4

    rows = valid[:, None, :, None]
    g = torch.Generator().manual_seed(3)
    d_out, d_received = torch.randn(out.shape, generator=g) * rows, torch.randn(received.shape, generator=g)
    grads = torch.autograd.grad((out * d_out.bfloat16()).float().sum() + (received * d_received).sum(), (q, k, v))
    ref_loss = (ref_out * d_out.double()).sum() + (ref_received * d_received.double()).sum()
    ref_grads = torch.autograd.grad(ref_loss, (q64, k64, v64))
    for name, a, b in zip(("out", "dq", "dk", "dv"), (out * rows, *grads), (ref_out * rows, *ref_grads)):
        assert (a.double() - b).abs().max() <= 3e-2 * b.abs().max(), name


def test_masked_custom_ops_pass_opcheck():
    """Schema, fake (meta) implementations and autograd registration of both ops with a mask."""
    q, k, v = _qkv(13, batch=2)
    valid = _valid(13, [13, 4], class_token=False)
    torch.library.opcheck(received_attention._attention_with_received_op, (q, k, v, 0.3, valid))
    args = (torch.randn(2, 2, 13, 8), torch.randn(2, 2, 13), q.detach(), k.detach(), v.detach(), 0.3, valid)
    torch.library.opcheck(received_attention._attention_with_received_backward_op, args)


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
