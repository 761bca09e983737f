"""The FLOPs counter agrees with an analytic count from token numbers and layer shapes."""

import pytest
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.adapters.dense_adapter import DenseAdapter
from video_sparse.analysis.flops import count_gmacs, dense_vs_sparse, input_shape_of


def _analytic_gmacs(model, batch: int) -> float:
    C = model.embed_dim
    hidden = model.blocks[0].mlp.fc1.out_features
    proj = model.patch_embed.proj
    kernel = 1
    for s in proj.kernel_size:
        kernel *= s
    macs = model.patch_embed.num_patches * C * proj.in_channels * kernel
    adapter = model.blocks[0].adapter
    adapter_per_token = adapter_per_call = 0
    if isinstance(adapter, DenseAdapter):  # down1, then the folded linear tail (dim x hidden) per token
        hidden_a, inner = adapter.down1.out_features, adapter.down2.out_features
        adapter_per_token = 2 * C * hidden_a
        adapter_per_call = 2 * hidden_a * hidden_a * inner + C * hidden_a * hidden_a  # folding the weights
    elif adapter is not None:
        adapter_per_token = sum(
            m.in_features * m.out_features for m in adapter.modules() if isinstance(m, torch.nn.Linear)
        )
    for block, (n_attn, n_mlp) in zip(model.blocks, model.tokens_per_block()):
        macs += 4 * C * C * n_attn + 2 * n_attn * n_attn * C + 2 * C * hidden * n_mlp + adapter_per_token * n_mlp
        macs += adapter_per_call / batch
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
    assert got == pytest.approx(_analytic_gmacs(model, batch=2), rel=1e-9)


def test_paper_setting_image_vit_b():
    result = dense_vs_sparse(timm.create_model("sparse_vit_base_patch16_224"))
    assert 11.6 <= result["sparse_gmacs"] <= 11.9
    assert 17.6 <= result["dense_gmacs"] <= 17.9
    assert result["ratio"] <= 0.67


def test_fused_and_chunked_received_attention_count_the_same_gmacs():
    """The exact video score costs the attention's MACs whichever kernel computes it."""
    import timm

    from video_sparse.analysis.flops import count_gmacs

    torch.manual_seed(0)
    model = timm.create_model("sparse_videomae_nano_patch16_64", num_classes=3, score="mean_attn")
    x = torch.zeros(1, 3, 16, 64, 64)
    counts = {}
    for kernel in ("fused", "chunked"):
        for block in model.blocks:
            block.attn.score_kernel = kernel
        counts[kernel] = count_gmacs(model, x).gmacs
    assert counts["fused"] == pytest.approx(counts["chunked"], rel=1e-9)
    dense = count_gmacs(model, x, keep_rate=1.0).gmacs
    assert 0.3 < counts["fused"] / dense < 0.95
