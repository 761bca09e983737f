"""Pictures of the tokens each sparsifying layer kept: dropped patches are dimmed.

A ``SparseViT`` called with ``return_kept=True`` reports, per dropping layer, the original patch
indices it kept (time-major ``t, h, w`` for video; -1 for a kept fused token). Here they become
boolean patch masks and then images: one panel for the input and one per dropping layer, side by
side (a PNG for an image; one such strip per frame for a video, each frame showing the tokens of
its 2-frame tube, saved as an animated GIF or an MP4).

With the static-tube filter (``static_tubes``), tubes removed before the network are tinted blue
(:data:`STATIC_TINT`) and tubes removed by attention are dimmed, so the two are told apart; a panel
"static filter" shows what entered the first block.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ..safe_files import ensure_dir, write_with

DIM = 0.22  # brightness of dropped patches
STATIC_TINT = (40, 90, 230)  # colour blended into tubes removed before the network
STATIC_BLEND = 0.65  # weight of the tint
_CAPTION_H = 16
_GAP = 4


class KeptTokens(NamedTuple):
    """Which patches survive each dropping layer of one sample.

    Attributes:
        masks: (L, *grid) bool, True where the original patch is still a token of its own after
            dropping layer l (grid is (H/p, W/p) for images, (T/t, H/p, W/p) for videos).
        layers: the 0-based block index of each dropping layer.
        fused: per layer, whether a fused token was kept too.
        logits: (num_classes,) the model's output for the sample.
        static: (T/t, H/p, W/p) bool, True where the tube entered the network (the static-tube
            filter removed the others); None without the filter.
    """

    masks: np.ndarray
    layers: list[int]
    fused: list[bool]
    logits: torch.Tensor
    static: np.ndarray | None = None


def center_crop(image: Image.Image, size: int | tuple[int, int]) -> np.ndarray:
    """Resize the shorter side to fit ``size`` (bicubic) and crop the centre: (H, W, 3) uint8."""
    height, width = (size, size) if isinstance(size, int) else size
    scale = max(height / image.height, width / image.width)
    resized = image.convert("RGB").resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))), Image.BICUBIC
    )
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return np.asarray(resized.crop((left, top, left + width, top + height)))


def to_model_input(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalise uint8 pixels for the model.

    Args:
        pixels: (H, W, 3) image or (T, H, W, 3) frames, uint8.
        mean, std: per-channel normalisation of the backbone.

    Returns:
        (1, 3, H, W) or (1, 3, T, H, W) float32.
    """
    x = torch.from_numpy(np.array(pixels, dtype=np.float32)).div(255)
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    x = x.permute(2, 0, 1) if x.ndim == 3 else x.permute(3, 0, 1, 2)
    return x.unsqueeze(0)


def kept_masks(kept: Sequence[torch.Tensor], num_patches: int) -> torch.Tensor:
    """Turn kept indices into masks.

    Args:
        kept: per dropping layer, (B, K_l) original patch indices (-1 = fused token, -2 = padding).
        num_patches: patches of the input.

    Returns:
        (L, B, num_patches) bool; True where the patch is kept as itself.
    """
    if not kept:
        return torch.zeros(0, 0, num_patches, dtype=torch.bool)
    batch = kept[0].shape[0]
    masks = torch.zeros(len(kept), batch, num_patches + 1, dtype=torch.bool)
    for layer, ids in enumerate(kept):
        if ids.numel() and int(ids.max()) >= num_patches:
            raise ValueError(f"kept index {int(ids.max())} out of range for {num_patches} patches")
        slots = torch.where(ids < 0, num_patches, ids).cpu()  # the fused token goes to a spare slot
        masks[layer].scatter_(1, slots, True)
    return masks[..., :num_patches]


def dropping_layers(model: nn.Module, keep_rate: float | None = None) -> list[int]:
    """Block indices where ``model`` drops tokens at ``keep_rate`` (its own when None)."""
    return [i for i, (n_attn, n_mlp) in enumerate(model.tokens_per_block(keep_rate)) if n_mlp < n_attn]


