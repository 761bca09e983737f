"""ONNX export of the sparse nano image and video models: onnxruntime equals PyTorch (logits within 1e-4,
kept-token indices identical) at batch sizes other than the export's; the dense export; the tool's report."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.adapters import set_trainable
from video_sparse.analysis.onnx_export import check_onnx, export_onnx, ort_session
from video_sparse.data import PyAVReader, make_demo_dataset
from video_sparse.data.video_transforms import VideoEvalTransform

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = ROOT / "assets" / "demo_backbone_nano.safetensors"


def _perturbed(name: str, **kwargs) -> torch.nn.Module:
    """A model whose adapters and head are non-zero (zero-initialised ones would hide their part of the graph)."""
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    set_trainable(model)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _demo_clips(root: Path, count: int) -> torch.Tensor:
    """Real clips (the demo's H.264 test files), normalised as the demo does: (count, 3, 16, 64, 64)."""
    make_demo_dataset(root, num_train=1, num_val=1, num_test=count, seed=2)
    transform = VideoEvalTransform(64, 64, 1, (0.5,) * 3, (0.5,) * 3)
    clips = []
    for i in range(count):
        with PyAVReader(root / "videos" / "test" / f"test_{i:05d}.mp4") as reader:
            clips.append(transform(reader.get_frames(range(16))))
    return torch.stack(clips)


def _digits(count: int) -> torch.Tensor:
    """Real images: scikit-learn's handwritten digits, upsampled to 64 px, RGB, normalised."""
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images[:count], dtype=torch.float32) / 16.0
    images = torch.nn.functional.interpolate(images[:, None], size=64, mode="bilinear", align_corners=False)
    return (images.repeat(1, 3, 1, 1) - 0.5) / 0.5


@pytest.mark.parametrize("kind", ["image", "video"])
def test_sparse_export_matches_pytorch_with_kept_indices(tmp_path, kind):
    if kind == "video":
        model = _perturbed("sparse_videomae_nano_patch16_64", num_classes=4, checkpoint=str(BACKBONE))
        x = _demo_clips(tmp_path / "demo", 5)
    else:
        model = _perturbed("sparse_vit_nano_patch16_64", num_classes=10)
        x = _digits(5)
    path = export_onnx(model, tmp_path / "sparse.onnx", x[:2])
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    assert any(node.op_type == "TopK" for node in graph.node)
    assert [o.name for o in graph.output] == ["logits", "kept_block1", "kept_block2", "kept_block3"]
    check = check_onnx(path, model, [x[:1], x[2:5]])
    assert check.batch_sizes == [1, 3]
    assert check.max_abs_diff <= 1e-4 and check.kept_equal, check
    assert check.rows_same_set == 1.0 and check.first_layer_swap_gap == 0 and check.first_layer_mean_score > 0
    # the check can fail: against other adapter/head weights the selection and the logits differ
    other = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    wrong = check_onnx(path, other, [x[2:5]])
    assert not wrong.passed() and wrong.kept_mismatches > 0 and wrong.rows_same_set < 1
    assert wrong.first_layer_swap_gap > 1e-3 * wrong.first_layer_mean_score
    # the kept indices are a real selection: fewer tokens per layer, distinct patches, the new fused token last
    outs = ort_session(path).run(None, {"input": x[2:5].numpy()})
    counts = [o.shape[1] for o in outs[1:]]
    assert counts == sorted(counts, reverse=True) and counts[0] < model.patch_embed.num_patches
    for kept in outs[1:]:
        assert (kept[:, -1] == -1).all()
        for row in kept:
            patches = row[row >= 0]
            assert len(set(patches.tolist())) == len(patches) and patches.max() < model.patch_embed.num_patches
    with torch.no_grad():
        logits = model(x[2:5])
    assert float(logits.std()) > 0.05  # the comparison is on non-trivial logits


def test_dense_export_and_rejects_batch_of_one(tmp_path):
    model = _perturbed("sparse_vit_nano_patch16_64", num_classes=10, keep_rate=1.0)
    x = _digits(3)
    with pytest.raises(ValueError, match="batch of at least 2"):
        export_onnx(model, tmp_path / "d.onnx", x[:1])
    path = export_onnx(model, tmp_path / "dense.onnx", x[:2], with_kept=False)
    assert not any(node.op_type == "TopK" for node in onnx.load(str(path)).graph.node)
    check = check_onnx(path, model, [x])
    assert check.max_abs_diff <= 1e-4 and check.kept_equal


def test_tool_exports_a_trained_demo_adapter_and_checks_on_real_clips(tmp_path):
    from video_sparse.checkpoint import save_adapter_checkpoint

    model = _perturbed(
        "sparse_videomae_nano_patch16_64",
        num_classes=4,
        checkpoint=str(BACKBONE),
        adapter_dim=16,
        sparse_layers=(1, 2, 3),
    )
    adapter = save_adapter_checkpoint(model, tmp_path / "adapter.pth")
    data = tmp_path / "demo"
    make_demo_dataset(data, num_train=1, num_val=1, num_test=4, seed=1)
    out = tmp_path / "onnx"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "export_onnx.py"),
        "--experiment",
        "demo",
        "--checkpoint",
        str(adapter),
        "--pretrained",
        str(BACKBONE),
        "--out",
        str(out),
        "--",
        f"data.root={data}",
        "data.demo.num_train=1",
        "data.demo.num_val=1",
        "data.demo.num_test=4",
        "data.demo.seed=1",
    ]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["check_inputs"] == "real" and report["check"]["passed"]
    assert report["check"]["batch_sizes"] == [1, 3] and report["check"]["kept_equal"]
    assert "kept-token indices identical" in result.stdout
    # the exported graph carries the trained adapter: its logits equal the PyTorch model's on a real clip
    clip = _demo_clips(tmp_path / "demo", 4)[:1]
    with torch.no_grad():
        expected = model(clip).numpy()
    got = ort_session(out / "sparse.onnx").run(["logits"], {"input": clip.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_chunked_video_score_exports_for_every_batch_size(tmp_path, monkeypatch):
    """With a small chunk budget PyTorch's query-chunk size depends on the batch (as for ViT-B clips on the
    CPU); the graph exported at batch 2 must still be right at batches 1 and 3."""
    from video_sparse.layers import chunked_attention

    monkeypatch.setattr(chunked_attention, "CPU_CHUNK_ELEMENTS", 2**16)
    model = _perturbed("sparse_videomae_nano_patch16_64", num_classes=4, score="mean_attn")
    heads, tokens = model.blocks[0].attn.num_heads, model.patch_embed.num_patches
    assert chunked_attention.score_chunk_rows(2 * heads, tokens, torch.device("cpu")) < tokens  # several chunks ...
    rows = chunked_attention.score_chunk_rows
    assert rows(heads, tokens, torch.device("cpu")) != rows(2 * heads, tokens, torch.device("cpu"))  # ... per batch
    x = torch.randn(4, 3, 16, 64, 64)
    path = export_onnx(model, tmp_path / "chunked.onnx", x[:2])
    assert all(m.score_chunk_size is None for m in model.modules() if hasattr(m, "score_chunk_size"))
    check = check_onnx(path, model, [x[:1], x[1:4]])
    assert check.max_abs_diff <= 1e-4 and check.kept_equal, check
