"""Compare the video importance policies (mean_query proxy vs exact mean_attn) in one run.

    python tools/compare_scores.py                      # demo model + demo test clips, then ViT-B timing
    python tools/compare_scores.py --model sparse_videomae_base_patch16_224 --checkpoint /w/videomae.pth

Prints the overlap of kept tokens with the exact policy per dropping layer and the forward-time
ratio; the demo accuracies of both policies come from two demo runs (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import timm
import torch

from video_sparse.analysis.score_policies import selection_agreement, time_policies
from video_sparse.engine.config import REPO_DIR as ROOT


def _demo_clips(count: int) -> torch.Tensor:
    from video_sparse.data.demo import make_demo_dataset
    from video_sparse.data.video_dataset import build_video_dataset

    lists = make_demo_dataset(ROOT / "demo_data", num_train=480, num_val=96, num_test=96)
    ds = build_video_dataset(
        ROOT / "demo_data",
        lists["test"],
        mode="val",
        backend="pyav",
        num_frames=16,
        frame_interval=1,
        input_size=64,
        short_side_size=64,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    return torch.stack([ds[i]["input"] for i in range(min(count, len(ds)))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sparse_videomae_nano_patch16_64")
    parser.add_argument("--checkpoint", default=str(ROOT / "assets" / "demo_backbone_nano.safetensors"))
    parser.add_argument(
        "--adapter",
        default=str(ROOT / "outputs" / "demo" / "adapter.pth"),
        help="adapter-only weights to load on top (skipped when missing)",
    )
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--timing-model", default="sparse_videomae_base_patch16_224")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    model = timm.create_model(args.model, num_classes=4, checkpoint=args.checkpoint).eval()
    if Path(args.adapter).is_file():
        from video_sparse.checkpoint import load_adapter_checkpoint

        load_adapter_checkpoint(model, args.adapter)
    clips = _demo_clips(args.clips)
    agreement = selection_agreement(model, clips, "mean_query")
    print(
        f"kept-token overlap of mean_query with exact mean_attn ({args.model}, {len(clips)} clips): "
        + ", ".join(f"layer {i + 1}: {100 * a:.1f}%" for i, a in enumerate(agreement))
    )

    big = timm.create_model(args.timing_model, num_classes=400).eval()
    x = torch.randn(1, 3, big.num_frames, *big.patch_embed.img_size)
    times = time_policies(big, x, ["mean_query", "mean_attn"], repeats=args.repeats)
    print(
        f"{args.timing_model} forward, batch 1, {torch.get_num_threads()} threads: "
        + ", ".join(f"{k} {v:.3f} s" for k, v in times.items())
        + f"; mean_attn / mean_query time = {times['mean_attn'] / times['mean_query']:.3f}"
    )


if __name__ == "__main__":
    main()
