"""Fixtures for the checkpoint tests: the registered nano SparseViT models, backbone frozen as for training.

The entry points are called directly: ``timm.create_model`` drops keyword arguments whose value is
None, so ``adapter=None`` would not reach the model through it.
"""

from __future__ import annotations

import pytest
import torch

from video_sparse.adapters import set_trainable
from video_sparse.models import vit


@pytest.fixture
def video_nano():
    """Factory for the registered 4-block video model (16 frames, 64 px)."""

    def make(seed: int = 0, **kwargs) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = vit.sparse_videomae_nano_patch16_64(**kwargs)
        set_trainable(model)
        return model.eval()

    return make


@pytest.fixture
def image_nano():
    """Factory for the registered 4-block image model (64 px)."""

    def make(seed: int = 0, **kwargs) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = vit.sparse_vit_nano_patch16_64(**kwargs)
        set_trainable(model)
        return model.eval()

    return make
