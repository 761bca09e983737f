"""A fine-tuned checkpoint of the paper's released code loads completely and gives the released model's logits.

``ReleasedViT`` below is written from the release's description (EViT-style image ViT, 12 blocks,
sparsifying after the attention of blocks 3, 6, 9 by the CLS row of the explicit softmax attention,
``adaptmlp`` Dense Adapters in parallel to the MLP, the stage sums added after blocks 2, 5, 8, 11 with
the patch embedding in the first and blocks 9-10 in the last, CLS pooling after ``norm``, head
``Sequential(BatchNorm1d(affine=False, eps=1e-6), Linear)``); it shares no code with the library.
The file is written as the release's training script saves it: ``{'model', 'optimizer', 'epoch',
'scaler', 'args': argparse.Namespace}``.
"""

from __future__ import annotations

import argparse
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from video_sparse.checkpoint import CheckpointError, create_model_from_checkpoint, load_pretrained
from video_sparse.models import SparseViT

DIM, HEADS, DEPTH, CLASSES, HIDDEN = 192, 3, 12, 5, 16
KEEP = {3: 0.7, 6: 0.7, 9: 0.7}


class RelAdapter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down1, self.down2 = nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, HIDDEN // 2)
        self.down3, self.up1 = nn.Linear(HIDDEN + HIDDEN // 2, HIDDEN), nn.Linear(HIDDEN // 2, HIDDEN)
        self.up2 = nn.Linear(HIDDEN, DIM)

    def forward(self, x):
        x0 = F.relu(self.down1(x))
        a = self.down2(x0)
        return self.up2(self.down3(torch.cat([a, self.up1(a)], dim=2)) + x0)


class RelAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // HEADS) ** -0.5).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)), attn[:, :, 0, 1:].mean(1)


class RelMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(DIM, 4 * DIM), nn.Linear(4 * DIM, DIM)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class RelBlock(nn.Module):
    def __init__(self, keep_rate: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(DIM, eps=1e-6), nn.LayerNorm(DIM, eps=1e-6)
        self.attn, self.mlp, self.adaptmlp = RelAttention(), RelMlp(), RelAdapter()
        self.keep_rate = keep_rate

    def forward(self, x):
        out, cls_attn = self.attn(self.norm1(x))
        x = x + out
        n = x.shape[1] - 1
        if self.keep_rate < 1:
            left = math.ceil(self.keep_rate * n)
            idx = torch.topk(cls_attn, left, dim=1, largest=True, sorted=True).indices
            body = x[:, 1:]
            kept = torch.gather(body, 1, idx.unsqueeze(-1).expand(-1, -1, DIM))
            mask = torch.ones_like(cls_attn, dtype=torch.bool).scatter(1, idx, False)
            fused = (body * (cls_attn * mask).unsqueeze(-1)).sum(1, keepdim=True)
            x = torch.cat([x[:, :1], kept, fused], dim=1)
        adapt = self.adaptmlp(x)
        return x + self.mlp(self.norm2(x)) + adapt, adapt


class ReleasedViT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, DIM, 16, 16)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + 16, DIM))
        self.blocks = nn.ModuleList([RelBlock(KEEP.get(i, 1.0)) for i in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM, eps=1e-6)
        self.head = nn.Sequential(nn.BatchNorm1d(DIM, affine=False, eps=1e-6), nn.Linear(DIM, CLASSES))

    def forward(self, images):
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        stage = x
        for i, block in enumerate(self.blocks):
            x, adapt = block(x)
            if i == 3 or i == 6 or i == 9:
                stage = 0
            if i != 11:
                stage = stage + adapt
            if i in (2, 5, 8, 11):
                x = x + stage
        return self.head(self.norm(x)[:, 0])


def _released(seed: int = 0) -> ReleasedViT:
    g = torch.Generator().manual_seed(seed)
    model = ReleasedViT()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        bn = model.head[0]
        bn.running_mean.copy_(torch.randn(DIM, generator=g))
        bn.running_var.copy_(torch.rand(DIM, generator=g) * 2 + 0.1)
        bn.num_batches_tracked.fill_(123)
    return model.eval()


def _save(model: ReleasedViT, path, args: argparse.Namespace | None = None) -> None:
    args = args or argparse.Namespace(
        model="vit_base_patch16_224",
        nb_classes=CLASSES,
        lr=1e-3,
        keep_rate=0.7,
        ffn_adapt=True,
        ffn_option="parallel",
        data_path="/data/vtab/cifar",
    )
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
            "epoch": 99,
            "scaler": {"scale": 65536.0},
            "args": args,
        },
        path,
    )


