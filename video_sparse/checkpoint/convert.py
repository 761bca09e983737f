"""Convert published checkpoint layouts to timm ``VisionTransformer`` parameter names.

Every converter returns a flat ``{name: tensor}`` dict in the names the backbone uses
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``,
``blocks.{i}.attn.proj``, ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1|fc2``, ``norm``, ``fc_norm``,
``head``). Keys a converter does not understand are passed through under their original name,
so the loader can report them as unexpected instead of losing them silently.

Layouts recognised by :func:`convert_torch` (:func:`detect_layout` tells them apart by their key
sets, not by key-name endings):

* ``timm``: timm's ``VisionTransformer`` names, as the model uses them;
* ``videomae``: VideoMAE / VideoMAE V2 (ViT-S/B/L/H/g): separate ``q_bias``/``v_bias`` (no key
  bias), ``encoder.`` prefix, a pre-training decoder, LayerScale as ``gamma_1``/``gamma_2``;
* ``hf-transformers``: Hugging Face ``transformers`` ``VideoMAEModel`` / ``VideoMAEForVideoClassification``
  / ``VideoMAEForPreTraining`` (the ``MCG-NJU/videomae-*`` repositories) and ``ViTModel`` /
  ``ViTForImageClassification``: ``[videomae.|vit.]embeddings.patch_embeddings.projection``,
  ``encoder.layer.N.attention.attention.{query,key,value}`` (separate matrices; VideoMAE's
  ``q_bias``/``v_bias``), ``attention.output.dense``, ``layernorm_before``/``layernorm_after``,
  ``intermediate.dense``/``output.dense``, ``layernorm``, ``fc_norm``, ``classifier``;
* ``mmaction2``: mmaction2's VideoMAE ``VisionTransformer`` under a ``Recognizer3D``
  (``state_dict`` + ``meta``; ``backbone.patch_embed.projection``, ``blocks.N.mlp.layers.0.0`` /
  ``layers.1`` (mmcv ``FFN``), ``q_bias``/``v_bias``, ``gamma_1``/``gamma_2``, a saved sin-cos
  ``pos_embed`` buffer, ``cls_head.fc_cls``);
* ``sparse-tuning``: the fine-tuned checkpoints of the Sparse-Tuning release
  (``blocks.N.adaptmlp.*`` Dense Adapters -> ``blocks.N.adapter.*``; head ``head.0`` =
  ``BatchNorm1d(affine=False)`` running statistics -> ``head_norm.*``, ``head.1`` -> ``head``).

Wrappers (``model``, ``module`` ...) and prefixes (``module.``, ``encoder.``, ``backbone.``,
torch.compile's ``_orig_mod.``) are removed first (for the Hugging Face layout, whose
``encoder.layer`` is part of the name, after its own conversion).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .report import CheckpointError, format_keys

logger = logging.getLogger(__name__)

#: Top-level keys whose value is the state dict (training scripts, DeepSpeed, Lightning-style files).
WRAPPER_KEYS: tuple[str, ...] = ("model", "module", "state_dict", "model_state")
#: Name prefixes removed from every key (DataParallel / DeepSpeed, MAE-style encoders, detection
#: backbones, ``torch.compile``).
STRIPPED_PREFIXES: tuple[str, ...] = ("module.", "encoder.", "backbone.", "_orig_mod.")
#: A prefix removed when every key has it (a wrapper module's attribute name).
UNIFORM_PREFIX = "model."
#: The module name ``torch.compile`` inserts; removed wherever it appears in a key.
COMPILE_WRAPPER = "_orig_mod"
#: Modules of a masked-autoencoder pre-training checkpoint that are not part of the encoder.
PRETRAINING_ONLY: tuple[str, ...] = ("decoder", "encoder_to_decoder", "mask_token", "decoder_pos_embed")
#: Sparse-Tuning release: adapter module name, head as ``Sequential(BatchNorm1d, Linear)``.
RELEASED_ADAPTER = "adaptmlp"
RELEASED_HEAD_NORM, RELEASED_HEAD = "head.0.", "head.1."
#: Value types of a saved ``args`` namespace that are kept (anything else is skipped).
_PLAIN_ARG_TYPES = (str, int, float, bool, type(None))
#: Where the JAX releases nest their parameter tree.
NPZ_ROOTS: tuple[str, ...] = ("", "opt/target/", "params/", "params/img/")
#: Sub-module names inside an encoder block: (attention, second LayerNorm, MLP). The first set is
#: the original ViT / AugReg release, the second big_vision's.
NPZ_BLOCK_NAMES: tuple[tuple[str, str, str], ...] = (
    ("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3"),
    ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0"),
)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


class _NpzReader:
    """Looks up arrays under a root, remembering which ones were used."""

    def __init__(self, arrays: Mapping[str, np.ndarray], root: str, path: str) -> None:
        self.arrays, self.root, self.path = arrays, root, path
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return self.root + name in self.arrays

    def get(self, name: str, index: int | None = None) -> np.ndarray:
        key = self.root + name
        if key not in self.arrays:
            raise CheckpointError(f"{self.path}: array {key!r} missing from the .npz checkpoint")
        self.used.add(key)
        a = self.arrays[key]
        return a[index] if index is not None else a


def _npz_blocks(r: _NpzReader) -> tuple[list[tuple[str, int | None]], tuple[str, str, str]]:
    """Return ``[(block_prefix, index_in_stacked_array)]`` per block and the sub-module names."""
    if r.has("Transformer/encoderblock/LayerNorm_0/scale"):  # scanned layout: leading depth axis
        depth = r.arrays[r.root + "Transformer/encoderblock/LayerNorm_0/scale"].shape[0]
        blocks = [("Transformer/encoderblock/", i) for i in range(depth)]
    else:
        depth = 0
        while r.has(f"Transformer/encoderblock_{depth}/LayerNorm_0/scale"):
            depth += 1
        blocks = [(f"Transformer/encoderblock_{i}/", None) for i in range(depth)]
    if not blocks:
        return [], NPZ_BLOCK_NAMES[0]
    first = blocks[0][0]
    for names in NPZ_BLOCK_NAMES:
        if r.has(f"{first}{names[0]}/query/kernel"):
            return blocks, names
    raise CheckpointError(
        f"{r.path}: unknown encoder block layout under {r.root + first!r}; expected one of "
        f"{[n[0] for n in NPZ_BLOCK_NAMES]}"
    )


def convert_npz(arrays: Mapping[str, np.ndarray], path: str = "<npz>") -> dict[str, torch.Tensor]:
    """Convert a Google ViT ``.npz`` (original release, AugReg, big_vision) to timm names.

    Layout handled: ``embedding/kernel`` (kh, kw, in, out), ``cls`` (1, 1, C), position table
    ``Transformer/posembed_input/pos_embedding`` or ``pos_embedding`` (1, N, C), per-block
    LayerNorms, attention ``{query,key,value}/kernel`` (C, heads, head_dim) with ``bias``
    (heads, head_dim), ``out/kernel`` (heads, head_dim, C), MLP ``Dense_{0,1}`` (in, out),
    ``Transformer/encoder_norm`` and ``head`` (C, classes); blocks either as
    ``encoderblock_{i}`` or stacked in one ``encoderblock`` with a leading depth axis; the tree
    optionally rooted at ``opt/target/``, ``params/`` or ``params/img/``.

    Args:
        arrays: name -> array, as read from the archive.
        path: file name used in error messages.

    Returns:
        timm-named tensors; arrays that were not converted keep their original name.
    """
    root = next((p for p in NPZ_ROOTS if p + "embedding/kernel" in arrays), None)
    if root is None:
        raise CheckpointError(
            f"{path}: not a ViT .npz checkpoint (no 'embedding/kernel' under any of {list(NPZ_ROOTS)})"
        )
    r = _NpzReader(arrays, root, path)
    out: dict[str, torch.Tensor] = {}

    kernel = r.get("embedding/kernel")
    if kernel.ndim == 4:  # HWIO -> OIHW
        kernel = kernel.transpose(3, 2, 0, 1)
    out["patch_embed.proj.weight"] = _tensor(kernel)
    if r.has("embedding/bias"):
        out["patch_embed.proj.bias"] = _tensor(r.get("embedding/bias"))
    if r.has("cls"):
        out["cls_token"] = _tensor(r.get("cls"))
    for pos_name in ("Transformer/posembed_input/pos_embedding", "pos_embedding"):
        if r.has(pos_name):
            pos = r.get(pos_name)
            out["pos_embed"] = _tensor(pos if pos.ndim == 3 else pos[None])
            break

    blocks, (mha, ln2, mlp) = _npz_blocks(r)
    for i, (bp, idx) in enumerate(blocks):
        t = f"blocks.{i}."
        out[t + "norm1.weight"] = _tensor(r.get(bp + "LayerNorm_0/scale", idx))
        out[t + "norm1.bias"] = _tensor(r.get(bp + "LayerNorm_0/bias", idx))
        # (C, heads, head_dim) -> (heads*head_dim, C), rows ordered q, k, v as in timm's qkv.
        qkv_w = [r.get(f"{bp}{mha}/{n}/kernel", idx) for n in ("query", "key", "value")]
        out[t + "attn.qkv.weight"] = _tensor(np.concatenate([w.reshape(w.shape[0], -1).T for w in qkv_w]))
        if r.has(f"{bp}{mha}/query/bias"):
            qkv_b = [r.get(f"{bp}{mha}/{n}/bias", idx).reshape(-1) for n in ("query", "key", "value")]
            out[t + "attn.qkv.bias"] = _tensor(np.concatenate(qkv_b))
        w_out = r.get(f"{bp}{mha}/out/kernel", idx)  # (heads, head_dim, C) -> (C, heads*head_dim)
        out[t + "attn.proj.weight"] = _tensor(w_out.reshape(-1, w_out.shape[-1]).T)
        out[t + "attn.proj.bias"] = _tensor(r.get(f"{bp}{mha}/out/bias", idx))
        out[t + "norm2.weight"] = _tensor(r.get(f"{bp}{ln2}/scale", idx))
        out[t + "norm2.bias"] = _tensor(r.get(f"{bp}{ln2}/bias", idx))
        for j in range(2):
            out[t + f"mlp.fc{j + 1}.weight"] = _tensor(r.get(f"{bp}{mlp}/Dense_{j}/kernel", idx).T)
            out[t + f"mlp.fc{j + 1}.bias"] = _tensor(r.get(f"{bp}{mlp}/Dense_{j}/bias", idx))

    if r.has("Transformer/encoder_norm/scale"):
        out["norm.weight"] = _tensor(r.get("Transformer/encoder_norm/scale"))
        out["norm.bias"] = _tensor(r.get("Transformer/encoder_norm/bias"))
    if r.has("head/kernel"):
        out["head.weight"] = _tensor(r.get("head/kernel").T)
        out["head.bias"] = _tensor(r.get("head/bias"))

    for key, a in arrays.items():
        if key not in r.used and a.dtype.kind in "biuf":
            out[key] = _tensor(a)
    return out


def unwrap_state_dict(obj: Any, path: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a loaded ``torch.save`` object.

    Descends through :data:`WRAPPER_KEYS` (``model``, ``module``, ``state_dict``, ``model_state``)
    and keeps the tensor entries of the mapping it ends in (non-tensor entries are skipped).
    """
    for _ in range(len(WRAPPER_KEYS)):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"{path}: no tensors found; top-level keys: {sorted(map(str, obj.keys()))[:20]} "
            f"(looked inside {list(WRAPPER_KEYS)})"
        )
    skipped = len(obj) - len(tensors)
    if skipped:
        logger.debug("%s: skipped %d non-tensor entries", path, skipped)
    return tensors


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], path: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Remove any run of :data:`STRIPPED_PREFIXES` from the start of every key, and a ``model.`` that
    starts every key (a wrapper module, e.g. VideoMAE V2's Hub repositories, Lightning modules)."""
    out: dict[str, torch.Tensor] = {}
    if state_dict and all(k.startswith(UNIFORM_PREFIX) for k in state_dict):
        state_dict = {k[len(UNIFORM_PREFIX) :]: v for k, v in state_dict.items()}
    for key, value in state_dict.items():
        name = ".".join(part for part in key.split(".") if part != COMPILE_WRAPPER)
        while any(name.startswith(p) for p in STRIPPED_PREFIXES):
            name = name.split(".", 1)[1]
        if name in out:
            raise CheckpointError(f"{path}: keys collide after removing prefixes {STRIPPED_PREFIXES}: {name!r}")
        out[name] = value
    return out


#: Layout names :func:`convert_torch` reports (``LoadReport.format``) and what they stand for.
LAYOUTS: dict[str, str] = {
    "timm": "timm VisionTransformer names",
    "videomae": "VideoMAE / VideoMAE V2 (q_bias/v_bias, encoder. prefix)",
    "hf-transformers": "Hugging Face transformers VideoMAE / ViT (embeddings.patch_embeddings, encoder.layer.N)",
    "mmaction2": "mmaction2 VideoMAE recognizer (backbone.*, mlp.layers, cls_head.fc_cls)",
    "sparse-tuning": "the Sparse-Tuning release (adaptmlp adapters, BatchNorm head)",
}
#: Hugging Face ``transformers``: the patch embedding, after the base-model prefix (``videomae.``, ``vit.``).
HF_PATCH = "embeddings.patch_embeddings.projection.weight"
_HF_PATCH_KEY = re.compile(r"(?:[A-Za-z_]\w*\.)?" + re.escape(HF_PATCH))
_HF_QKV = re.compile(
    r"encoder\.layer\.(\d+)\.attention\.attention\.(query\.weight|key\.weight|value\.weight|query\.bias|key\.bias|value\.bias|q_bias|v_bias)"
)
_HF_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)")
#: Per-layer names of the Hugging Face layout -> timm's (whole parameter names first, then modules).
_HF_LAYER_PARAMS = {"layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
_HF_LAYER_MODULES = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
_HF_TOP_PARAMS = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed"}
_HF_TOP_MODULES = {
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "layernorm": "norm",
    "fc_norm": "fc_norm",
    "classifier": "head",
    "pooler.dense": "pre_logits.fc",
}
#: mmaction2's VideoMAE backbone (after ``backbone.`` is removed) and head -> timm names.
_MMACTION_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"patch_embed\.projection\.(\w+)"), r"patch_embed.proj.\1"),
    (re.compile(r"blocks\.(\d+)\.mlp\.layers\.0\.0\.(\w+)"), r"blocks.\1.mlp.fc1.\2"),
    (re.compile(r"blocks\.(\d+)\.mlp\.layers\.1\.(\w+)"), r"blocks.\1.mlp.fc2.\2"),
    (re.compile(r"cls_head\.fc_cls\.(\w+)"), r"head.\1"),
)
_MMACTION_SIGNATURE = re.compile(
    r"patch_embed\.projection\.weight|blocks\.\d+\.mlp\.layers\.0\.0\.weight|cls_head\.fc_cls\.weight"
)
#: VideoMAE's and mmaction2's LayerScale (``x + gamma_1 * attn(...)``) -> timm's ``ls1.gamma``.
_GAMMA = re.compile(r"blocks\.(\d+)\.gamma_([12])")


