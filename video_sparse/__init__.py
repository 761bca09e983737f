"""video_sparse: Sparse-Tuning (frozen ViT, Dense Adapters, token sparsification) for video and images.

Importing the package registers the ``sparse_vit_*`` and ``sparse_videomae_*`` models in timm.
"""

from .models import SparseViT

__version__ = "0.1.0"
__all__ = ["SparseViT", "__version__"]
