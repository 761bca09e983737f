"""Building blocks shared by the image and video models: token embeddings, attention, position tables."""

from .attention import Attention
from .patch_embed import PatchEmbed2d, TubeletEmbed
from .pos_embed import sincos_position_table

__all__ = ["Attention", "PatchEmbed2d", "TubeletEmbed", "sincos_position_table"]
