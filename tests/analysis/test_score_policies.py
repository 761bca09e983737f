import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.analysis.score_policies import kept_sets, selection_agreement, time_policies


def test_agreement_is_one_with_itself_and_policies_are_restored():
    torch.manual_seed(0)
    model = timm.create_model("sparse_videomae_nano_patch16_64", num_classes=4).eval()
    x = torch.randn(2, 3, 16, 64, 64)
    assert selection_agreement(model, x, "mean_attn") == [1.0, 1.0, 1.0]
    overlap = selection_agreement(model, x, "mean_query")
    assert all(0.0 <= o <= 1.0 for o in overlap)
    assert all(block.score == "mean_attn" for block in model.blocks)  # the video default, restored
    assert [k.shape for k in kept_sets(model, x, "mean_attn")] == [k.shape for k in kept_sets(model, x, "mean_query")]
    times = time_policies(model, x, ["mean_query", "mean_attn"], repeats=1, warmup=0)
    assert set(times) == {"mean_query", "mean_attn"} and all(t > 0 for t in times.values())
