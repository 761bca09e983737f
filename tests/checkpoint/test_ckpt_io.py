"""Atomic saves and adapter-only checkpoints."""

from __future__ import annotations

import logging
import os
import stat

import pytest
import torch

from video_sparse.adapters import is_add_on_key, set_trainable
from video_sparse.checkpoint import (
    CheckpointError,
    adapter_state_dict,
    atomic_save,
    is_adapter_checkpoint,
    load_adapter_checkpoint,
    load_trained_weights,
    save_adapter_checkpoint,
)
from video_sparse.models import vit


def _nbytes(sd):
    return sum(t.numel() * t.element_size() for t in sd.values())


def test_atomic_save_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "ckpt.pth"
    atomic_save({"a": torch.ones(3)}, path)
    atomic_save({"a": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(3))
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pth"]


def test_atomic_save_gives_the_permissions_of_a_normal_file(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_save({"a": torch.ones(3)}, tmp_path / "ckpt.pth")
        (tmp_path / "plain").write_bytes(b"")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644


def test_atomic_save_crash_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    atomic_save({"a": torch.ones(3)}, path)
    old_bytes = path.read_bytes()

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"a": torch.zeros(3)}, path)
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no temporary left behind


def _trained(model, seed):
    """Pretend training happened: random adapter and head values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_adapter_state_dict_selects_add_ons_only(image_nano):
    model = image_nano(num_classes=5)
    sd = adapter_state_dict(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(sd) == trainable
    assert any(".adapter." in k for k in sd) and {"head.weight", "head.bias"} <= set(sd)
    backbone_prefixes = ("patch_embed", "pos_embed", "cls_token", "norm")
    assert not any(k.startswith(backbone_prefixes) or ".attn." in k for k in sd)


def test_adapter_state_dict_keeps_other_trained_params(image_nano, caplog):
    model = image_nano(num_classes=5)
    model.norm.weight.requires_grad_(True)
    with caplog.at_level(logging.WARNING, logger="video_sparse.checkpoint"):
        sd = adapter_state_dict(model)
    assert "norm.weight" in sd and "norm.bias" not in sd
    assert any("norm.weight" in r.getMessage() for r in caplog.records)


def test_adapter_checkpoint_round_trip(tmp_path, image_nano):
    a = _trained(image_nano(seed=0, num_classes=5), seed=1)
    path = tmp_path / "adapters.pth"
    save_adapter_checkpoint(a, path, extra={"epoch": 7, "top1": 81.5, "tags": ["k400", None]})

    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["extra"] == {"epoch": 7, "top1": 81.5, "tags": ["k400", None]}
    assert payload["model_args"] == a.model_args
    assert set(payload["state_dict"]) == set(adapter_state_dict(a))

    b = image_nano(seed=2, num_classes=5)
    backbone_before = {k: v.clone() for k, v in b.state_dict().items() if k not in payload["state_dict"]}
    report = load_adapter_checkpoint(b, path)

    assert report.format == "adapter" and report.missing == [] and report.unexpected == []
    assert report.loaded == len(payload["state_dict"])
    assert set(report.expected_missing) == set(backbone_before)
    for k, v in payload["state_dict"].items():
        assert torch.equal(b.state_dict()[k], v), k
    for k, v in backbone_before.items():
        assert torch.equal(b.state_dict()[k], v), k  # backbone untouched
    # with the same backbone, the two models now compute the same thing
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k in backbone_before}, strict=False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)


def test_adapter_checkpoint_missing_keys_are_named(tmp_path, image_nano):
    a = image_nano(num_classes=5)
    sd = adapter_state_dict(a)
    gone = ["blocks.2.adapter.up2.weight", "head.bias"]
    payload = {"format": "video_sparse.adapter", "state_dict": {k: v for k, v in sd.items() if k not in gone}}
    path = atomic_save(payload, tmp_path / "partial.pth")
    b = image_nano(seed=1, num_classes=5)
    snap = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_adapter_checkpoint(b, path)
    assert all(k in str(err.value) for k in gone) and "2 adapter/head key(s)" in str(err.value)
    assert all(torch.equal(v, snap[k]) for k, v in b.state_dict().items())


def test_adapter_checkpoint_other_class_count_is_refused(tmp_path, image_nano):
    path = save_adapter_checkpoint(image_nano(num_classes=5), tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"head.weight: checkpoint \(5, 96\) vs model \(7, 96\)"):
        load_adapter_checkpoint(image_nano(num_classes=7), path)


def test_adapter_checkpoint_refuses_other_files(tmp_path, image_nano):
    path = tmp_path / "backbone.pth"
    torch.save(image_nano().state_dict(), path)
    with pytest.raises(CheckpointError, match="not an adapter checkpoint"):
        load_adapter_checkpoint(image_nano(), path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_adapter_checkpoint(image_nano(), tmp_path / "missing.pth")


def test_adapter_checkpoint_needs_a_torch_extension(tmp_path, image_nano):
    with pytest.raises(CheckpointError, match=".pth"):
        save_adapter_checkpoint(image_nano(), tmp_path / "adapters.safetensors")


def test_extra_must_be_plain(tmp_path, image_nano):
    with pytest.raises(TypeError, match=r"extra\['when'\]"):
        save_adapter_checkpoint(image_nano(), tmp_path / "a.pth", extra={"when": object()})
    assert not (tmp_path / "a.pth").exists()


def test_vit_b_adapter_checkpoint_is_a_few_mb(tmp_path):
    """ViT-B/16 with Dense Adapters: the adapter file is a few MB, the full state dict ~330 MiB."""
    model = vit.sparse_vit_base_patch16_224(num_classes=100)
    set_trainable(model)
    full_bytes = _nbytes(model.state_dict())
    adapter_bytes = _nbytes(adapter_state_dict(model))
    assert 320 * 2**20 < full_bytes < 340 * 2**20
    assert 1 * 2**20 < adapter_bytes < 10 * 2**20

    path = save_adapter_checkpoint(model, tmp_path / "vit_b_adapters.pth")
    on_disk = path.stat().st_size
    assert adapter_bytes <= on_disk < adapter_bytes + 2**20  # tensors plus a small pickle overhead
    assert on_disk < full_bytes / 30


def test_add_on_rule_agrees_with_the_freezing_rule(image_nano, video_nano):
    """The keys an adapter checkpoint holds are exactly the parameters a frozen model leaves trainable."""
    models = (
        image_nano(),
        video_nano(),
        image_nano(adapter="parallel"),
        video_nano(adapter="dense_paper"),
        image_nano(head_norm="batchnorm", num_classes=3),
    )
    for model in models:
        assert set(adapter_state_dict(model)) == {k for k in model.state_dict() if is_add_on_key(k)}
        for name, param in model.named_parameters():
            assert is_add_on_key(name) == param.requires_grad, name


def _outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_trained_weights_adapter_file_is_recognised_by_its_format(tmp_path, image_nano):
    """An adapter file is told apart by what save_adapter_checkpoint writes, and loads to the same outputs."""
    trained = _trained(image_nano(seed=0, num_classes=5), seed=1)
    path = save_adapter_checkpoint(trained, tmp_path / "adapter.pth")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert is_adapter_checkpoint(payload)
    # the same content without the format mark is not taken for an adapter file
    assert not is_adapter_checkpoint({k: v for k, v in payload.items() if k != "format"})
    assert not is_adapter_checkpoint({**payload, "format": "adapter"})

    fresh = image_nano(seed=0, num_classes=5)  # same backbone, untrained adapters and head
    x = torch.randn(2, 3, 64, 64)
    assert not torch.allclose(_outputs(fresh, x), _outputs(trained, x))
    assert load_trained_weights(fresh, path) == "adapter"
    torch.testing.assert_close(_outputs(fresh, x), _outputs(trained, x), rtol=0, atol=0)


@pytest.mark.parametrize("wrap", [False, True])
def test_trained_weights_full_state_dict(tmp_path, image_nano, wrap):
    trained = _trained(image_nano(seed=0, num_classes=5), seed=1)
    with torch.no_grad():
        trained.norm.weight.mul_(1.5)  # a backbone change only a full file carries
    state = trained.state_dict()
    payload = {"model": state, "model_args": trained.model_args} if wrap else state
    path = atomic_save(payload, tmp_path / "model_final.pth")
    assert not is_adapter_checkpoint(torch.load(path, map_location="cpu", weights_only=True))

    other = image_nano(seed=3, num_classes=5)
    x = torch.randn(2, 3, 64, 64)
    assert load_trained_weights(other, path) == "full"
    torch.testing.assert_close(_outputs(other, x), _outputs(trained, x), rtol=0, atol=0)


def test_trained_weights_refuse_a_file_of_another_model(tmp_path, image_nano):
    path = atomic_save(image_nano(num_classes=5).state_dict(), tmp_path / "model_final.pth")
    with pytest.raises(CheckpointError, match=r"model_final\.pth: does not match the model"):
        load_trained_weights(image_nano(num_classes=5, adapter="parallel"), path)