def is_hf_transformers(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Hugging Face ``transformers`` layout: an ``[<base>.]embeddings.patch_embeddings.projection.weight`` key."""
    return any(_HF_PATCH_KEY.fullmatch(k) for k in state_dict)


def is_mmaction2(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """mmaction2's VideoMAE layout (prefixes removed): ``patch_embed.projection``, ``mlp.layers.0.0`` or
    ``cls_head.fc_cls``."""
    return any(_MMACTION_SIGNATURE.fullmatch(k) for k in state_dict)


def is_videomae(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """VideoMAE layout (prefixes removed): an attention with ``q_bias``/``v_bias`` parameters, a
    pre-training decoder, or a 3-D (tubelet) patch embedding under timm's name."""
    for key, value in state_dict.items():
        if re.fullmatch(r"blocks\.\d+\.attn\.[qv]_bias", key) or key.split(".", 1)[0] in PRETRAINING_ONLY:
            return True
        if key == "patch_embed.proj.weight" and value.ndim == 5:
            return True
    return False


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The layout (a :data:`LAYOUTS` name) a state dict's key set shows; ``"timm"`` when none other does.

    Prefixes are expected to be removed (:func:`strip_prefixes`), except for the Hugging Face layout,
    which is recognised either way.
    """
    if is_hf_transformers(state_dict):
        return "hf-transformers"
    if is_mmaction2(state_dict):
        return "mmaction2"
    if is_videomae(state_dict):
        return "videomae"
    if is_sparse_tuning_release(state_dict):
        return "sparse-tuning"
    return "timm"


def _hf_rename(name: str) -> str | None:
    """timm name of a Hugging Face parameter name (base prefix removed), or None when it has none."""
    layer = _HF_LAYER.fullmatch(name)
    if layer:
        index, rest = layer.groups()
        module, _, param = rest.rpartition(".")
        if rest in _HF_LAYER_PARAMS:
            return f"blocks.{index}.{_HF_LAYER_PARAMS[rest]}"
        return f"blocks.{index}.{_HF_LAYER_MODULES[module]}.{param}" if module in _HF_LAYER_MODULES else None
    if name in _HF_TOP_PARAMS:
        return _HF_TOP_PARAMS[name]
    module, _, param = name.rpartition(".")
    return f"{_HF_TOP_MODULES[module]}.{param}" if module in _HF_TOP_MODULES else None


def _hf_qkv(index: int, parts: Mapping[str, torch.Tensor], path: str) -> dict[str, torch.Tensor]:
    """Stack a Hugging Face layer's separate query/key/value into timm's ``attn.qkv`` (rows q, k, v).

    VideoMAE's ``q_bias``/``v_bias`` give ``qkv.bias = [q, 0, v]`` (its key projection has no bias;
    ``VideoMAESelfAttention`` adds zeros), ViT's ``{query,key,value}.bias`` give ``[q, k, v]``.
    """
    prefix = f"encoder.layer.{index}.attention.attention."
    weights = [parts.get(f"{n}.weight") for n in ("query", "key", "value")]
    if any(w is None for w in weights):
        raise CheckpointError(
            f"{path}: {prefix}{{query,key,value}}.weight incomplete; the file has {sorted(prefix + p for p in parts)}"
        )
    out = {f"blocks.{index}.attn.qkv.weight": torch.cat(weights)}
    separate = [parts.get(f"{n}.bias") for n in ("query", "key", "value")]
    if "q_bias" in parts or "v_bias" in parts:
        if "q_bias" not in parts or "v_bias" not in parts or any(b is not None for b in separate):
            raise CheckpointError(
                f"{path}: {prefix}: q_bias needs v_bias (and no query/key/value.bias); has {sorted(parts)}"
            )
        q = parts["q_bias"]
        out[f"blocks.{index}.attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), parts["v_bias"]])
    elif any(b is not None for b in separate):
        if any(b is None for b in separate):
            raise CheckpointError(f"{path}: {prefix}{{query,key,value}}.bias incomplete; the file has {sorted(parts)}")
        out[f"blocks.{index}.attn.qkv.bias"] = torch.cat(separate)
    return out


def convert_hf_transformers(
    state_dict: Mapping[str, torch.Tensor], path: str = "<checkpoint>"
) -> dict[str, torch.Tensor]:
    """Hugging Face ``transformers`` VideoMAE / ViT names -> timm names.

    The base-model prefix (``videomae.``, ``vit.``; absent in a bare ``VideoMAEModel``) is removed;
    per layer ``layernorm_before`` -> ``norm1``, ``attention.attention.{query,key,value}`` ->
    ``attn.qkv`` (:func:`_hf_qkv`), ``attention.output.dense`` -> ``attn.proj``, ``layernorm_after``
    -> ``norm2``, ``intermediate.dense`` / ``output.dense`` -> ``mlp.fc1`` / ``mlp.fc2``; on top
    ``embeddings.patch_embeddings.projection`` -> ``patch_embed.proj``, ``embeddings.cls_token`` /
    ``position_embeddings`` -> ``cls_token`` / ``pos_embed``, ``layernorm`` -> ``norm``,
    ``fc_norm``, ``classifier`` -> ``head``, ``pooler.dense`` -> ``pre_logits.fc``. Keys with no
    timm name (a pre-training decoder, anything unknown) keep their original name.
    """
    base = next(k[: -len(HF_PATCH)] for k in state_dict if _HF_PATCH_KEY.fullmatch(k))
    out: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        name = key[len(base) :] if base and key.startswith(base) else key
        match = _HF_QKV.fullmatch(name)
        if match:
            qkv.setdefault(int(match.group(1)), {})[match.group(2)] = value
            continue
        new = _hf_rename(name)
        out[new if new is not None else key] = value
    for index, parts in sorted(qkv.items()):
        out.update(_hf_qkv(index, parts, path))
    return out


def convert_mmaction2(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2's VideoMAE names (``backbone.`` already removed) -> timm names: ``patch_embed.projection``
    -> ``patch_embed.proj``, ``mlp.layers.0.0`` / ``mlp.layers.1`` -> ``mlp.fc1`` / ``mlp.fc2``,
    ``cls_head.fc_cls`` -> ``head``; ``gamma_1``/``gamma_2`` and ``q_bias``/``v_bias`` are handled as
    for VideoMAE."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, repl in _MMACTION_RENAMES:
            if pattern.fullmatch(key):
                key = pattern.sub(repl, key)
                break
        out[key] = value
    return out


def rename_gammas(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VideoMAE's / mmaction2's LayerScale ``blocks.N.gamma_1``/``gamma_2`` -> timm's ``blocks.N.ls1.gamma``
    / ``ls2.gamma``."""
    return {(_GAMMA.sub(r"blocks.\1.ls\2.gamma", k) if _GAMMA.fullmatch(k) else k): v for k, v in state_dict.items()}


