"""Image transforms: PIL image in, normalised float tensor ``(C, H, W)`` out.

- :func:`vtab_transform`: the VTAB-1K protocol of the parameter-efficient fine-tuning literature,
  a direct (aspect-changing) bicubic resize to ``size x size`` and normalisation, no augmentation,
  for training and test alike.
- :func:`train_transform`: for complete datasets (CIFAR-100, SVHN, Food-101): random resized crop,
  horizontal flip and optional RandAugment.
- :func:`eval_transform`: resize the shorter side to ``size / crop_pct``, centre crop ``size``.

Mean and std default to ``(0.5, 0.5, 0.5)``, the normalisation of the ViT-B/16 ImageNet-21k
checkpoint; pass :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` for backbones trained with those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import InterpolationMode, v2

__all__ = [
    "IN21K_MEAN",
    "IN21K_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "vtab_transform",
    "train_transform",
    "eval_transform",
]

IN21K_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
IN21K_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


def _interp(name: str) -> InterpolationMode:
    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {name!r}")
    return _INTERPOLATIONS[name]


def _to_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Callable]:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values with std > 0, got mean={mean}, std={std}")
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def vtab_transform(
    size: int = 224,
    mean: Sequence[float] = IN21K_MEAN,
    std: Sequence[float] = IN21K_STD,
    interpolation: str = "bicubic",
) -> v2.Compose:
    """VTAB-1K transform: resize to ``size x size`` (bicubic), to tensor, normalise.

    Args:
        size: output side in pixels.
        mean: per-channel mean subtracted after scaling to ``[0, 1]``.
        std: per-channel std.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.

    Returns:
        A callable mapping an RGB PIL image to a ``(3, size, size)`` float tensor.
    """
    return v2.Compose(
        [v2.Resize((size, size), interpolation=_interp(interpolation), antialias=True)] + _to_tensor(mean, std)
    )


def train_transform(
    size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    rand_augment: bool = False,
    rand_augment_ops: int = 2,
    rand_augment_magnitude: int = 9,
    mean: Sequence[float] = IN21K_MEAN,
    std: Sequence[float] = IN21K_STD,
    interpolation: str = "bicubic",
) -> v2.Compose:
    """Training transform for complete datasets.

    Args:
        size: output side in pixels.
        scale: area range of :class:`RandomResizedCrop`.
        hflip: probability of a horizontal flip (use 0 for digits, e.g. SVHN).
        rand_augment: apply RandAugment after the crop and flip.
        rand_augment_ops: number of RandAugment operations.
        rand_augment_magnitude: RandAugment magnitude (0-30).
        mean: normalisation mean.
        std: normalisation std.
        interpolation: resize interpolation.

    Returns:
        A callable mapping an RGB PIL image to a ``(3, size, size)`` float tensor.
    """
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip must be a probability, got {hflip}")
    steps: list[Callable] = [
        v2.RandomResizedCrop(size, scale=scale, interpolation=_interp(interpolation), antialias=True)
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if rand_augment:
        steps.append(
            v2.RandAugment(
                num_ops=rand_augment_ops,
                magnitude=rand_augment_magnitude,
                interpolation=_interp(interpolation),
            )
        )
    return v2.Compose(steps + _to_tensor(mean, std))


def eval_transform(
    size: int = 224,
    crop_pct: float = 1.0,
    mean: Sequence[float] = IN21K_MEAN,
    std: Sequence[float] = IN21K_STD,
    interpolation: str = "bicubic",
) -> v2.Compose:
    """Test transform for complete datasets: resize the shorter side, centre crop.

    Args:
        size: output side in pixels.
        crop_pct: fraction of the resized image kept by the crop (the shorter side is resized to
            ``round(size / crop_pct)``); 1.0 keeps the whole shorter side.
        mean: normalisation mean.
        std: normalisation std.
        interpolation: resize interpolation.

    Returns:
        A callable mapping an RGB PIL image to a ``(3, size, size)`` float tensor.
    """
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must lie in (0, 1], got {crop_pct}")
    resize = int(round(size / crop_pct))
    return v2.Compose(
        [v2.Resize(resize, interpolation=_interp(interpolation), antialias=True), v2.CenterCrop(size)]
        + _to_tensor(mean, std)
    )
