"""Activation checkpointing (``grad_checkpointing=True`` / timm's ``set_grad_checkpointing``): the same
loss and gradients as without it, the recomputed forward keeps the tokens the first forward kept."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from video_sparse.adapters import set_trainable
from video_sparse.models import vit
from video_sparse.sparsify import select_tokens

NANO_VIDEO, NANO_IMAGE = "sparse_videomae_nano_patch16_64", "sparse_vit_nano_patch16_64"


def _model(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, **kwargs).train()
    set_trainable(model)
    with torch.no_grad():  # non-zero adapter outputs: every gradient path carries something
        for n, p in model.named_parameters():
            if "adapter" in n:
                p.normal_(0, 0.05)
    return model


def _input(name: str, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    shape = (batch, 3, 16, 64, 64) if "video" in name else (batch, 3, 64, 64)
    return torch.randn(shape, generator=g)


def _loss_and_grads(model, x):
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), torch.arange(x.shape[0]) % 5)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize(
    "name,kwargs",
    [
        (NANO_VIDEO, {}),
        (NANO_VIDEO, {"score": "mean_query"}),
        (NANO_VIDEO, {"adapter": "dense_paper"}),
        (NANO_IMAGE, {}),
        (NANO_IMAGE, {"adapter": "parallel"}),
        (NANO_IMAGE, {"dense_include_embedding": True}),
    ],
)
def test_gradients_equal_with_and_without_checkpointing(name, kwargs):
    model = _model(name, **kwargs)
    x = _input(name)
    loss, grads = _loss_and_grads(model, x)
    model.set_grad_checkpointing(True)
    loss_ckpt, grads_ckpt = _loss_and_grads(model, x)
    assert grads and grads.keys() == grads_ckpt.keys()
    assert all("adapter" in n or n.startswith("head") for n in grads)  # the backbone stays frozen
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=1e-6)
    for n, g in grads.items():
        torch.testing.assert_close(grads_ckpt[n], g, rtol=1e-5, atol=1e-7, msg=n)


def test_blocks_are_recomputed_in_the_backward_pass():
    model = _model(NANO_VIDEO, grad_checkpointing=True)
    assert model.grad_checkpointing and model.model_args["grad_checkpointing"]
    calls = []
    model.blocks[2].register_forward_pre_hook(lambda *_: calls.append(1))  # a recomputation may stop early
    _loss_and_grads(model, _input(NANO_VIDEO))
    assert len(calls) == 2  # forward + recomputation
    calls.clear()
    with torch.no_grad():
        model(_input(NANO_VIDEO))
    assert len(calls) == 1  # nothing to recompute without gradients


def test_recomputed_forward_keeps_the_first_forwards_tokens(monkeypatch):
    """Rank tokens randomly, differently at every call: without the kept indices being carried over,
    the recomputation would keep other tokens and the gradients would differ."""
    state = {"calls": 0, "gen": None}

    def random_ranking(scores, keep_rate, fuse=True, num_keep=None):
        state["calls"] += 1
        return select_tokens(torch.rand(scores.shape, generator=state["gen"]), keep_rate, fuse, num_keep)

    monkeypatch.setattr(vit, "select_tokens", random_ranking)
    model = _model(NANO_VIDEO)
    x = _input(NANO_VIDEO)
    results = []
    for ckpt in (False, True):
        model.set_grad_checkpointing(ckpt)
        state.update(calls=0, gen=torch.Generator().manual_seed(5))
        results.append((_loss_and_grads(model, x), state["calls"]))
    ((loss, grads), calls), ((loss_ckpt, grads_ckpt), calls_ckpt) = results
    assert calls == calls_ckpt == len(model.sparse_layers)  # ranked once per layer, not again when recomputed
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=1e-6)
    for n, g in grads.items():
        torch.testing.assert_close(grads_ckpt[n], g, rtol=1e-5, atol=1e-7, msg=n)


def test_config_key_reaches_the_model():
    from video_sparse.engine.builders import build_model

    group = {"_target_": "video_sparse.models.create_model", "model_name": NANO_VIDEO, "num_classes": 5}
    model = build_model({**group, "grad_checkpointing": True}, {"keep_rate": 0.7, "sparse_layers": [1, 2, 3]})
    assert model.grad_checkpointing
    model = build_model({**group, "grad_checkpointing": False}, {})
    assert not model.grad_checkpointing
