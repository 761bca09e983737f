"""Models: one SparseViT for images and videos, registered in timm's model registry."""
from .vit import VARIANTS, Block, SparseOutput, SparseViT

__all__ = ["VARIANTS", "Block", "SparseOutput", "SparseViT"]
