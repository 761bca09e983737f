"""Top-k selection and the fused token against a brute-force reference."""

import math

import pytest
import torch

from video_sparse.sparsify import apply_selection, num_kept_tokens, select_tokens


def _brute_force(x, scores, keep_rate, prefix):
    out = []
    for b in range(x.shape[0]):
        body = x[b, prefix:]
        n = body.shape[0]
        k = math.ceil(keep_rate * n - 1e-9)
        order = sorted(range(n), key=lambda j: -scores[b, j].item())
        kept, dropped = order[:k], order[k:]
        rows = [x[b, :prefix]] + [body[j : j + 1] for j in kept]
        if dropped:
            fused = sum(scores[b, j].item() * body[j] for j in dropped)
            rows.append(fused.unsqueeze(0))
        out.append(torch.cat(rows))
    return torch.stack(out)


@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize("keep_rate", [0.7, 0.5, 0.34])
def test_selection_matches_brute_force(prefix, keep_rate):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, prefix + 20, 8, generator=g, dtype=torch.float64)
    scores = torch.rand(3, 20, generator=g, dtype=torch.float64)
    selection = select_tokens(scores, keep_rate)
    got = apply_selection(x, selection, prefix)
    torch.testing.assert_close(got, _brute_force(x, scores, keep_rate, prefix))


def test_kept_indices_are_per_sample_and_in_score_order():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.5], [0.8, 0.2, 0.7, 0.1]])
    selection = select_tokens(scores, 0.5)
    assert selection.kept.tolist() == [[1, 3], [0, 2]]
    torch.testing.assert_close(selection.fuse_weights, torch.tensor([[0.1, 0.0, 0.3, 0.0], [0.0, 0.2, 0.0, 0.1]]))


def test_no_fused_token_when_disabled():
    x = torch.randn(2, 10, 4)
    out = apply_selection(x, select_tokens(torch.rand(2, 10), 0.7, fuse=False))
    assert out.shape == (2, 7, 4)


def test_fuse_values_sum_masses():
    scores = torch.tensor([[0.4, 0.1, 0.3, 0.2]])
    mass = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = apply_selection(mass.unsqueeze(-1), select_tokens(scores, 0.5), 0, fuse_values=torch.ones_like(mass))
    assert out.squeeze(-1).tolist() == [[1.0, 3.0, 6.0]]


def test_keep_count_paper_schedule():
    counts, n = [], 196
    for _ in range(3):
        n = num_kept_tokens(n, 0.7) + 1
        counts.append(n)
    assert counts == [139, 99, 71]
    with pytest.raises(ValueError):
        num_kept_tokens(10, 0.0)
