"""Bad paths and bad checkpoints give the promised errors, and leave the model untouched."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from ckpt_helpers import timm_vit

from video_sparse.checkpoint import SUPPORTED_SUFFIXES, CheckpointError, load_pretrained


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, snap):
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


def test_missing_path_names_it(tmp_path):
    path = tmp_path / "nope" / "vit.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_pretrained(timm_vit(), path)


@pytest.mark.parametrize("name", ["vit.tflite", "weights.txt", "model"])
def test_unknown_extension_lists_supported_ones(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(timm_vit(), path)
    assert str(path) in str(err.value)
    assert all(s in str(err.value) for s in SUPPORTED_SUFFIXES)


def test_directory_is_refused(tmp_path):
    folder = tmp_path / "ckpt.pth"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="directory"):
        load_pretrained(timm_vit(), folder)


@pytest.mark.parametrize("suffix", [".pth", ".npz", ".safetensors", ".bin", ".onnx"])
def test_corrupt_file_names_it(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 7)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_pretrained(timm_vit(), path)


def test_truncated_torch_file(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(timm_vit().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_pretrained(timm_vit(), path)


class _Payload:
    """Unpickling this would create a file: weights_only loading must refuse before that."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": _Payload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing"):
        load_pretrained(timm_vit(), path)
    assert not marker.exists()


def test_missing_backbone_keys_listed_in_one_block(tmp_path):
    src = timm_vit(seed=0)
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("blocks.1.")}
    sd.pop("norm.weight")
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    dst = timm_vit(seed=1)
    snap = _snapshot(dst)
    expected_missing = [k for k in dst.state_dict() if k.startswith("blocks.1.")] + ["norm.weight"]
    assert len(expected_missing) > 10

    with pytest.raises(CheckpointError) as err:
        load_pretrained(dst, path)

    msg = str(err.value)
    assert f"{len(expected_missing)} backbone key(s)" in msg and str(path) in msg
    for key in expected_missing:
        assert f"  {key}\n" in msg + "\n"
    assert _unchanged(dst, snap)


def test_missing_key_list_is_capped(tmp_path):
    sd = {"cls_token": torch.zeros(1, 1, 192)}
    path = tmp_path / "nearly_empty.pth"
    torch.save(sd, path)
    dst = timm_vit()
    num_missing = len(dst.state_dict()) - 1 - 2  # minus cls_token and the two head keys
    with pytest.raises(CheckpointError) as err:
        load_pretrained(dst, path)
    msg = str(err.value)
    listed = [line for line in msg.splitlines() if line.startswith("  ") and "more" not in line]
    assert len(listed) == 20
    assert f"and {num_missing - 20} more ({num_missing} in total)" in msg


def test_strict_false_reports_missing(tmp_path):
    src = timm_vit(seed=0)
    sd = {k: v for k, v in src.state_dict().items() if k != "norm.bias"}
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    dst = timm_vit(seed=1)
    report = load_pretrained(dst, path, strict=False)
    assert report.missing == ["norm.bias"]
    assert torch.equal(dst.norm.weight, src.norm.weight)


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    sd = timm_vit(seed=0).state_dict()
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(100, 192)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    dst = timm_vit(seed=1)
    snap = _snapshot(dst)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(dst, path)
    assert "blocks.0.mlp.fc1.weight: checkpoint (100, 192) vs model (768, 192)" in str(err.value)
    assert _unchanged(dst, snap)


def test_image_weights_into_video_model_refused(tmp_path, video_nano):
    """A 2-D patch embedding cannot silently fill a 3-D one."""
    sd = video_nano().state_dict()
    sd["patch_embed.proj.weight"] = torch.zeros(96, 3, 16, 16)
    path = tmp_path / "img.pth"
    torch.save(sd, path)
    expected = "patch_embed.proj.weight: checkpoint (96, 3, 16, 16)"
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        load_pretrained(video_nano(seed=1), path)


def test_file_without_tensors(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, path)
    with pytest.raises(CheckpointError, match="no tensors"):
        load_pretrained(timm_vit(), path)


def test_npz_without_vit_layout(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, foo=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a ViT .npz"):
        load_pretrained(timm_vit(), path)


def test_q_bias_without_v_bias(tmp_path):
    sd = dict(timm_vit().state_dict())
    sd["blocks.0.attn.q_bias"] = sd.pop("blocks.0.attn.qkv.bias")[:192]
    path = tmp_path / "half.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="blocks.0.attn.q_bias"):
        load_pretrained(timm_vit(), path)


def test_single_array_named_npz(tmp_path):
    path = tmp_path / "one_array.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match="single array"):
        load_pretrained(timm_vit(), path)


def test_missing_and_unexpected_in_one_message(tmp_path):
    """A prefix the loader does not know shows up as missing and unexpected keys side by side."""
    sd = {"trunk." + k: v for k, v in timm_vit().state_dict().items()}
    path = tmp_path / "prefixed.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(timm_vit(seed=1), path)
    msg = str(err.value)
    assert "backbone key(s) of the model are missing" in msg and "  blocks.0.norm1.weight" in msg
    assert "have no place in the model" in msg and "  trunk.blocks.0.norm1.weight" in msg
