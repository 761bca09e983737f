"""Top-k token selection and the fused token, as functions on plain tensors.

At a sparsifying layer the non-prefix tokens are ranked by importance; the top
``ceil(keep_rate * N)`` are kept in descending score order and the rest are summed, weighted by
their scores, into one fused token appended after them (Sparse-Tuning, Sec. 3.2; EViT's
inattentive-token fusion). A fused token made by an earlier layer competes like any other token.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class TokenSelection(NamedTuple):
    """Which of the scored tokens a sparsifying layer keeps.

    Attributes:
        kept: (B, K) indices into the scored tokens, highest score first.
        scores: (B, N) importance of the scored tokens (float32).
        fuse_weights: (B, N) weight of each token in the fused token (0 for kept tokens), or None
            when no fused token is made.
        valid: for padded batches (:mod:`video_sparse.sparsify.padding`), (B, K [+ 1]) bool marking
            the real tokens of the shortened sequence; None when nothing is padded.
    """

    kept: torch.Tensor
    scores: torch.Tensor
    fuse_weights: torch.Tensor | None
    valid: torch.Tensor | None = None


def num_kept_tokens(num_tokens: int, keep_rate: float) -> int:
    """``ceil(keep_rate * num_tokens)``, clipped to ``[1, num_tokens]``."""
    if not 0.0 < keep_rate <= 1.0:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
    # round away float noise such as 0.7 * 140 = 98.00000000000001 before the ceiling
    return max(1, min(num_tokens, math.ceil(round(keep_rate * num_tokens, 6))))


KEEP_UNITS = 10_000  # keep rates as integers of 1/10000: torch.compile keeps an int symbolic, not a float


def keep_units(keep_rate: float) -> int:
    """``keep_rate`` in (0, 1] as an integer number of 1/10000 (rounded), for :func:`num_kept_from_units`."""
    num_kept_tokens(1, keep_rate)  # validates the range
    return max(1, round(keep_rate * KEEP_UNITS))


def num_kept_from_units(num_tokens: int, units: int) -> int:
    """``ceil(units * num_tokens / 10000)``, clipped to ``[1, num_tokens]``, in integer arithmetic.

    Equal to :func:`num_kept_tokens` for every keep rate that is a multiple of 1/10000. Integer
    arithmetic lets ``torch.compile(dynamic=True)`` treat ``units`` as a symbol, so a keep-rate
    schedule reuses one compiled graph instead of compiling one per rate.
    """
    return torch.sym_max(1, torch.sym_min(num_tokens, (num_tokens * units + KEEP_UNITS - 1) // KEEP_UNITS))


def select_tokens(
    scores: torch.Tensor, keep_rate: float, fuse: bool = True, num_keep: int | None = None
) -> TokenSelection:
    """Pick the top tokens of each sample.

    Args:
        scores: (B, N) importance of the non-prefix tokens.
        keep_rate: fraction of tokens to keep.
        fuse: whether the dropped tokens will be fused into one token.
        num_keep: tokens to keep, when already known (overrides ``keep_rate``).
    """
    if num_keep is None:
        num_keep = num_kept_tokens(scores.shape[1], keep_rate)
    kept = torch.topk(scores, num_keep, dim=1, largest=True, sorted=True).indices
    fuse_weights = None
    if fuse and num_keep < scores.shape[1]:
        fuse_weights = scores.float().scatter(1, kept, 0.0)
    return TokenSelection(kept, scores, fuse_weights)


def apply_selection(
    x: torch.Tensor, selection: TokenSelection, num_prefix_tokens: int = 0, fuse_values: torch.Tensor | None = None
) -> torch.Tensor:
    """Shorten a token sequence as ``selection`` says.

    Args:
        x: (B, P + N, C) tokens, the first ``P = num_prefix_tokens`` never dropped.
        selection: result of :func:`select_tokens` on the N scored tokens.
        num_prefix_tokens: leading tokens to keep untouched.
        fuse_values: optional (B, N) weights replacing ``selection.fuse_weights`` (e.g. ones to sum
            token masses); ignored when no fused token is made. With a padded selection, padding
            must hold zero in ``x``.

    Returns:
        (B, P + K [+ 1], C): prefix, kept tokens in score order, then the fused token if any.
    """
    prefix, body = x[:, :num_prefix_tokens], x[:, num_prefix_tokens:]
    index = selection.kept.unsqueeze(-1).expand(-1, -1, body.shape[-1])
    parts = [prefix, torch.gather(body, 1, index)]
    if selection.fuse_weights is not None:
        weights = selection.fuse_weights
        if fuse_values is not None:
            # zero score still means "dropped": rebuild the dropped mask from the kept indices
            unkept = False if selection.valid is None else ~selection.valid[:, : selection.kept.shape[1]]
            dropped = torch.ones_like(selection.scores, dtype=torch.bool).scatter(1, selection.kept, unkept)
            weights = fuse_values * dropped
        parts.append(torch.bmm(weights.to(body.dtype).unsqueeze(1), body))
    return torch.cat(parts, dim=1)