@torch.no_grad()
def compute_kept_tokens(
    model: nn.Module, x: torch.Tensor, keep_rate: float | None = None, static_tubes: float | None = None
) -> KeptTokens:
    """Run ``model`` on one sample and collect its kept-token masks.

    Args:
        model: a ``SparseViT``.
        x: (1, C, H, W) image or (1, C, T, H, W) clip, normalised as the model expects.
        keep_rate: override of the model's keep rate.
        static_tubes: override of the model's static-tube threshold (0: off).
    """
    if x.shape[0] != 1:
        raise ValueError(f"compute_kept_tokens takes one sample, got a batch of {x.shape[0]}")
    was_training = model.training
    model.eval()
    kwargs = {} if static_tubes is None else {"static_tubes": static_tubes}
    try:
        logits, kept = model(x, return_kept=True, keep_rate=keep_rate, **kwargs)
    finally:
        model.train(was_training)
    grid = tuple(model.patch_embed.grid_size)
    num_patches = int(np.prod(grid))
    threshold = getattr(model, "static_tubes", None) if static_tubes is None else static_tubes
    static = None
    if threshold:  # the filter's entry comes first: the tubes that entered the network
        static = kept_masks(kept[:1], num_patches)[0, 0].reshape(grid).numpy()
        kept = kept[1:]
    layers = dropping_layers(model, keep_rate)
    if len(layers) != len(kept):  # a clip too short after the filter to drop at every sparsifying layer
        layers = layers[: len(kept)]
    masks = kept_masks(kept, num_patches)[:, 0].reshape(len(kept), *grid).numpy()
    fused = [bool((ids[0] == -1).any()) for ids in kept]
    return KeptTokens(masks, layers, fused, logits[0], static)