def _images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(7))


def _ours(head_norm: str) -> SparseViT:
    torch.manual_seed(1)
    return SparseViT(
        img_size=64,
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=HEADS,
        num_classes=CLASSES,
        adapter_dim=HIDDEN,
        dense_include_embedding=True,
        head_norm=head_norm,
    ).eval()


def test_reference_file_has_the_released_layout(tmp_path):
    sd = _released().state_dict()
    assert {
        "blocks.0.adaptmlp.down1.weight",
        "blocks.11.adaptmlp.up2.bias",
        "head.0.running_mean",
        "head.0.running_var",
        "head.0.num_batches_tracked",
        "head.1.weight",
        "head.1.bias",
    } <= set(sd)
    assert sum(".adaptmlp." in k for k in sd) + sum(k.startswith("head.") for k in sd) == 125


@pytest.mark.parametrize("head_norm", ["batchnorm", "none"])
def test_release_loads_completely_and_gives_its_logits(tmp_path, head_norm):
    ref = _released()
    path = tmp_path / "checkpoint-99.pth"
    _save(ref, path)
    model = _ours(head_norm)
    report = load_pretrained(model, path)
    assert report.format == "sparse-tuning"
    assert (report.missing, report.expected_missing, report.unexpected, report.dropped) == ([], [], [], [])
    if head_norm == "none":
        assert sorted(report.folded) == [
            "head_norm.num_batches_tracked",
            "head_norm.running_mean",
            "head_norm.running_var",
        ]
    else:
        assert report.folded == [] and torch.equal(model.head_norm.running_var, ref.head[0].running_var)
    assert report.args["model"] == "vit_base_patch16_224" and report.args["nb_classes"] == CLASSES
    with torch.no_grad():
        expected, got = ref(_images()), model(_images())
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_model_built_from_the_release_file(tmp_path):
    ref = _released(seed=3)
    path = tmp_path / "checkpoint-best.pth"
    _save(ref, path)
    model, report = create_model_from_checkpoint(path, num_heads=HEADS)  # the 192-wide file is not "vit_base"
    model.eval()
    assert report.format == "sparse-tuning" and (report.missing, report.unexpected) == ([], [])
    assert model.model_args["head_norm"] == "batchnorm" and model.adapter_name == "dense"
    assert model.sparse_layers == (3, 6, 9) and model.dense_include_embedding
    with torch.no_grad():
        torch.testing.assert_close(model(_images()), ref(_images()), rtol=1e-4, atol=1e-5)


def test_release_into_a_model_without_adapters_names_them(tmp_path):
    path = tmp_path / "ft.pth"
    _save(_released(), path)
    torch.manual_seed(0)
    plain = SparseViT(img_size=64, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, num_classes=CLASSES, adapter=None)
    with pytest.raises(CheckpointError, match=r"blocks\.\d+\.adapter\.down1\.weight"):
        load_pretrained(plain, path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_args_with_an_arbitrary_object_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    _save(_released(), path, args=argparse.Namespace(model="vit", hook=_Payload()))
    with pytest.raises(CheckpointError, match="refusing"):
        load_pretrained(_ours("none"), path)