def merge_qv_bias(state_dict: Mapping[str, torch.Tensor], path: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Fold VideoMAE's ``attn.q_bias`` / ``attn.v_bias`` into ``attn.qkv.bias = [q, 0, v]``.

    VideoMAE's attention has no key bias; a zero key bias gives the same attention (it adds the
    same constant to every logit of a query row, which softmax cancels).
    """
    out: dict[str, torch.Tensor] = {}
    lonely: list[str] = []
    for key, value in state_dict.items():
        if key.endswith(".q_bias"):
            base = key[: -len("q_bias")]
            v = state_dict.get(base + "v_bias")
            if v is None:
                lonely.append(key)
                continue
            out[base + "qkv.bias"] = torch.cat([value, torch.zeros_like(value), v])
        elif key.endswith(".v_bias"):
            if key[: -len("v_bias")] + "q_bias" not in state_dict:
                lonely.append(key)
        else:
            out.setdefault(key, value)
    if lonely:
        raise CheckpointError(f"{path}: q_bias / v_bias without its partner:\n{format_keys(lonely)}")
    return out


def is_pretraining_only(key: str) -> bool:
    """Whether ``key`` belongs to a masked-autoencoder decoder (:data:`PRETRAINING_ONLY`), not the encoder."""
    return key.split(".", 1)[0] in PRETRAINING_ONLY


def is_sparse_tuning_release(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """A fine-tuned checkpoint of the Sparse-Tuning release: ``adaptmlp`` adapters or a BatchNorm head."""
    return any(f".{RELEASED_ADAPTER}." in k for k in state_dict) or (
        RELEASED_HEAD_NORM + "running_mean" in state_dict and RELEASED_HEAD + "weight" in state_dict
    )


def convert_sparse_tuning(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the Sparse-Tuning release's ``blocks.N.adaptmlp.{down1,down2,up1,down3,up2}`` to
    ``blocks.N.adapter.*`` (the same Dense Adapter) and its head ``head.0`` (BatchNorm1d running
    statistics) / ``head.1`` (Linear) to ``head_norm.*`` / ``head.*``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(RELEASED_HEAD_NORM):
            key = "head_norm." + key[len(RELEASED_HEAD_NORM) :]
        elif key.startswith(RELEASED_HEAD):
            key = "head." + key[len(RELEASED_HEAD) :]
        else:
            key = ".".join("adapter" if part == RELEASED_ADAPTER else part for part in key.split("."))
        out[key] = value
    return out


def checkpoint_args(obj: Any) -> dict[str, Any]:
    """The training arguments saved next to the weights (``args``: an ``argparse.Namespace`` read with
    an allow-list, or a dict), as a dict of plain values; ``{}`` when there are none."""
    args = obj.get("args") if isinstance(obj, Mapping) else None
    if args is None:
        return {}
    items = (
        vars(args).items()
        if hasattr(args, "__dict__") and not isinstance(args, Mapping)
        else (args.items() if isinstance(args, Mapping) else ())
    )
    plain = (list, tuple)
    return {
        str(k): (list(v) if isinstance(v, plain) else v)
        for k, v in items
        if isinstance(v, _PLAIN_ARG_TYPES) or (isinstance(v, plain) and all(isinstance(e, _PLAIN_ARG_TYPES) for e in v))
    }


def convert_torch(obj: Any, path: str = "<checkpoint>") -> tuple[dict[str, torch.Tensor], str]:
    """Normalise a ``torch.save`` / safetensors object in any layout of :data:`LAYOUTS` to timm names.

    Returns:
        ``(state_dict, format)``, format one of :data:`LAYOUTS`.
    """
    tensors = unwrap_state_dict(obj, path)
    # only the wrappers' prefixes first: ``encoder.`` is part of the Hugging Face names
    unwrapped = {_strip_wrappers(k): v for k, v in tensors.items()}
    if is_hf_transformers(unwrapped):
        if len(unwrapped) != len(tensors):
            raise CheckpointError(f"{path}: keys collide after removing the 'module.' / '_orig_mod.' wrappers")
        return convert_hf_transformers(unwrapped, path), "hf-transformers"
    state_dict = strip_prefixes(tensors, path)
    fmt = detect_layout(state_dict)
    if fmt == "mmaction2":
        state_dict = convert_mmaction2(state_dict)
    if fmt in ("videomae", "mmaction2"):
        return merge_qv_bias(rename_gammas(state_dict), path), fmt
    if fmt == "sparse-tuning":
        return convert_sparse_tuning(state_dict), fmt
    return state_dict, fmt


def _strip_wrappers(key: str) -> str:
    name = ".".join(part for part in key.split(".") if part != COMPILE_WRAPPER)
    while name.startswith("module."):
        name = name[len("module.") :]
    return name
