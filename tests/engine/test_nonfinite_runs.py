"""A diverged model fails its run loudly, named in results.json: never a 100 % accuracy.

Tiny in-process training (nano ViT, digit images) and tools/test.py in a subprocess.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recipe_helpers import subprocess_env, tiny_cfg, tiny_overrides

from video_sparse.engine import checkpointing
from video_sparse.engine.finetune import DivergedError, FinetuneRecipe, run_training
from video_sparse.evaluation.metrics import NonFiniteScoresError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_tools_test_exits_non_zero_on_non_finite_scores(tmp_path, digits_root, bad):
    """Every head weight NaN (every score NaN), or one class's bias +inf (softmax of inf is NaN)."""
    from video_sparse.engine.builders import build_model

    cfg = tiny_cfg(digits_root, tmp_path / "unused")
    model = build_model(cfg.model, cfg.sparsity, cfg.pretrained, cfg.train.freeze_backbone)
    with torch.no_grad():
        if bad == "nan":
            model.head.weight.fill_(float("nan"))
        else:
            model.head.bias[3] = float("inf")
    weights = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict()}, weights)
    out = tmp_path / "test"
    overrides = [*tiny_overrides(digits_root, tmp_path / "unused"), f"checkpoint={weights}", f"output_dir={out}"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "test.py"), *overrides],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "8 of 8 videos have non-finite scores" in result.stderr
    assert "100.00" not in result.stdout + result.stderr
    record = json.loads((out / "results.json").read_text())
    assert record["test"]["top1"] is None and record["test"]["num_nonfinite"] == 8
    assert "diverged" in record["error"]
    assert "top5" in record["test"]  # 10 classes: top-5 is reported (here: null)


def test_a_nan_loss_stops_training_before_the_step(tmp_path, digits_root, single_process_group):
    """A learning rate of 1e38 overflows the weights: the first non-finite loss ends the run; no checkpoint
    is written from it and results.json names the error."""
    out = tmp_path / "run"
    with pytest.raises(DivergedError, match=r"training diverged: loss is (nan|inf)") as caught:
        run_training(tiny_cfg(digits_root, out, "optim.lr=1e38", "optim.clip_grad=null"))
    record = json.loads((out / "results.json").read_text())
    assert record["error"] == str(caught.value) and "test" not in record
    saved = [checkpointing.checkpoint_step(p) for p in checkpointing.complete_checkpoints(out / "checkpoints")]
    step = int(str(caught.value).split("optimizer step ")[1].split(")")[0])
    assert all(s < step for s in saved), (saved, step)


def test_nan_validation_scores_fail_the_run(tmp_path, digits_root, single_process_group, monkeypatch):
    def nan_forward(self, x):
        return self.engine(x) * float("nan")

    monkeypatch.setattr(FinetuneRecipe, "_forward", nan_forward)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteScoresError, match="validation after epoch 1: 8 samples have non-finite scores"):
        run_training(tiny_cfg(digits_root, out))
    record = json.loads((out / "results.json").read_text())
    assert "non-finite" in record["error"] and record["history"] == []
