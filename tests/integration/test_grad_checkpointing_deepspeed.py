"""Activation checkpointing under DeepSpeed ZeRO-3 (2 CPU processes, gloo): the same training curve."""

from __future__ import annotations

import json

import pytest
from dist_runs import tiny, train

pytestmark = pytest.mark.integration


def test_zero3_with_grad_checkpointing_follows_the_same_losses(tmp_path):
    losses = {}
    for ckpt in ("false", "true"):
        out = tmp_path / f"run_{ckpt}"
        train(
            tiny(
                tmp_path / "data",
                out,
                "deepspeed=zero3",
                "epochs=2",
                "test.enabled=false",
                f"model.grad_checkpointing={ckpt}",
            )
        )
        history = json.loads((out / "results.json").read_text())["history"]
        losses[ckpt] = [epoch["train_loss"] for epoch in history]
    assert len(losses["true"]) == 2
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-5, abs=1e-6), losses
