"""Fine-tune with Sparse-Tuning. With no arguments it runs the built-in CPU demo.

python tools/train.py                                       # demo: tiny video model, demo clips
python tools/train.py experiment=k400_videomae_base data.root=/data/k400 pretrained=/w/vit_b_pt.pth
torchrun --nproc_per_node 8 tools/train.py experiment=...   # or tools/dist_train.sh
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from video_sparse.engine.config import CONFIG_DIR, exit_on_user_error, prepare_hydra_argv


@hydra.main(version_base=None, config_path=str(CONFIG_DIR), config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from video_sparse.engine.finetune import DivergedError, run_training
    from video_sparse.engine.logging_utils import outputs_line
    from video_sparse.engine.preemption import PREEMPTED_EXIT_CODE
    from video_sparse.engine.run_lock import RunLockedError
    from video_sparse.engine.targets import check_targets
    from video_sparse.evaluation.metrics import NonFiniteScoresError

    check_targets(cfg)  # a config is data: only the project's own targets, checked before anything runs
    try:
        recipe = run_training(cfg)
    except RunLockedError as err:  # another live run writes to output_dir
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (DivergedError, NonFiniteScoresError) as err:  # named in results.json; no metric is reported
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    if recipe.dist.is_main:
        print(outputs_line(recipe.output_dir))
    if recipe.preempted:  # a step checkpoint is saved: the same command continues from it
        sys.exit(PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
    prepare_hydra_argv("train")  # paths with ~ or spaces; a mistyped key named with a suggestion
    main()
