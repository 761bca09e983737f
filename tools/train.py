"""Fine-tune with Sparse-Tuning. With no arguments it runs the built-in CPU demo.

    python tools/train.py                                       # demo: tiny video model, demo clips
    python tools/train.py experiment=k400_videomae_base data.root=/data/k400 pretrained=/w/vit_b_pt.pth
    torchrun --nproc_per_node 8 tools/train.py experiment=...   # or tools/dist_train.sh
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from video_sparse.engine.config import CONFIG_DIR, exit_on_user_error  # noqa: E402


@hydra.main(version_base=None, config_path=str(CONFIG_DIR), config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from video_sparse.engine.finetune import FinetuneRecipe
    from video_sparse.engine.preflight import prepare_run
    from video_sparse.engine.run_lock import RunLockedError

    prepare_run(cfg, "train")  # paths, defaults and cheap checks before any expensive step
    recipe = FinetuneRecipe(cfg)
    try:
        recipe.setup()
    except RunLockedError as err:  # another live run writes to output_dir
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    recipe.train()
    # adapter.pth is written last (atomically): without it a kill cut the test or the export short, so redo both
    tested_before = recipe.already_complete and all((recipe.output_dir / name).is_file()
                                                    for name in ("results.json", "adapter.pth"))
    if recipe.finished and not tested_before:
        recipe.test()
        recipe.export_adapters()
    recipe.cleanup()


if __name__ == "__main__":
    main()
