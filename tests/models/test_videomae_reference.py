"""The plain video backbone equals an independent VideoMAE-layout model loaded from its checkpoint.

``RefVideoMAE`` below re-implements the published VideoMAE fine-tuning ViT forward pass directly:
Conv3d tube embedding (2x16x16), a fixed sin-cos table over the flattened (t, h, w) token index,
pre-norm blocks whose attention has a bias-free ``qkv`` Linear plus separate ``q_bias`` / ``v_bias``
(no key bias) and an explicit softmax, GELU MLP, no CLS token, mean pooling, ``fc_norm`` and
``head``. Its state dict is written in the published fine-tune layouts and loaded into ``SparseViT``
through ``load_pretrained``; the logits must agree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import video_sparse  # noqa: F401  (registers the models)
from video_sparse.checkpoint import load_pretrained

EMBED_DIM, DEPTH, HEADS, NUM_CLASSES = 96, 2, 3, 11
LN_EPS = 1e-6


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """(1, num_positions, dim): angle p / 10000^(2*floor(j/2)/dim), sin on even j, cos on odd j."""
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    j = np.arange(dim)[None, :]
    angle = pos / np.power(10000.0, 2 * (j // 2) / dim)
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return torch.tensor(table, dtype=torch.float32)[None]


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        logits = (q / math.sqrt(c // self.heads)) @ k.transpose(-2, -1)
        weights = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = RefAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = RefMlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefPatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(3, dim, kernel_size=(2, 16, 16), stride=(2, 16, 16))


class RefVideoMAE(nn.Module):
    """VideoMAE's fine-tuning ViT (mean pooling, no CLS), with its parameter names."""

    def __init__(
        self,
        frames: int,
        size: int,
        dim: int = EMBED_DIM,
        depth: int = DEPTH,
        heads: int = HEADS,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.patch_embed = RefPatchEmbed(dim)
        self.pos_table = sinusoid_table((frames // 2) * (size // 16) ** 2, dim)  # not a parameter
        self.blocks = nn.ModuleList([RefBlock(dim, heads) for _ in range(depth)])
        self.fc_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, T, H, W) -> (B, num_classes)."""
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = x + self.pos_table
        for block in self.blocks:
            x = block(x)
        return self.head(self.fc_norm(x.mean(dim=1)))


def randomized_reference(frames: int, size: int, seed: int) -> RefVideoMAE:
    """Every weight random: non-zero q/v biases, LayerNorm scales away from 1, shifts away from 0."""
    ref = RefVideoMAE(frames, size)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * noise)
            elif name.endswith(("q_bias", "v_bias")):
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.08 * noise)
    return ref.eval()


def ours(frames: int, size: int, **kwargs) -> torch.nn.Module:
    args = dict(
        num_frames=frames, img_size=size, depth=DEPTH, num_classes=NUM_CLASSES, sparse_layers=(1,), keep_rate=1.0
    )
    return timm.create_model("sparse_videomae_nano_patch16_64", **(args | kwargs)).eval()


def write_checkpoint(ref: RefVideoMAE, path, layout: str) -> None:
    sd = {k: v.clone() for k, v in ref.state_dict().items()}
    assert not any("pos" in k for k in sd)  # VideoMAE's fixed table is not saved
    if layout == "module":
        torch.save({"module": sd}, path)
    else:
        torch.save({"model": {"encoder." + k: v for k, v in sd.items()}, "epoch": 3}, path)


def _clip(frames: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(2, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("frames,size", [(8, 32), (16, 64)])
@pytest.mark.parametrize("layout", ["module", "model_encoder"])
def test_plain_backbone_equals_reference_videomae(tmp_path, frames, size, layout):
    ref = randomized_reference(frames, size, seed=frames + size)
    path = tmp_path / "videomae_finetune.pth"
    write_checkpoint(ref, path, layout)
    model = ours(frames, size, adapter="none")
    report = load_pretrained(model, path)
    assert report.format == "videomae"
    assert report.missing == [] and report.expected_missing == [] and report.unexpected == []
    x = _clip(frames, size, seed=1)
    with torch.no_grad():
        expected, got = ref(x), model(x)
    assert expected.abs().max() > 0.1  # a meaningful scale for the absolute tolerance
    assert (got - expected).abs().max().item() <= 1e-5


def test_a_wrong_key_bias_would_be_detected(tmp_path):
    """The comparison is sensitive to the q/v bias fold: a non-zero key bias changes nothing, a
    swapped q/v bias does."""
    frames, size = 8, 32
    ref = randomized_reference(frames, size, seed=5)
    path = tmp_path / "ft.pth"
    write_checkpoint(ref, path, "module")
    model = ours(frames, size, adapter="none")
    load_pretrained(model, path)
    x = _clip(frames, size, seed=2)
    with torch.no_grad():
        expected = ref(x)
        for block in model.blocks:
            bias = block.attn.qkv.bias
            q, k, v = bias.clone().chunk(3)
            bias.copy_(torch.cat([q, k + 3.0, v]))  # softmax is invariant to a key bias
        assert (model(x) - expected).abs().max().item() <= 1e-5
        for block in model.blocks:
            q, k, v = block.attn.qkv.bias.clone().chunk(3)
            block.attn.qkv.bias.copy_(torch.cat([v, k, q]))
        assert (model(x) - expected).abs().max().item() > 1e-3


@pytest.mark.parametrize("frames,size", [(8, 32), (16, 64)])
def test_zero_initialised_adapters_keep_the_reference_output_and_sparsity_changes_it(tmp_path, frames, size):
    ref = randomized_reference(frames, size, seed=7)
    path = tmp_path / "videomae_finetune.pth"
    write_checkpoint(ref, path, "module")
    model = ours(frames, size)  # default adapter="dense", zero-initialised up-projections
    assert model.adapter_name == "dense"
    report = load_pretrained(model, path)
    assert report.missing == [] and report.expected_missing
    assert all("adapter" in k for k in report.expected_missing)
    x = _clip(frames, size, seed=3)
    with torch.no_grad():
        expected = ref(x)
        dense = model(x)
        sparse = model(x, keep_rate=0.7)
    assert (dense - expected).abs().max().item() <= 1e-5
    assert (sparse - expected).abs().max().item() > 1e-3
    # the same through the model's own setting rather than the per-call override
    model.keep_rate = 0.7
    with torch.no_grad():
        assert torch.allclose(model(x), sparse)
