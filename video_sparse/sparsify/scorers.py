"""Importance-score policies for token sparsification, as a registry of small policy records.

Every policy returns, per sample, one non-negative number per token, averaged over heads:

- ``cls``: the class token's attention to each token (Sparse-Tuning / EViT for images). Only the
  CLS query row is computed: ``softmax(q_cls k^T / sqrt(d))``, O(N) per head.
- ``mean_attn``: the exact attention each token receives, averaged over all queries,
  ``(1/N) sum_i softmax(q_i k^T / sqrt(d))``. With SDPA it is computed together with the attention
  output in query chunks (:mod:`video_sparse.layers.chunked_attention`), only in the sparsifying
  layers; the full N x N matrix is never held in memory.
- ``mean_query``: a cheap proxy: the attention row of the mean query, ``softmax(mean_i(q_i) k^T /
  sqrt(d))``, O(N) per head.

In a padded batch (clips of different lengths) every policy takes a ``valid`` (B, N) bool mask:
padded keys get no attention and padded queries are left out of every mean.

A new policy is one entry in :data:`SCORE_POLICIES`; the attention layer
(:class:`video_sparse.layers.Attention`) asks the record how to score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


class ScorePolicy(NamedTuple):
    """How one policy scores the tokens of an attention layer (scores: (B, N) float32, all tokens).

    Attributes:
        from_queries: ``(q, k, scale[, valid]) -> scores`` from a few query rows, without the attention
            matrix (q, k: (B, H, N, d)); None when the policy needs the whole matrix.
        from_attention: ``(attn[, valid]) -> scores`` from the softmax matrix (B, H, N, N), used where a
            layer materialises it (``attn_impl="explicit"``); None: ``from_queries`` there too.
        from_received: ``(received, num_queries) -> scores`` from the attention each key receives
            summed over (real) queries (B, H, N); ``num_queries`` an int or a (B, 1) tensor of real
            queries per sample; how a policy that needs the whole matrix scores under SDPA.
        needs_class_token: the policy reads the CLS query (a model without one cannot use it).
    """

    from_queries: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None
    from_attention: Callable[[torch.Tensor], torch.Tensor] | None = None
    from_received: Callable[[torch.Tensor, int], torch.Tensor] | None = None
    needs_class_token: bool = False

    @property
    def needs_attention(self) -> bool:
        """Whether scoring needs the whole attention matrix (computed in query chunks under SDPA)."""
        return self.from_queries is None


def query_row_scores(
    q_rows: torch.Tensor, k: torch.Tensor, scale: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax attention of a few query rows over all keys, averaged over rows and heads.

    Args:
        q_rows: (B, H, R, d) queries (R is 1 for CLS or the mean query).
        k: (B, H, N, d) keys.
        scale: attention scale (1/sqrt(d)).
        valid: (B, N) bool real keys, or None (all real).

    Returns:
        (B, N) float32 scores (0 at padded keys).
    """
    logits = (q_rows.float() * scale) @ k.float().transpose(-2, -1)
    if valid is not None:
        logits = logits.masked_fill(~valid[:, None, None, :], float("-inf"))
    return logits.softmax(dim=-1).mean(dim=2).mean(dim=1)


def _cls_row(q: torch.Tensor, k: torch.Tensor, scale: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    return query_row_scores(q[:, :, :1], k, scale, valid)


def _mean_query_row(q: torch.Tensor, k: torch.Tensor, scale: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    if valid is None:
        return query_row_scores(q.mean(dim=2, keepdim=True), k, scale)
    weights = valid[:, None, :, None].to(q.dtype)
    mean_q = (q * weights).sum(dim=2, keepdim=True) / weights.sum(dim=2, keepdim=True)
    return query_row_scores(mean_q, k, scale, valid)


def _mean_received(attn: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    if valid is None:
        return attn.mean(dim=2).mean(dim=1)
    rows = valid[:, None, :, None].to(attn.dtype)
    return ((attn * rows).sum(dim=2) / rows.sum(dim=2)).mean(dim=1)


SCORE_POLICIES: dict[str, ScorePolicy] = {
    "cls": ScorePolicy(
        from_queries=_cls_row, from_attention=lambda attn, valid=None: attn[:, :, 0].mean(dim=1), needs_class_token=True
    ),
    "mean_attn": ScorePolicy(
        from_attention=_mean_received,
        from_received=lambda received, num_queries: received.mean(dim=1) / num_queries,
    ),
    "mean_query": ScorePolicy(from_queries=_mean_query_row),
}
"""Registered policies by name (the ``score`` argument of the model)."""


def get_score_policy(name: str) -> ScorePolicy:
    """The registered policy ``name``.

    Raises:
        ValueError: an unknown name (the registered ones are listed).
    """
    try:
        return SCORE_POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown score policy {name!r}; choose one of {sorted(SCORE_POLICIES)}") from None
