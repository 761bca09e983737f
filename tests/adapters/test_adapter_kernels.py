"""The adapters' few-GEMM forms compute what their module-by-module formulas compute: outputs,
gradients, and whole models' logits and kept tokens."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import video_sparse  # noqa: F401  (registers the models)
from video_sparse.adapters.dense_adapter import DenseAdapter, PaperDenseAdapter


def _stepwise_dense(self: DenseAdapter, x: torch.Tensor) -> torch.Tensor:
    """The released code's formula, one module after another."""
    x0 = F.relu(self.down1(x))
    a = self.down2(x0)
    b = self.up1(a)
    return self.up2(self.down3(torch.cat([a, b], dim=-1)) + x0)


def _stepwise_paper(self: PaperDenseAdapter, x: torch.Tensor, history=None) -> torch.Tensor:
    hidden = self.down_x(x)
    history = history or []
    if self.down_prev is not None:
        hidden = hidden + self.down_prev(history[-1])
    if self.down_far is not None:
        hidden = hidden + self.down_far(history[-self.reach])
    return self.up(F.relu(hidden))


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("dim,hidden", [(32, 16), (96, 64), (40, 7)])
def test_dense_adapter_equals_the_stepwise_formula_with_gradients(dim, hidden):
    adapter = DenseAdapter(dim, hidden)
    _randomize(adapter)
    x = torch.randn(3, 11, dim, requires_grad=True)
    out = adapter(x)
    ref = _stepwise_dense(adapter, x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    adapter, x = adapter.double(), x.detach().double().requires_grad_()  # gradients: the algebra, no rounding
    out, ref = adapter(x), _stepwise_dense(adapter, x)
    g = torch.randn_like(out)
    params = [x, *adapter.parameters()]
    for a, b in zip(torch.autograd.grad((out * g).sum(), params), torch.autograd.grad((ref * g).sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_dense_adapter_starts_at_zero():
    assert DenseAdapter(16, 8)(torch.randn(2, 5, 16)).abs().max() == 0


@pytest.mark.parametrize("layer_index", [0, 1, 3])
def test_paper_adapter_equals_the_stepwise_formula_with_gradients(layer_index):
    adapter = PaperDenseAdapter(24, 8, layer_index=layer_index)
    _randomize(adapter)
    x = torch.randn(2, 9, 24, requires_grad=True)
    history = [torch.randn(2, 9, 24, requires_grad=True) for _ in range(3)]
    out, ref = adapter(x, history), _stepwise_paper(adapter, x, history)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    params = [x, *history, *adapter.parameters()]
    grads = torch.autograd.grad(out.sum(), params, allow_unused=True, materialize_grads=True)
    ref_grads = torch.autograd.grad(ref.sum(), params, allow_unused=True, materialize_grads=True)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name,adapter",
    [
        ("sparse_videomae_nano_patch16_64", "dense"),
        ("sparse_vit_nano_patch16_64", "dense"),
        ("sparse_vit_nano_patch16_64", "dense_paper"),
        ("sparse_videomae_nano_patch16_64", "dense_paper"),
    ],
)
def test_models_keep_the_same_tokens_and_logits_as_the_stepwise_adapters(name, adapter, monkeypatch):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, adapter=adapter).eval()
    for block in model.blocks:
        _randomize(block.adapter, seed=len(str(block)))
    shape = (2, 3, 16, 64, 64) if "video" in name else (2, 3, 64, 64)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x, return_kept=True)
        monkeypatch.setattr(DenseAdapter, "forward", _stepwise_dense)
        monkeypatch.setattr(PaperDenseAdapter, "forward", _stepwise_paper)
        ref = model(x, return_kept=True)
    assert ref.kept and all(torch.equal(a, b) for a, b in zip(ours.kept, ref.kept))
    torch.testing.assert_close(ours.logits, ref.logits, rtol=1e-5, atol=1e-5)


def test_under_zero3_each_layer_is_called_and_gives_the_same_output(monkeypatch):
    """ZeRO-3 gathers a layer's weights only around that layer's own call: with partitioned parameters
    (marked by DeepSpeed's ``ds_id``) both adapters call every layer, and compute the same map."""
    dense, paper = DenseAdapter(24, 8), PaperDenseAdapter(24, 8, layer_index=3)
    _randomize(dense)
    _randomize(paper, seed=1)
    x, history = torch.randn(2, 5, 24), [torch.randn(2, 5, 24) for _ in range(3)]
    expected = dense(x), paper(x, history)
    for module in (dense, paper):
        for p in module.parameters():
            p.ds_id = 0
    called = []
    monkeypatch.setattr(
        torch.nn.Linear, "forward", lambda self, t: called.append(self) or F.linear(t, self.weight, self.bias)
    )
    got = dense(x), paper(x, history)
    assert {id(m) for m in called} == {id(m) for m in [*dense.children(), *paper.children()] if m is not None}
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
