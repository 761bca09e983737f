"""Token sparsification: importance scores, top-k selection and the fused token."""

from .functional import (
    KEEP_UNITS,
    TokenSelection,
    apply_selection,
    keep_units,
    num_kept_from_units,
    num_kept_tokens,
    select_tokens,
)
from .scorers import SCORE_POLICIES, ScorePolicy, get_score_policy

__all__ = [
    "KEEP_UNITS",
    "SCORE_POLICIES",
    "ScorePolicy",
    "TokenSelection",
    "apply_selection",
    "get_score_policy",
    "keep_units",
    "num_kept_from_units",
    "num_kept_tokens",
    "select_tokens",
]
