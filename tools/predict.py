"""Classify your own videos (files, folders, frame folders, list files) or images with a trained model.

    python tools/predict.py clip.mp4 my_videos/ --experiment demo --checkpoint outputs/demo/adapter.pth
    python tools/predict.py list.txt --experiment outputs/k400_videomae_base/config.yaml \\
        --checkpoint outputs/k400_videomae_base/adapter.pth --pretrained /w/videomae_b_pt.pth -- data.test_num_clips=2

The experiment's test views (clips x crops) are merged as in testing (``--single-view``: one centred
view). Prints the top-k classes per input and writes ``predictions.json`` and ``predictions.csv`` to
``--out``; ``--kept-tokens`` also draws the kept tokens of each input (GIF for videos, PNG for
images). An input that cannot be read is reported with its reason; the others go on. Exit status: 0
when every input was classified, 1 when any failed, 2 on a configuration or checkpoint error.
Hydra overrides of the experiment follow ``--``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from video_sparse.engine.config import parse_with_overrides

logger = logging.getLogger("predict")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video files, image files, folders, frame folders or list files")
    p.add_argument("--experiment", default="demo", help="experiment name (configs/experiment/) or a run's config.yaml")
    p.add_argument("--checkpoint", help="adapter-only file or full state dict (default: the config's checkpoint)")
    p.add_argument("--pretrained", help="backbone weights (default: the config's pretrained)")
    p.add_argument("--labels", help="label-map file (one class name per line) overriding the config's")
    p.add_argument("--root", help="folder that the entries of list files are relative to (default: the list's)")
    p.add_argument("--out", default="outputs/predict", help="folder for predictions.json/.csv and pictures")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--single-view", action="store_true", help="one centred view instead of the test views")
    p.add_argument("--batch-size", type=int, help="views per batch (default: the config's data.batch_size)")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default: the config's, auto)")
    p.add_argument("--precision", default=None, help="auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16")
    p.add_argument("--kept-tokens", action="store_true", help="draw the kept tokens of each input")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_with_overrides(build_parser(), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from hydra.errors import HydraException

    from video_sparse.checkpoint import CheckpointError
    from video_sparse.errors import ConfigError
    from video_sparse.inference import VideoClassifier, write_predictions
    from video_sparse.inference.outputs import save_kept_tokens

    try:
        classifier = VideoClassifier.from_experiment(
            args.experiment,
            args.checkpoint,
            args.pretrained,
            overrides,
            labels=args.labels,
            device=args.device,
            precision=args.precision,
        )
    except (ConfigError, CheckpointError, HydraException, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    predictions = classifier.predict(
        args.inputs,
        topk=args.topk,
        single_view=args.single_view,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        progress=not args.quiet,
        root=args.root,
    )
    json_path, csv_path = write_predictions(predictions, args.out)
    items = [(p.path, p.kind) for p in predictions]
    for index, p in enumerate(predictions):
        if not p.ok:
            print(f"{p.path}: FAILED: {p.error}")
            continue
        print(f"{p.path}: " + ", ".join(f"{name} {prob:.3f}" for name, prob in p.topk))
        if args.kept_tokens:
            from video_sparse.inference import InputItem

            picture = save_kept_tokens(
                classifier, index, [InputItem(*i) for i in items], Path(args.out) / "kept_tokens"
            )
            logger.info("kept tokens of %s: %s", p.path, picture)
    failed = sum(not p.ok for p in predictions)
    print(
        f"{len(predictions) - failed}/{len(predictions)} inputs classified, {failed} failed; "
        f"results in {json_path} and {csv_path}"
    )
    return 1 if failed or not predictions else 0


if __name__ == "__main__":
    sys.exit(main())
