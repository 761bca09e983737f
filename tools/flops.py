"""Print dense vs Sparse-Tuning GMACs (the papers' "GFLOPs") for registered models.

    python tools/flops.py                                   # ViT-B/16 image and VideoMAE ViT-B video
    python tools/flops.py --model sparse_videomae_base_patch16_224 --keep-rate 0.5 --arg num_frames=8
    python tools/flops.py --large --device cuda                # ViT-L/H image, VideoMAE ViT-L/H, V2 ViT-g

Every figure is counted from a real forward pass (tokens really dropped). ``--device meta`` runs the
same forward on shape-only tensors: the same counts without computing (or allocating) anything,
for when a full-size forward does not fit the machine.
"""

from __future__ import annotations

import argparse
import ast
import logging

import timm
import torch

from video_sparse.adapters import count_parameters, set_trainable
from video_sparse.analysis.flops import count_gmacs, input_shape_of
from video_sparse.models.vit import LARGE_VARIANTS

DEFAULT_MODELS = ("sparse_vit_base_patch16_224", "sparse_videomae_base_patch16_224")


def _parse_arg(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--arg expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="registered model name (repeatable)")
    parser.add_argument("--keep-rate", type=float, default=None, help="override the keep rate")
    parser.add_argument(
        "--arg", action="append", type=_parse_arg, default=[], help="extra constructor argument KEY=VALUE (repeatable)"
    )
    parser.add_argument("--large", action="store_true", help="count the large variants (ViT-L/H/g)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or meta (shape-only forward, same counts)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    rows = []
    for name in (args.model or []) + (list(LARGE_VARIANTS) if args.large else []) or list(DEFAULT_MODELS):
        kwargs = dict(args.arg)
        if args.keep_rate is not None:
            kwargs["keep_rate"] = args.keep_rate
        with device:
            model = timm.create_model(name, **kwargs).eval()
            set_trainable(model)  # trainable as in training: the add-ons when there are adapters
            inputs = torch.zeros(input_shape_of(model))
            dense = count_gmacs(model, inputs, keep_rate=1.0).gmacs
            sparse = count_gmacs(model, inputs).gmacs
            trainable, _ = count_parameters(model)
            for block in model.blocks:  # the backbone alone: the same weights without adapters
                block.adapter = None
            model.dense_connections = False
            backbone = count_gmacs(model, inputs, keep_rate=1.0).gmacs
        rows.append(
            (
                name,
                model.keep_rate,
                tuple(model.sparse_layers),
                backbone,
                dense,
                sparse,
                sparse / dense,
                trainable / 1e6,
            )
        )
        del model, inputs
    header = (
        "model",
        "keep",
        "layers",
        "backbone GMACs",
        "dense+adapter GMACs",
        "sparse GMACs",
        "sparse/dense",
        "trainable M",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, keep, layers, backbone, dense, sparse, ratio, trainable in rows:
        print(
            f"| {name} | {keep} | {layers} | {backbone:.2f} | {dense:.2f} | {sparse:.2f} | {ratio:.3f} "
            f"| {trainable:.2f} |"
        )


if __name__ == "__main__":
    main()
