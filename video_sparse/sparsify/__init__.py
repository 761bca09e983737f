"""Token sparsification: importance scores, top-k selection and the fused token."""
from .functional import TokenSelection, apply_selection, num_kept_tokens, select_tokens
from .scorers import SCORE_POLICIES

__all__ = ["TokenSelection", "apply_selection", "num_kept_tokens", "select_tokens", "SCORE_POLICIES"]
