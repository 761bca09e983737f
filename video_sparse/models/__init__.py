"""Models: one SparseViT for images and videos, registered in timm's model registry."""

from .factory import create_model, registered_models
from .vit import VARIANTS, Block, SparseOutput, SparseViT

__all__ = ["VARIANTS", "Block", "SparseOutput", "SparseViT", "create_model", "registered_models"]
