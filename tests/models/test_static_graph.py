"""The sparse forward pass is one static graph: no host synchronisation (``.item()``, ``.tolist()``),
no branch on tensor values, keep counts from shapes. ``torch.compile(fullgraph=True)`` fails on any
of those, so tracing the whole model in one graph proves it; the traced model computes the same
logits and keeps the same tokens."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import video_sparse  # noqa: F401  (registers the models)


def _model_and_input(name: str, **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, **kwargs)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "adapter" in n:
                p.normal_(0, 0.05)
    shape = (2, 3, 16, 64, 64) if "video" in name else (2, 3, 64, 64)
    return model, torch.randn(shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("sparse_videomae_nano_patch16_64", {}),  # mean_attn through the fused kernels
        ("sparse_vit_nano_patch16_64", {}),  # cls score
        ("sparse_videomae_nano_patch16_64", {"adapter": "dense_paper", "fused_pool_weight": "mass"}),
    ],
)
def test_inference_traces_as_one_graph_with_the_same_tokens(name, kwargs):
    model, x = _model_and_input(name, **kwargs)
    model.eval()
    traced = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        ours, ref = traced(x, return_kept=True), model(x, return_kept=True)
    assert ref.kept and all(torch.equal(a, b) for a, b in zip(ours.kept, ref.kept))
    torch.testing.assert_close(ours.logits, ref.logits, rtol=1e-6, atol=1e-6)


def test_training_step_traces_as_one_graph_with_the_same_gradients():
    """Forward and backward through AOTAutograd (the fused score kernel's fake and backward included)."""
    model, x = _model_and_input("sparse_videomae_nano_patch16_64")
    model.train()
    labels = torch.arange(2)
    traced = torch.compile(model, backend="aot_eager", fullgraph=True)
    grads = []
    for run in (traced, model):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(run(x), labels).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("qkv" in n for n in grads[0])
    for n, g in grads[1].items():
        torch.testing.assert_close(grads[0][n], g, rtol=1e-5, atol=1e-6, msg=n)
