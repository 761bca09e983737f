"""Importance-score policies for token sparsification.

Every policy returns, per sample, one non-negative number per token, averaged over heads:

- ``cls``: the class token's attention to each token (Sparse-Tuning / EViT for images). Only the
  CLS query row is computed: ``softmax(q_cls k^T / sqrt(d))``, O(N) per head.
- ``mean_attn``: the exact attention each token receives, averaged over all queries,
  ``(1/N) sum_i softmax(q_i k^T / sqrt(d))``. Computed together with the attention output in query
  chunks, so the full N x N matrix is never held in memory, and only in the sparsifying layers.
- ``mean_query``: a cheap proxy: the attention row of the mean query, ``softmax(mean_i(q_i) k^T /
  sqrt(d))``, O(N) per head.
"""
from __future__ import annotations

import torch

SCORE_POLICIES = frozenset({"cls", "mean_attn", "mean_query"})


def query_row_scores(q_rows: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax attention of a few query rows over all keys, averaged over rows and heads.

    Args:
        q_rows: (B, H, R, d) queries (R is 1 for CLS or the mean query).
        k: (B, H, N, d) keys.
        scale: attention scale (1/sqrt(d)).

    Returns:
        (B, N) float32 scores.
    """
    logits = (q_rows.float() * scale) @ k.float().transpose(-2, -1)
    return logits.softmax(dim=-1).mean(dim=2).mean(dim=1)


def attention_with_mean_received(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                                 chunk_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output plus the exact mean attention each key receives, in query chunks.

    Args:
        q, k, v: (B, H, N, d).
        scale: attention scale.
        chunk_size: query rows per chunk; memory is O(B * H * chunk_size * N).

    Returns:
        out: (B, H, N, d) attention output; scores: (B, N) float32 mean received attention.
    """
    B, H, N, _ = q.shape
    outs = []
    received = torch.zeros(B, H, N, dtype=torch.float32, device=q.device)
    kt = k.transpose(-2, -1)
    for start in range(0, N, chunk_size):
        attn = ((q[:, :, start:start + chunk_size] * scale) @ kt).float().softmax(dim=-1)
        received += attn.sum(dim=2)
        outs.append(attn.to(v.dtype) @ v)
    return torch.cat(outs, dim=2), received.mean(dim=1) / N
