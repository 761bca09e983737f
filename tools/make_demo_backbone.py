"""Pre-train the demo's nano video backbone on the source task and write it as a checkpoint.

    python tools/make_demo_backbone.py [--out assets/demo_backbone_nano.safetensors] [-- overrides...]

Runs ``tools/train.py experiment=demo_pretrain`` (full training, diagonal motion), then keeps the
backbone of ``model_final.pth`` (no head) in fp16 safetensors: a ~1 MB stand-in for the VideoMAE
checkpoints that real runs start from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from video_sparse.engine.config import REPO_DIR as ROOT
from video_sparse.engine.config import compose_config, exit_on_user_error, parse_with_overrides


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "assets" / "demo_backbone_nano.safetensors"))
    parser.add_argument("--run-dir", default="outputs/demo_pretrain")
    args, overrides = parse_with_overrides(parser, argv)

    import torch
    from safetensors.torch import save

    from video_sparse.engine.finetune import run_training
    from video_sparse.safe_files import write_bytes

    run_training(compose_config(["experiment=demo_pretrain", f"output_dir={args.run_dir}", "resume=null", *overrides]))
    state = torch.load(Path(args.run_dir) / "model_final.pth", weights_only=True)["model"]
    backbone = {k: v.half().contiguous() for k, v in state.items() if not k.startswith("head.")}
    out = Path(args.out)
    metadata = {"source": "experiment=demo_pretrain", "model": "sparse_videomae_nano_patch16_64"}
    write_bytes(out, save(backbone, metadata=metadata))
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, "
        f"{sum(v.numel() for v in backbone.values()) / 1e6:.2f} M parameters)"
    )


if __name__ == "__main__":
    main()
