"""Two CPU processes train the nano video model through the real DeepSpeed path (gloo backend)."""

import json
from pathlib import Path

import pytest
import torch
from dist_runs import ROOT, tiny, train

from video_sparse.engine.builders import build_model

pytestmark = pytest.mark.integration


def _fresh_model(out: Path) -> torch.nn.Module:
    """The model the run started from: same config, same seed, same pre-trained backbone file."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(out / "config.yaml")
    torch.manual_seed(cfg.seed)
    pretrained = str(ROOT / cfg.pretrained) if cfg.pretrained else None
    return build_model(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.sparsity), pretrained)


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_training_lowers_the_loss_and_keeps_the_backbone(tmp_path, stage):
    out = tmp_path / "run"
    train(tiny(tmp_path / "data", out, f"deepspeed=zero{stage}", "epochs=4", "train.export_full=true"))
    results = json.loads((out / "results.json").read_text())
    losses = [epoch["train_loss"] for epoch in results["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert results["test"]["num_videos"] == 8
    final = torch.load(out / "model_final.pth", weights_only=True)["model"]
    fresh = _fresh_model(out).state_dict()
    changed = []
    for name, value in fresh.items():
        if "adapter" in name or name.startswith("head."):
            changed.append(not torch.equal(final[name], value))
        else:
            assert torch.equal(final[name], value), f"frozen {name} changed"
    assert all(changed), "every adapter/head tensor should have been trained"
    adapter_file = torch.load(out / "adapter.pth", weights_only=True)
    for name, value in adapter_file["state_dict"].items():
        assert torch.equal(value.float(), final[name])


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    data = tmp_path / "data"
    common = ["deepspeed=zero2", "epochs=2", "train.save_every_steps=2", "test.enabled=false"]
    train(tiny(data, tmp_path / "straight", *common))
    interrupted = tmp_path / "interrupted"
    train(tiny(data, interrupted, *common, "train.max_steps=3"))  # stops mid-epoch, after the step-2 checkpoint
    assert (interrupted / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    assert not (interrupted / "adapter.pth").exists()
    second = train(tiny(data, interrupted, *common))
    assert "resumed from" in second.stdout + second.stderr
    a = torch.load(tmp_path / "straight" / "adapter.pth", weights_only=True)["state_dict"]
    b = torch.load(interrupted / "adapter.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