def dim_dropped(image: np.ndarray, mask: np.ndarray, dim: float = DIM, static: np.ndarray | None = None) -> np.ndarray:
    """Darken the patches of ``image`` where ``mask`` is False; tint those ``static`` removed.

    Args:
        image: (H, W, 3) uint8.
        mask: (gh, gw) bool patch grid; H and W must be multiples of gh and gw.
        dim: brightness factor of dropped patches.
        static: (gh, gw) bool, False where the static-tube filter removed the tube before the
            network: drawn blended with :data:`STATIC_TINT` instead of dimmed; None: no filter.

    Returns:
        (H, W, 3) uint8.
    """
    height, width = image.shape[:2]
    gh, gw = mask.shape
    if height % gh or width % gw:
        raise ValueError(f"image {height}x{width} is not a whole number of {gh}x{gw} patches")

    def per_pixel(grid: np.ndarray) -> np.ndarray:
        return grid.repeat(height // gh, axis=0).repeat(width // gw, axis=1)[..., None]

    pixels = image.astype(np.float32) * per_pixel(np.where(mask, 1.0, dim))
    if static is not None:
        if static.shape != mask.shape:
            raise ValueError(f"static mask {static.shape} does not match the patch grid {mask.shape}")
        tinted = (1 - STATIC_BLEND) * image.astype(np.float32) + STATIC_BLEND * np.array(STATIC_TINT, np.float32)
        pixels = np.where(per_pixel(static), pixels, tinted)
    return pixels.round().astype(np.uint8)


def panel_strip(panels: Sequence[np.ndarray], captions: Sequence[str], scale: int = 1) -> Image.Image:
    """Lay out equally sized (H, W, 3) uint8 panels in a row, each under a one-line caption."""
    if len(panels) != len(captions):
        raise ValueError(f"{len(panels)} panels but {len(captions)} captions")
    height, width = panels[0].shape[0] * scale, panels[0].shape[1] * scale
    canvas = Image.new("RGB", (len(panels) * (width + _GAP) - _GAP, height + _CAPTION_H), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, caption) in enumerate(zip(panels, captions)):
        tile = Image.fromarray(panel)
        if scale != 1:
            tile = tile.resize((width, height), Image.NEAREST)
        x = i * (width + _GAP)
        canvas.paste(tile, (x, _CAPTION_H))
        draw.text((x + 2, 2), caption, fill="black")
    return canvas


def _captions(tokens: KeptTokens, masks: np.ndarray) -> list[str]:
    total = masks[0].size
    return ["input"] + [
        f"block {layer}: {int(m.sum())}/{total}{' +fused' if fused else ''}"
        for layer, m, fused in zip(tokens.layers, masks, tokens.fused)
    ]


def render_image(image: np.ndarray, tokens: KeptTokens, scale: int = 1, dim: float = DIM) -> Image.Image:
    """The input and one dimmed copy per dropping layer.

    Args:
        image: (H, W, 3) uint8, the picture the model saw (after resizing and cropping).
        tokens: :func:`compute_kept_tokens` of an image model.
        scale: integer upscaling of every panel (for small inputs).
        dim: brightness of dropped patches.
    """
    if tokens.masks.ndim != 3:
        raise ValueError(f"image masks must be (L, gh, gw), got shape {tokens.masks.shape}")
    panels = [image] + [dim_dropped(image, m, dim) for m in tokens.masks]
    return panel_strip(panels, _captions(tokens, tokens.masks), scale)


def render_video(frames: np.ndarray, tokens: KeptTokens, scale: int = 1, dim: float = DIM) -> list[Image.Image]:
    """One strip per frame; frame ``f`` shows the masks of its tube ``f // tubelet``.

    Args:
        frames: (T, H, W, 3) uint8, the frames the model saw.
        tokens: :func:`compute_kept_tokens` of a video model; masks (L, T/t, gh, gw).
        scale: integer upscaling of every panel.
        dim: brightness of dropped patches.
    """
    if tokens.masks.ndim != 4:
        raise ValueError(f"video masks must be (L, T', gh, gw), got shape {tokens.masks.shape}")
    num_tubes = tokens.masks.shape[1] if tokens.static is None else tokens.static.shape[0]
    if len(frames) % num_tubes:
        raise ValueError(f"{len(frames)} frames do not split into {num_tubes} tubes")
    tubelet = len(frames) // num_tubes
    strips = []
    for f, frame in enumerate(frames):
        t = f // tubelet
        tube = tokens.masks[:, t]
        static = None if tokens.static is None else tokens.static[t]
        panels = [frame] + [dim_dropped(frame, m, dim, static) for m in tube]
        captions = _captions(tokens, tube)
        captions[0] = f"frame {f + 1}/{len(frames)}"
        if static is not None:  # what entered the first block
            panels.insert(1, dim_dropped(frame, static, dim, static))
            captions.insert(1, f"static filter: {int(static.sum())}/{static.size}")
        strips.append(panel_strip(panels, captions, scale))
    return strips


def contact_sheet(strips: Sequence[Image.Image]) -> Image.Image:
    """Stack strips vertically (e.g. one frame per tube of a video) into one picture."""
    sheet = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)), "white")
    top = 0
    for strip in strips:
        sheet.paste(strip, (0, top))
        top += strip.height
    return sheet


def save_animation(strips: Sequence[Image.Image], path: str | os.PathLike, fps: float = 4.0) -> Path:
    """Save frames as an animated GIF (Pillow) or, for ``.mp4``, an H.264 video (PyAV)."""
    path = Path(path)
    ensure_dir(path.parent)
    if path.suffix.lower() == ".gif":
        write_with(
            path,
            lambda f: strips[0].save(
                f, format="GIF", save_all=True, append_images=list(strips[1:]), duration=round(1000 / fps), loop=0
            ),
        )
    elif path.suffix.lower() == ".mp4":
        from ..data.demo import write_video

        frames = np.stack([np.asarray(s) for s in strips])
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2  # yuv420p needs even sizes
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=255)
        write_video(path, frames, fps=max(1, round(fps)))
    else:
        raise ValueError(f"{path}: animations are written as .gif or .mp4")
    return path
