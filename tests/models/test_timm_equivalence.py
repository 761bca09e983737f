"""The plain backbone computes exactly timm's VisionTransformer with the same weights."""

import pytest
import timm
import torch

import video_sparse  # noqa: F401  (registers the models)


def _load_from_timm(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    result = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    assert all("adapter" in k for k in result.missing_keys), result.missing_keys


@pytest.mark.parametrize(
    "ours_name,timm_name,kwargs",
    [
        ("sparse_vit_base_patch16_224", "vit_base_patch16_224", {}),
        ("sparse_vit_small_patch14_dinov2", "vit_small_patch14_dinov2", {"img_size": 224}),
    ],
)
def test_plain_backbone_equals_timm(ours_name, timm_name, kwargs):
    torch.manual_seed(0)
    ref = timm.create_model(timm_name, pretrained=False, num_classes=10, **kwargs).eval()
    ours = timm.create_model(ours_name, num_classes=10, adapter="none", keep_rate=1.0).eval()
    _load_from_timm(ours, ref)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff <= 1e-5


def test_zero_initialised_adapters_start_as_the_frozen_model():
    torch.manual_seed(0)
    ref = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10).eval()
    ours = timm.create_model("sparse_vit_base_patch16_224", num_classes=10, keep_rate=1.0).eval()
    _load_from_timm(ours, ref)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-5
        # the released code's embedding term in the first stage sum makes the start differ
        ours.dense_include_embedding = True
        assert (ours(x) - ref(x)).abs().max().item() > 1e-3


def test_sparse_model_differs_from_dense_and_is_deterministic():
    torch.manual_seed(0)
    model = timm.create_model("sparse_vit_nano_patch16_64", num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        sparse, again, dense = model(x), model(x), model(x, keep_rate=1.0)
    assert torch.equal(sparse, again)
    assert not torch.allclose(sparse, dense)
