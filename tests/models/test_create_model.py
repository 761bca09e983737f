"""``create_model``: keys checked against SparseViT before building; ``set_trainable``: what trains."""

from __future__ import annotations

import pytest
import timm
import torch

from video_sparse.adapters import count_parameters, set_trainable
from video_sparse.errors import ConfigError
from video_sparse.models import SparseViT, create_model, registered_models

NANO_IMAGE, NANO_VIDEO = "sparse_vit_nano_patch16_64", "sparse_videomae_nano_patch16_64"


def test_builds_the_registered_variant_with_overrides():
    torch.manual_seed(0)
    ours = create_model(NANO_VIDEO, num_classes=4, keep_rate=0.5, score=None, sparse_layers=None)
    torch.manual_seed(0)
    ref = timm.create_model(NANO_VIDEO, num_classes=4, keep_rate=0.5)
    assert isinstance(ours, SparseViT)
    assert ours.model_args == ref.model_args  # None: the variant's own default
    x = torch.randn(1, 3, 16, 64, 64)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_adapter_none_means_no_adapter():
    model = create_model(NANO_IMAGE, adapter=None)
    assert model.adapter_name is None
    assert not any("adapter" in name for name, _ in model.named_parameters())
    assert create_model(NANO_IMAGE).adapter_name == "dense"


def test_unknown_key_is_named_before_anything_is_built(monkeypatch):
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("built before checking"))
    with pytest.raises(ConfigError, match=r"model\.keeprate\b.*known: .*'keep_rate'"):
        create_model(NANO_IMAGE, keeprate=0.5)
    with pytest.raises(ConfigError, match=r"model\.freeze_backbone"):
        create_model(NANO_IMAGE, freeze_backbone=True)


def test_unknown_model_name_lists_the_registered_ones():
    with pytest.raises(ConfigError, match=r"sparse_vit_nono.*'sparse_vit_nano_patch16_64'"):
        create_model("sparse_vit_nono")
    with pytest.raises(ConfigError, match="not registered"):
        create_model("vit_base_patch16_224")  # a timm model, not one of ours
    names = registered_models()
    assert NANO_IMAGE in names and NANO_VIDEO in names and all(n.startswith("sparse_") for n in names)


def test_every_parameter_trains_until_set_trainable():
    model = create_model(NANO_IMAGE, num_classes=3)
    trainable, total = count_parameters(model)
    assert trainable == total


def _add_ons(model: torch.nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if "adapter" in n.split(".") or n.startswith("head.")}


@pytest.mark.parametrize("freeze", [None, True])
def test_frozen_backbone_trains_adapters_and_head(freeze):
    model = create_model(NANO_IMAGE, num_classes=3)
    set_trainable(model, freeze)
    assert set(_trainable(model)) == _add_ons(model)
    assert any("adapter" in n for n in _trainable(model))


def test_without_adapter_none_trains_everything_and_true_is_a_linear_probe():
    model = create_model(NANO_IMAGE, num_classes=3, adapter=None)
    set_trainable(model, None)
    assert count_parameters(model)[0] == count_parameters(model)[1]
    set_trainable(model, True)
    assert _trainable(model) == ["head.weight", "head.bias"]


def test_full_finetuning_when_asked():
    model = create_model(NANO_IMAGE, num_classes=3)
    set_trainable(model, True)
    set_trainable(model, False)
    trainable, total = count_parameters(model)
    assert trainable == total


def test_nothing_to_train_is_a_config_error():
    model = create_model(NANO_IMAGE, num_classes=0, adapter=None)
    with pytest.raises(ConfigError, match="nothing to train"):
        set_trainable(model, True)


def _trainable(model: torch.nn.Module) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


def test_config_model_with_arch_from_checkpoint_builds_the_files_network_with_the_named_heads():
    """The config path (``model.checkpoint`` + ``model.arch_from_checkpoint``) on the shipped demo backbone:
    its 96-wide blocks have the named model's 3 heads, not a width rule's 1."""
    from pathlib import Path

    from video_sparse.checkpoint import load_pretrained

    demo = str(Path(__file__).resolve().parents[2] / "assets" / "demo_backbone_nano.safetensors")
    torch.manual_seed(0)
    built = create_model(NANO_VIDEO, checkpoint=demo, arch_from_checkpoint=True, adapter=None, keep_rate=1.0)
    torch.manual_seed(0)
    named = create_model(NANO_VIDEO, adapter=None, keep_rate=1.0)
    load_pretrained(named, demo)
    assert built.model_args["num_heads"] == 3
    x = torch.randn(1, 3, 16, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(built.eval()(x), named.eval()(x), rtol=0, atol=0)
