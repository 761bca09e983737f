"""Draw which tokens each sparsifying layer kept (dropped patches dimmed).

    python tools/visualize.py --model sparse_vit_base_patch16_224 --backbone vit_b16.npz \\
        --checkpoint out/adapters.pth --input cat.jpg --out kept.png
    python tools/visualize.py --checkpoint out/model_final.pth --input clip.mp4 --out kept.gif
    python tools/visualize.py --model sparse_videomae_base_patch16_224 --random-weights --input clip.mp4 --out kept.mp4

An image gives a PNG (input + one panel per dropping layer). A video gives an animated GIF or MP4
(one strip per frame, each showing the tokens of its 2-frame tube), or with --out *.png one strip
per tube stacked. An image model given a video uses the frame --frame (default: the middle one).
--checkpoint takes a full checkpoint ({"model": state_dict, "model_args": ...}, a timm/VideoMAE
file) or an adapter-only one (video_sparse.checkpoint.save_adapter_checkpoint); without --model
the model is rebuilt from the checkpoint's model_args. An adapter-only file needs --backbone: a picture
of a model with a random backbone (or no weights at all) is refused unless --random-weights asks for it
(it shows the mechanism, not what a trained model attends to).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import timm
from PIL import Image, UnidentifiedImageError
from torch import nn

from video_sparse.analysis.token_maps import (
    center_crop,
    compute_kept_tokens,
    contact_sheet,
    render_image,
    render_video,
    save_animation,
    to_model_input,
)
from video_sparse.checkpoint import is_adapter_checkpoint, load_adapter_checkpoint, load_pretrained, read_checkpoint
from video_sparse.data.images import load_image
from video_sparse.data.readers import open_video
from video_sparse.engine.preflight import find_file
from video_sparse.models.vit import SparseViT
from video_sparse.safe_files import save_image

logger = logging.getLogger("visualize")

NORMS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "in21k": ((0.5,) * 3, (0.5,) * 3)}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _parse_arg(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--arg expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="image or video file")
    p.add_argument("--out", required=True, help=".png for images; .gif, .mp4 or .png (stacked) for videos")
    p.add_argument("--model", help="registered model name (default: from the checkpoint's model_args)")
    p.add_argument("--checkpoint", help="full or adapter-only checkpoint")
    p.add_argument("--backbone", help="pre-trained backbone loaded before --checkpoint (.npz/.pth/.safetensors/.onnx)")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="draw a model whose backbone (or every weight) is random: the mechanism only",
    )
    p.add_argument("--keep-rate", type=float, help="override the model's keep rate")
    p.add_argument(
        "--arg",
        action="append",
        type=_parse_arg,
        default=[],
        help="extra model constructor argument KEY=VALUE (repeatable)",
    )
    p.add_argument(
        "--norm",
        choices=("auto", *NORMS),
        default="auto",
        help="input normalisation; auto = the one saved in --checkpoint (training's data.mean/std), "
        "else in21k (0.5) for 16-px image models, else ImageNet",
    )
    p.add_argument(
        "--backend",
        choices=("pyav", "decord", "auto"),
        default="pyav",
        help="video decoder (default pyav: a sequential decode; auto: as data.backend=auto)",
    )
    p.add_argument("--frame", type=int, help="frame of a video fed to an image model (default: middle)")
    p.add_argument(
        "--stride",
        type=int,
        default=0,
        help="video: take every STRIDE-th frame from --start (default 0: spread over the video)",
    )
    p.add_argument("--start", type=int, default=0, help="video: first frame with --stride")
    p.add_argument("--scale", type=int, default=0, help="panel upscaling (default: to at least 160 px)")
    p.add_argument("--fps", type=float, default=4.0, help="animation frame rate")
    return p


def build_model(args: argparse.Namespace) -> nn.Module:
    """The model named by --model (or rebuilt from the checkpoint), with its weights loaded.

    Raises:
        SystemExit: no weights, or an adapter-only file without --backbone, unless --random-weights.
    """
    for option in ("checkpoint", "backbone"):
        if getattr(args, option):
            try:
                setattr(args, option, find_file(getattr(args, option), f"--{option}"))
            except FileNotFoundError as err:
                raise SystemExit(f"error: {err}") from None
    content = read_checkpoint(args.checkpoint)[0] if args.checkpoint else None
    adapter_only = args.checkpoint is not None and is_adapter_checkpoint(content)
    if not args.random_weights and not (args.checkpoint or args.backbone):
        raise SystemExit(
            "error: no --checkpoint or --backbone: every weight would be random; give the weights, "
            "or add --random-weights to draw the mechanism of an untrained model"
        )
    if not args.random_weights and adapter_only and not args.backbone:
        raise SystemExit(
            f"error: --checkpoint {args.checkpoint} holds adapters and head only; give the backbone they were "
            f"trained on with --backbone (e.g. the run's pretrained=), or add --random-weights"
        )
    stored_args = content.get("model_args") if isinstance(content, Mapping) else None
    overrides = dict(args.arg)
    if args.model:
        model = timm.create_model(args.model, **overrides)
    elif stored_args:
        known = inspect.signature(SparseViT).parameters
        stale = sorted(k for k in stored_args if k not in known)
        if stale:  # arguments of an older SparseViT (e.g. freeze_backbone): they do not change the network
            logger.info("ignoring stored model_args that SparseViT no longer takes: %s", ", ".join(stale))
        model = SparseViT(**{**{k: v for k, v in stored_args.items() if k in known}, **overrides})
        logger.info("model rebuilt from the model_args stored in %s", args.checkpoint)
    else:
        raise SystemExit("error: give --model (the checkpoint holds no model_args)")
    if args.backbone:
        load_pretrained(model, args.backbone)
    if adapter_only:
        load_adapter_checkpoint(model, args.checkpoint)
    elif args.checkpoint:
        load_pretrained(model, args.checkpoint, strict=not args.backbone)
    if args.random_weights and (adapter_only and not args.backbone or not (args.checkpoint or args.backbone)):
        logger.warning("--random-weights: the backbone is random; the kept tokens show the mechanism only")
    return model.eval()


def _norm(args: argparse.Namespace, model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if args.norm != "auto":
        return NORMS[args.norm]
    saved = read_checkpoint(args.checkpoint)[0] if args.checkpoint else None
    data = ((saved.get("extra") or {}).get("data") or {}) if is_adapter_checkpoint(saved) else {}
    if data.get("mean") and data.get("std"):
        return tuple(data["mean"]), tuple(data["std"])
    in21k = not model.is_video and tuple(model.patch_embed.patch_size) == (16, 16)
    return NORMS["in21k" if in21k else "imagenet"]


def _read_frames(path: str, indices_for, backend: str = "auto") -> np.ndarray:
    with open_video(path, backend) as reader:
        return reader.get_frames(indices_for(reader.num_frames))


def load_pixels(args: argparse.Namespace, model: nn.Module) -> np.ndarray:
    """(H, W, 3) or (T, H, W, 3) uint8 at the model's input size, centre-cropped."""
    size = tuple(model.patch_embed.img_size)
    path = Path(args.input)
    if not path.is_file():
        raise SystemExit(f"{path}: input file not found")
    is_image_file = path.suffix.lower() in IMAGE_SUFFIXES
    if model.is_video:
        if is_image_file:
            raise SystemExit(f"{path}: a video model needs a video file")
        num = model.num_frames

        def indices(total: int) -> list[int]:
            if args.stride > 0:
                return [min(total - 1, args.start + i * args.stride) for i in range(num)]
            return np.linspace(0, total - 1, num).round().astype(int).tolist()

        frames = _read_frames(str(path), indices, args.backend)
        return np.stack([center_crop(Image.fromarray(f), size) for f in frames])
    if is_image_file:
        try:
            return center_crop(load_image(path, min_side=max(size) if isinstance(size, tuple) else size), size)
        except UnidentifiedImageError as err:
            raise SystemExit(f"{path}: not a readable image ({err})") from err
    frame = _read_frames(str(path), lambda total: [total // 2 if args.frame is None else args.frame], args.backend)[0]
    return center_crop(Image.fromarray(frame), size)


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = build_model(args)
    pixels = load_pixels(args, model)
    mean, std = _norm(args, model)
    tokens = compute_kept_tokens(model, to_model_input(pixels, mean, std), args.keep_rate)
    if not tokens.layers:
        logger.warning("the model drops no tokens at this keep rate: only the input is drawn")
    for layer, mask in zip(tokens.layers, tokens.masks):
        logger.info("block %d keeps %d of %d patches", layer, int(mask.sum()), mask.size)
    scale = args.scale or max(1, -(-160 // pixels.shape[-2]))
    out = Path(args.out)
    if not model.is_video:
        save_image(render_image(pixels, tokens, scale), out)
    else:
        strips = render_video(pixels, tokens, scale)
        if out.suffix.lower() in (".gif", ".mp4"):
            save_animation(strips, out, args.fps)
        else:
            tubelet = len(pixels) // tokens.masks.shape[1]
            save_image(contact_sheet(strips[::tubelet]), out)
    logger.info("wrote %s", out)
    return out


if __name__ == "__main__":
    main()
