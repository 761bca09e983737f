"""Padded batches: attention, scores, their gradients and the token selection ignore padding exactly."""

import pytest
import torch

from video_sparse.layers import Attention
from video_sparse.sparsify import apply_selection, select_tokens
from video_sparse.sparsify.padding import num_kept_per_clip, select_tokens_padded

LENGTHS = (23, 9, 16)


def _padded(seed=0, dim=32):
    """Three samples of different lengths, padded with garbage (it must not matter) to the longest."""
    g = torch.Generator().manual_seed(seed)
    samples = [torch.randn(1, n, dim, generator=g) for n in LENGTHS]
    width = max(LENGTHS)
    x = 5 * torch.randn(len(LENGTHS), width, dim, generator=g)
    valid = torch.zeros(len(LENGTHS), width, dtype=torch.bool)
    for b, s in enumerate(samples):
        x[b, : s.shape[1]] = s[0]
        valid[b, : s.shape[1]] = True
    return samples, x, valid


@pytest.mark.parametrize(
    "impl,score,prefix,kernel",
    [("sdpa", None, 0, "auto"), ("sdpa", "mean_query", 0, "auto"), ("sdpa", "cls", 1, "auto")]
    + [("sdpa", "mean_attn", 0, "fused"), ("sdpa", "mean_attn", 0, "chunked"), ("sdpa", "mean_attn", 1, "fused")]
    + [("explicit", "mean_attn", 0, "auto"), ("explicit", "mean_query", 0, "auto"), ("explicit", "cls", 1, "auto")],
)
def test_attention_and_scores_of_real_tokens_equal_each_sample_alone(impl, score, prefix, kernel):
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, attn_impl=impl, score_chunk_size=5, score_kernel=kernel).eval()
    samples, x, valid = _padded()
    with torch.no_grad():
        out, scores = attn(x, score=score, num_prefix_tokens=prefix, key_padding_mask=valid)
        for b, s in enumerate(samples):
            n = s.shape[1]
            ref_out, ref_scores = attn(s, score=score, num_prefix_tokens=prefix)
            torch.testing.assert_close(out[b, :n], ref_out[0], rtol=1e-5, atol=1e-6)
            if score is not None:
                torch.testing.assert_close(scores[b, : n - prefix], ref_scores[0], rtol=1e-5, atol=1e-7)
                assert not scores[b, n - prefix :].any()  # padding receives nothing


@pytest.mark.parametrize("kernel", ["fused", "chunked"])
def test_gradients_with_padding_equal_each_sample_alone(kernel):
    torch.manual_seed(1)
    attn = Attention(32, num_heads=4, score_chunk_size=4, score_kernel=kernel)
    samples, x, valid = _padded(seed=2)
    x.requires_grad_(True)
    out, scores = attn(x, score="mean_attn", key_padding_mask=valid)
    w_out, w_score = torch.randn(out.shape), torch.randn(scores.shape)
    ((out * w_out * valid.unsqueeze(-1)).sum() + (scores * w_score).sum()).backward()
    grads_together = {n: p.grad.clone() for n, p in attn.named_parameters()}
    attn.zero_grad()
    for b, s in enumerate(samples):
        n = s.shape[1]
        s = s.clone().requires_grad_(True)
        o, sc = attn(s, score="mean_attn")
        ((o * w_out[b : b + 1, :n]).sum() + (sc * w_score[b : b + 1, :n]).sum()).backward()
        torch.testing.assert_close(x.grad[b, :n], s.grad[0], rtol=1e-4, atol=1e-6)
        assert not x.grad[b, n:].any()
    for name, p in attn.named_parameters():
        torch.testing.assert_close(grads_together[name], p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("keep_rate", [0.3, 0.7, 1.0])
def test_padded_selection_equals_per_sample_selection(keep_rate):
    g = torch.Generator().manual_seed(4)
    _, x, valid = _padded(seed=3)
    scores = torch.rand(valid.shape, generator=g) * valid + 7 * ~valid  # padding scored high: must still lose
    num_keep = num_kept_per_clip(valid, keep_rate)
    selection = select_tokens_padded(scores, valid, num_keep)
    fused = apply_selection(x, selection)
    mass = apply_selection(valid.float().unsqueeze(-1), selection, fuse_values=torch.ones(valid.shape)).squeeze(-1)
    for b, n in enumerate(LENGTHS):
        alone = select_tokens(scores[b : b + 1, :n], keep_rate)
        k = alone.kept.shape[1]
        assert selection.kept[b, :k].tolist() == alone.kept[0].tolist()
        assert selection.valid[b, :k].all() and not selection.valid[b, k : selection.kept.shape[1]].any()
        expected = apply_selection(x[b : b + 1, :n], alone)[0]
        torch.testing.assert_close(fused[b, :k], expected[:k])
        has_fused = alone.fuse_weights is not None
        if selection.fuse_weights is not None:
            assert bool(selection.valid[b, -1]) == has_fused
        if has_fused:
            torch.testing.assert_close(fused[b, -1], expected[-1])
            assert float(mass[b, -1]) == n - k  # the fused token absorbed the dropped real tokens only
