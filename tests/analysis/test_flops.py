"""The FLOPs counter agrees with an analytic count from token numbers and layer shapes."""

import pytest
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.analysis.flops import count_gmacs, dense_vs_sparse, input_shape_of


def _analytic_gmacs(model) -> float:
    C = model.embed_dim
    hidden = model.blocks[0].mlp.fc1.out_features
    proj = model.patch_embed.proj
    kernel = 1
    for s in proj.kernel_size:
        kernel *= s
    macs = model.patch_embed.num_patches * C * proj.in_channels * kernel
    adapter = model.blocks[0].adapter
    adapter_per_token = (
        sum(m.in_features * m.out_features for m in adapter.modules() if isinstance(m, torch.nn.Linear))
        if adapter is not None
        else 0
    )
    for block, (n_attn, n_mlp) in zip(model.blocks, model.tokens_per_block()):
        macs += 4 * C * C * n_attn + 2 * n_attn * n_attn * C + 2 * C * hidden * n_mlp + adapter_per_token * n_mlp
        if n_mlp < n_attn:
            macs += (n_attn - model.num_prefix_tokens) * C  # the score-weighted fused token
            if block.score in ("cls", "mean_query"):
                macs += n_attn * C  # one query row against all keys (mean_attn reuses the attention matmuls)
    macs += C * model.num_classes
    return macs / 1e9


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("sparse_vit_nano_patch16_64", {}),
        ("sparse_vit_nano_patch16_64", {"adapter": "none", "keep_rate": 1.0}),
        ("sparse_videomae_nano_patch16_64", {"keep_rate": 0.5}),
        ("sparse_videomae_nano_patch16_64", {"keep_rate": 0.5, "score": "mean_query"}),
        ("sparse_vit_base_patch16_224", {}),
    ],
)
def test_counter_matches_analytic(name, kwargs):
    model = timm.create_model(name, num_classes=10, **kwargs)
    got = count_gmacs(model, torch.zeros(input_shape_of(model, 2))).gmacs
    assert got == pytest.approx(_analytic_gmacs(model), rel=1e-9)


def test_paper_setting_image_vit_b():
    result = dense_vs_sparse(timm.create_model("sparse_vit_base_patch16_224"))
    assert 11.6 <= result["sparse_gmacs"] <= 11.9
    assert 17.6 <= result["dense_gmacs"] <= 17.9
    assert result["ratio"] <= 0.67
