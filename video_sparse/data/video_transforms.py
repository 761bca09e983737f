"""Spatial transforms for video clips, built on ``torchvision.transforms.v2``.

Input: uint8 frames ``(T, H, W, 3)`` (numpy or torch) from a reader. Output: float32
``(C, T, H, W)`` normalised with the checkpoint's mean/std, as video ViTs expect. The same
random crop, flip and RandAugment operations are applied to every frame of a clip (they act
on a ``tv_tensors.Video``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("train", "val", "test")


class VideoTransform(Protocol):
    """uint8 frames ``(T, H, W, 3)`` -> float32 clip ``(C, T, H, W)``; ``crop_index`` picks one of
    ``num_crops`` spatial crops (evaluation; training transforms have ``num_crops == 1``)."""

    num_crops: int

    def __call__(self, frames: np.ndarray | torch.Tensor, crop_index: int = 0) -> torch.Tensor: ...


def _to_video(frames: np.ndarray | torch.Tensor) -> tv_tensors.Video:
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {tuple(x.shape)} {x.dtype}")
    return tv_tensors.Video(x.permute(0, 3, 1, 2))


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values each, got {mean} and {std}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {std}")
    return (
        torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1),
        torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1),
    )


def normalize_clip(video: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, C, H, W)`` -> float32 ``(C, T, H, W)``, scaled to [0, 1] then normalised."""
    x = video.as_subclass(torch.Tensor).permute(1, 0, 2, 3).float().div_(255.0)
    return x.sub_(mean).div_(std)


class VideoTrainTransform:
    """Training augmentation: random resized crop, optional flip and RandAugment, normalisation.

    Args:
        input_size: output side length.
        min_scale, max_scale: range of the crop area as a fraction of the frame area
            (``min_scale = max_scale = 1`` with ratio 1 keeps the whole frame: a plain resize).
        min_ratio, max_ratio: range of the crop aspect ratio (width / height).
        hflip: random horizontal flip with probability 0.5 (keep off where left/right matters).
        randaugment: apply ``v2.RandAugment(randaugment_ops, randaugment_magnitude)``.
        mean, std: per-channel normalisation statistics of the checkpoint (0-1 scale).
    """

    def __init__(
        self,
        input_size: int = 224,
        min_scale: float = 0.08,
        max_scale: float = 1.0,
        min_ratio: float = 3 / 4,
        max_ratio: float = 4 / 3,
        hflip: bool = True,
        randaugment: bool = False,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 9,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
        if not 0 < min_ratio <= max_ratio:
            raise ValueError(f"need 0 < min_ratio <= max_ratio, got {min_ratio}, {max_ratio}")
        ops: list = [
            v2.RandomResizedCrop(input_size, scale=(min_scale, max_scale), ratio=(min_ratio, max_ratio), antialias=True)
        ]
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
        if randaugment:
            ops.append(v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment_magnitude))
        self.ops = v2.Compose(ops)
        self.mean, self.std = _check_stats(mean, std)
        self.num_crops = 1
        self.hflip = bool(hflip)

    def __call__(self, frames: np.ndarray | torch.Tensor, crop_index: int = 0) -> torch.Tensor:
        """Augment ``(T, H, W, 3)`` uint8 frames into a normalised ``(C, T, H, W)`` float32 clip
        (``crop_index`` is accepted for a common signature; the crop is random)."""
        return normalize_clip(self.ops(_to_video(frames)), self.mean, self.std)


def crop_offsets(length: int, size: int, num_crops: int) -> list[int]:
    """Start offsets of ``num_crops`` crops of ``size`` spread evenly over ``length`` (centre for 1)."""
    if size > length:
        raise ValueError(f"crop size {size} larger than the frame side {length}")
    room = length - size
    if num_crops == 1:
        return [room // 2]
    return [int(round(k * room / (num_crops - 1))) for k in range(num_crops)]


class VideoEvalTransform:
    """Evaluation transform: resize the short side, take spatial crop ``crop_index``, normalise.

    With ``num_crops == 1`` the crop is centred; with more, crops are spread evenly along the
    long side (3 crops: start, centre, end) and centred along the short side.

    Args:
        input_size: crop side length.
        short_side_size: short side after resizing (>= ``input_size``).
        num_crops: number of spatial crops per clip.
        mean, std: normalisation statistics.
    """

    def __init__(
        self,
        input_size: int = 224,
        short_side_size: int = 256,
        num_crops: int = 1,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        if short_side_size < input_size:
            raise ValueError(f"short_side_size {short_side_size} < input_size {input_size}")
        if num_crops <= 0:
            raise ValueError(f"num_crops must be positive, got {num_crops}")
        self.input_size = input_size
        self.short_side_size = short_side_size
        self.num_crops = num_crops
        self.mean, self.std = _check_stats(mean, std)

    def __call__(self, frames: np.ndarray | torch.Tensor, crop_index: int = 0) -> torch.Tensor:
        """Crop ``crop_index`` of ``(T, H, W, 3)`` uint8 frames -> ``(C, T, S, S)`` float32."""
        if not 0 <= crop_index < self.num_crops:
            raise ValueError(f"crop_index {crop_index} out of range for num_crops={self.num_crops}")
        video = _to_video(frames)
        h, w = video.shape[-2:]
        if min(h, w) != self.short_side_size:
            video = TF.resize(video, [self.short_side_size], antialias=True)
            h, w = video.shape[-2:]
        s = self.input_size
        if w >= h:
            top, left = (h - s) // 2, crop_offsets(w, s, self.num_crops)[crop_index]
        else:
            top, left = crop_offsets(h, s, self.num_crops)[crop_index], (w - s) // 2
        video = TF.crop(video, top, left, s, s)
        return normalize_clip(video, self.mean, self.std)


def video_transform(
    mode: str,
    *,
    input_size: int = 224,
    short_side_size: int = 256,
    num_crops: int = 3,
    hflip: bool = True,
    randaugment: bool = False,
    randaugment_ops: int = 2,
    randaugment_magnitude: int = 9,
    min_scale: float = 0.08,
    max_scale: float = 1.0,
    min_ratio: float = 3 / 4,
    max_ratio: float = 4 / 3,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> VideoTransform:
    """The transform of one split: augmentation for ``"train"``, one centred crop for ``"val"``,
    ``num_crops`` crops for ``"test"`` (the augmentation arguments act in training only).

    Raises:
        ValueError: an unknown mode or an invalid argument (see the transform classes).
    """
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if mode == "train":
        return VideoTrainTransform(
            input_size,
            min_scale,
            max_scale,
            min_ratio,
            max_ratio,
            hflip,
            randaugment,
            randaugment_ops,
            randaugment_magnitude,
            mean,
            std,
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return VideoEvalTransform(input_size, short_side_size, num_crops if mode == "test" else 1, mean, std)
