"""Token selection for batches whose clips have different token counts (padded to the longest).

A ``valid`` mask (B, N) marks the real tokens of each clip. Every clip keeps
``ceil(keep_rate * N_b)`` of its own ``N_b`` real tokens (:func:`num_kept_per_clip`), exactly as a
batch of that clip alone would; padding is never kept, never fused and never counted. The shortened
sequence is padded again to the clip that keeps the most: kept slots ``j < K_b`` are real, then the
fused token, real when the clip dropped anything.
"""

from __future__ import annotations

import torch

from .functional import TokenSelection, num_kept_from_units, num_kept_tokens


def num_kept_per_clip(valid: torch.Tensor, keep_rate: float, keep_units: int | None = None) -> torch.Tensor:
    """Tokens each clip keeps: (B,) long, :func:`num_kept_tokens` of its real-token count.

    Args:
        valid: (B, N) bool, True for real tokens.
        keep_rate: fraction kept.
        keep_units: the keep rate as an integer of 1/10000 (overrides ``keep_rate``).
    """
    counts = valid.sum(dim=1).tolist()
    if keep_units is None:
        kept = [num_kept_tokens(n, keep_rate) for n in counts]
    else:
        kept = [int(num_kept_from_units(n, keep_units)) for n in counts]
    return torch.tensor(kept, dtype=torch.long, device=valid.device)


def select_tokens_padded(
    scores: torch.Tensor,
    valid: torch.Tensor,
    num_keep: torch.Tensor,
    fuse: bool = True,
    kept: torch.Tensor | None = None,
) -> TokenSelection:
    """Top ``num_keep[b]`` real tokens of every clip, in score order, padding ignored.

    Args:
        scores: (B, N) importance of the scored tokens.
        valid: (B, N) bool, True for real tokens.
        num_keep: (B,) tokens each clip keeps (1 <= num_keep[b] <= its real tokens).
        fuse: fuse each clip's dropped real tokens into one token.
        kept: (B, max(num_keep)) indices to keep instead of the top-scored ones (a recomputed
            forward); slots ``j >= num_keep[b]`` are ignored.

    Returns:
        the selection with ``valid`` set: (B, K [+ 1]) bool mask of the shortened sequence, K =
        max(num_keep); the fused slot is real where the clip dropped a real token.
    """
    width = int(num_keep.max())
    if kept is None:
        kept = torch.topk(scores.detach().masked_fill(~valid, float("-inf")), width, dim=1, sorted=True).indices
    kept_valid = torch.arange(width, device=scores.device).expand(scores.shape[0], -1) < num_keep.unsqueeze(1)
    # dropped = real and not in the clip's first num_keep[b] slots
    dropped = torch.ones_like(valid).scatter(1, kept, ~kept_valid) & valid
    has_fused = num_keep < valid.sum(dim=1)
    if not (fuse and bool(has_fused.any())):
        return TokenSelection(kept, scores, None, kept_valid)
    fuse_weights = scores.float() * dropped
    return TokenSelection(kept, scores, fuse_weights, torch.cat([kept_valid, has_fused.unsqueeze(1)], dim=1))
