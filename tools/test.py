"""Multi-view test of trained weights (adapter-only file + backbone, or a full state dict).

Writes results.json, video_scores.csv, view_scores.npz, test.log and the config into output_dir
(default outputs/<name>/test) under a run lock; an output_dir that holds a training run gets a test/
subfolder instead, so the training's own records are never replaced.

python tools/test.py experiment=demo checkpoint=outputs/demo/adapter.pth
bash tools/dist_test.sh k400_videomae_base outputs/k400_videomae_base/adapter.pth 8 data.root=... pretrained=...
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from video_sparse.engine.config import CONFIG_DIR, exit_on_user_error, prepare_hydra_argv


@hydra.main(version_base=None, config_path=str(CONFIG_DIR), config_name="test")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from video_sparse.engine.logging_utils import outputs_line
    from video_sparse.engine.preflight import prepare_run
    from video_sparse.engine.run_lock import RunLockedError
    from video_sparse.engine.targets import check_targets
    from video_sparse.engine.testing import NonFiniteTestError, NothingScoredError, folder_for_test, run_test

    check_targets(cfg)  # a config is data: only the project's own targets, checked before anything runs
    prepare_run(cfg, "test")  # paths, checkpoint fit and lists checked before any expensive step
    is_main = int(os.environ.get("RANK", "0")) == 0
    folder = folder_for_test(cfg.output_dir)  # a training run's folder: results go to its test/ subfolder
    try:
        run_test(cfg)
    except (NothingScoredError, NonFiniteTestError) as err:  # the summary is written; say so and fail
        if is_main:
            print(outputs_line(folder))
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except RunLockedError as err:  # another live test writes into the same folder
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if is_main:
        print(outputs_line(folder))


if __name__ == "__main__":
    prepare_hydra_argv("test")  # paths with ~ or spaces; a mistyped key named with a suggestion
    main()
