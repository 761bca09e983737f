"""Helpers for the checkpoint tests: random tiny models and writers of the published layouts."""

from __future__ import annotations

import numpy as np
import timm
import torch


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter distinct random values, so that a wrong mapping cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def timm_vit(seed: int = 0, **kwargs) -> torch.nn.Module:
    """A small timm ViT (2 blocks, 192 wide, 64 px) with random weights."""
    args = dict(depth=2, img_size=64, num_classes=7) | kwargs
    return randomize(timm.create_model("vit_tiny_patch16_224", pretrained=False, **args), seed)


def to_npz_arrays(
    sd: dict[str, torch.Tensor], num_heads: int, scanned: bool = False, root: str = ""
) -> dict[str, np.ndarray]:
    """timm state dict -> Google ViT .npz arrays (the inverse mapping, written independently).

    ``scanned=False`` gives the original ViT / AugReg naming (``encoderblock_{i}``,
    ``MultiHeadDotProductAttention_1``, ``LayerNorm_2``, ``MlpBlock_3``); ``scanned=True`` the
    big_vision naming with blocks stacked along a leading axis (``MultiHeadDotProductAttention_0``,
    ``LayerNorm_1``, ``MlpBlock_0``, top-level ``pos_embedding``).
    """
    n = lambda t: t.detach().numpy().copy()  # noqa: E731
    c = sd["cls_token"].shape[-1]
    hd = c // num_heads
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    mha, ln2, mlp = (
        ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
        if scanned
        else ("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
    )
    out = {
        "embedding/kernel": n(sd["patch_embed.proj.weight"].permute(2, 3, 1, 0)),
        "embedding/bias": n(sd["patch_embed.proj.bias"]),
        "cls": n(sd["cls_token"]),
        ("pos_embedding" if scanned else "Transformer/posembed_input/pos_embedding"): n(sd["pos_embed"]),
        "Transformer/encoder_norm/scale": n(sd["norm.weight"]),
        "Transformer/encoder_norm/bias": n(sd["norm.bias"]),
        "head/kernel": n(sd["head.weight"].T),
        "head/bias": n(sd["head.bias"]),
    }
    per_block: list[dict[str, np.ndarray]] = []
    for i in range(depth):
        b = f"blocks.{i}."
        blk = {
            "LayerNorm_0/scale": n(sd[b + "norm1.weight"]),
            "LayerNorm_0/bias": n(sd[b + "norm1.bias"]),
            f"{ln2}/scale": n(sd[b + "norm2.weight"]),
            f"{ln2}/bias": n(sd[b + "norm2.bias"]),
            f"{mha}/out/kernel": n(sd[b + "attn.proj.weight"].T.reshape(num_heads, hd, c)),
            f"{mha}/out/bias": n(sd[b + "attn.proj.bias"]),
        }
        for name, w, bias in zip(
            ("query", "key", "value"), sd[b + "attn.qkv.weight"].chunk(3), sd[b + "attn.qkv.bias"].chunk(3)
        ):
            blk[f"{mha}/{name}/kernel"] = n(w.T.reshape(c, num_heads, hd))
            blk[f"{mha}/{name}/bias"] = n(bias.reshape(num_heads, hd))
        for j in range(2):
            blk[f"{mlp}/Dense_{j}/kernel"] = n(sd[b + f"mlp.fc{j + 1}.weight"].T)
            blk[f"{mlp}/Dense_{j}/bias"] = n(sd[b + f"mlp.fc{j + 1}.bias"])
        per_block.append(blk)
    if scanned:
        for name in per_block[0]:
            out["Transformer/encoderblock/" + name] = np.stack([blk[name] for blk in per_block])
    else:
        for i, blk in enumerate(per_block):
            out.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in blk.items()})
    return {root + k: v for k, v in out.items()}


def to_videomae_pretrain(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm-named video state dict -> VideoMAE pre-training layout (written independently).

    Splits ``qkv.bias`` into ``q_bias`` / ``v_bias`` (the key part must be zero in ``sd``), renames
    ``fc_norm`` to the encoder's ``norm``, prefixes ``encoder.`` and adds a decoder.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        if k.endswith("attn.qkv.bias"):
            q, key_bias, val = v.chunk(3)
            assert torch.count_nonzero(key_bias) == 0
            out["encoder." + k.replace("qkv.bias", "q_bias")] = q.clone()
            out["encoder." + k.replace("qkv.bias", "v_bias")] = val.clone()
        elif k.startswith("fc_norm."):
            out["encoder." + k[3:]] = v.clone()
        else:
            out["encoder." + k] = v.clone()
    c = sd["fc_norm.weight"].shape[0]
    out["encoder_to_decoder.weight"] = torch.randn(c // 2, c)
    out["mask_token"] = torch.zeros(1, 1, c // 2)
    out["decoder.blocks.0.attn.qkv.weight"] = torch.randn(3 * c // 2, c // 2)
    out["decoder.norm.weight"] = torch.ones(c // 2)
    out["decoder.head.weight"] = torch.randn(1536, c // 2)
    return out
