"""What the static-tube filter removes from real clips, and what it saves.

For one clip (read from a file the way the test split reads it: dense sampling, the centre clip,
short side resized and centre-cropped, normalised), :func:`clip_report` gives the fraction of tubes
the filter removes before the network and the GMACs of one forward pass with and without it
(:func:`~video_sparse.analysis.flops.count_gmacs`, a forward that really drops the tubes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..data.clip_sampling import sample_indices
from ..data.readers import open_video
from ..data.video_transforms import video_transform
from ..layers.static_tubes import static_tube_keep
from .flops import count_gmacs

VIDEOMAE_MEAN = (0.485, 0.456, 0.406)
VIDEOMAE_STD = (0.229, 0.224, 0.225)


class ClipReport(NamedTuple):
    """The filter on one clip.

    Attributes:
        tubes: tubes of the clip (T' * gh * gw).
        kept: tubes that enter the network.
        removed: fraction of tubes removed before the network.
        gmacs: GMACs of the model without the filter.
        gmacs_filtered: GMACs with the filter.
    """

    tubes: int
    kept: int
    removed: float
    gmacs: float
    gmacs_filtered: float


def load_clip(
    path: str | os.PathLike,
    num_frames: int = 16,
    frame_interval: int = 4,
    size: int = 224,
    mean: Sequence[float] = VIDEOMAE_MEAN,
    std: Sequence[float] = VIDEOMAE_STD,
    backend: str = "auto",
) -> torch.Tensor:
    """The centre test clip of a video file, as the model sees it: (1, 3, num_frames, size, size).

    Frame positions follow the dense sampler of the test split (``frame_interval`` apart, repeated
    at the end of a short video); frames are resized (short side ``size``), centre-cropped and
    normalised with ``mean``/``std``.

    Raises:
        VideoReadError: the file cannot be read.
    """
    with open_video(path, backend) as reader:
        indices = sample_indices("dense", reader.num_frames, num_frames, frame_interval, "val")
        frames = reader.get_frames(indices)
    transform = video_transform("val", input_size=size, short_side_size=size, num_crops=1, mean=mean, std=std)
    return transform(frames).unsqueeze(0)


def removed_fraction(model: nn.Module, x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Fraction of the tubes of each clip that ``threshold`` removes: (B,) float32."""
    embed = model.patch_embed
    keep = static_tube_keep(x, threshold, embed.tubelet_size, embed.patch_size)
    return 1.0 - keep.float().mean(dim=1)


def clip_report(model: nn.Module, x: torch.Tensor, threshold: float) -> ClipReport:
    """Tubes removed and GMACs with and without the filter for one clip ``x`` (1, 3, T, H, W)."""
    if x.shape[0] != 1:
        raise ValueError(f"clip_report takes one clip, got a batch of {x.shape[0]}")
    embed = model.patch_embed
    keep = static_tube_keep(x, threshold, embed.tubelet_size, embed.patch_size)
    plain = count_gmacs(model, x, static_tubes=0.0).gmacs
    filtered = count_gmacs(model, x, static_tubes=threshold).gmacs
    tubes, kept = keep.shape[1], int(keep.sum())
    return ClipReport(tubes, kept, 1.0 - kept / tubes, plain, filtered)
