"""Multi-view test of trained weights (adapter-only file + backbone, or a full state dict).

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
    from video_sparse.engine.testing import NothingScoredError, run_test

    prepare_run(cfg, "test")  # paths, checkpoint fit and lists checked before any expensive step
    is_main = int(os.environ.get("RANK", "0")) == 0
    try:
        run_test(cfg)
    except NothingScoredError as err:  # the summary is written; say so and fail the command
        if is_main:
            print(outputs_line(cfg.output_dir))
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    if is_main:
        print(outputs_line(cfg.output_dir))


if __name__ == "__main__":
    prepare_hydra_argv("test")  # paths with ~ or spaces; a mistyped key named with a suggestion
    main()
