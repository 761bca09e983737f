"""Token embeddings: 2D patches for images, 3D tubes (VideoMAE's 2x16x16) for videos.

Both return tokens as ``(B, N, C)``; the convolution is called ``proj`` so that timm and VideoMAE
checkpoints load by name.
"""

from __future__ import annotations

import torch
from torch import nn


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


class PatchEmbed2d(nn.Module):
    """Split an image into non-overlapping patches and project each to ``embed_dim``.

    Args:
        img_size: input height/width.
        patch_size: patch height/width.
        in_chans: input channels.
        embed_dim: token width.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        **_: object,
    ) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, H/p * W/p, D)."""
        if x.ndim != 4:
            raise ValueError(f"image model expects input (B, C, H, W), got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"input size {tuple(x.shape[-2:])} does not match the model's img_size {self.img_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


class TubeletEmbed(nn.Module):
    """Split a clip into ``tubelet_size x patch x patch`` tubes and project each to ``embed_dim``.

    Token order is (t, h, w) flattened, time slowest, as in VideoMAE.

    Args:
        img_size: frame height/width.
        patch_size: spatial patch size.
        in_chans: input channels.
        embed_dim: token width.
        num_frames: frames per clip.
        tubelet_size: frames per tube.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        num_frames: int = 16,
        tubelet_size: int = 2,
    ) -> None:
        super().__init__()
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames={num_frames} is not a multiple of tubelet_size={tubelet_size}")
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.grid_size = (
            num_frames // tubelet_size,
            self.img_size[0] // self.patch_size[0],
            self.img_size[1] // self.patch_size[1],
        )
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        kernel = (tubelet_size, *self.patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T, H, W) -> (B, T/t * H/p * W/p, D)."""
        if x.ndim != 5:
            raise ValueError(f"video model expects input (B, C, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[2] != self.num_frames or tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"input (T, H, W)={tuple(x.shape[2:])} does not match the model's "
                f"num_frames={self.num_frames}, img_size={self.img_size}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)
