"""Reference networks of redistributed checkpoint layouts, written from their documented arithmetic.

Each module's parameter names are the layout's own, so ``state_dict()`` gives the keys the published
files hold:

* Hugging Face ``transformers`` ``VideoMAEModel`` / ``VideoMAEForVideoClassification`` /
  ``VideoMAEForPreTraining`` (its encoder) and ``ViTForImageClassification``: separate
  ``query``/``key``/``value`` projections, VideoMAE's ``q_bias``/``v_bias`` with a zero key bias,
  ``layernorm_before``/``layernorm_after`` with ``config.layer_norm_eps``, a fixed sinusoid table over
  the flattened token index (not saved), input ``(B, T, C, H, W)``; the classifier's ``fc_norm`` is a
  default ``nn.LayerNorm`` (eps 1e-5) over the mean of the tokens;
* mmaction2's VideoMAE ``VisionTransformer`` in a recognizer: ``patch_embed.projection``, ``qkv`` with
  ``q_bias``/``v_bias``, mmcv ``FFN`` (``mlp.layers.0.0`` / ``mlp.layers.1``), ``gamma_1``/``gamma_2``
  LayerScale, a saved sin-cos ``pos_embed`` buffer, ``fc_norm`` (eps 1e-6), ``cls_head.fc_cls``.

No ``transformers`` or ``mmaction2`` import: the tests must not depend on them.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def hf_sinusoid_table(n_position: int, d_hid: int) -> torch.Tensor:
    """``get_sinusoid_encoding_table`` as the Hugging Face VideoMAE computes it (numpy float64)."""
    angles = np.array(
        [[pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)] for pos in range(n_position)]
    )
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.FloatTensor(angles).unsqueeze(0)


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class HFSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, videomae: bool, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads, self.videomae = heads, videomae
        bias = qkv_bias and not videomae
        self.query, self.key, self.value = (nn.Linear(dim, dim, bias=bias) for _ in range(3))
        if videomae and qkv_bias:
            self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        if self.videomae:
            k_bias = torch.zeros_like(self.v_bias) if self.q_bias is not None else None
            q = F.linear(x, self.query.weight, self.q_bias)
            k = F.linear(x, self.key.weight, k_bias)
            v = F.linear(x, self.value.weight, self.v_bias)
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        q, k, v = (t.view(b, n, self.heads, c // self.heads).transpose(1, 2) for t in (q, k, v))
        attn = torch.softmax((q @ k.transpose(-1, -2)) * (c // self.heads) ** -0.5, dim=-1)
        return (attn @ v).transpose(1, 2).reshape(b, n, c)


class HFAttention(nn.Module):
    def __init__(self, dim: int, heads: int, videomae: bool, qkv_bias: bool) -> None:
        super().__init__()
        self.attention = HFSelfAttention(dim, heads, videomae, qkv_bias)
        self.output = _Dense(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.dense(self.attention(x))


class HFLayer(nn.Module):
    def __init__(self, cfg: dict, videomae: bool) -> None:
        super().__init__()
        dim, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.attention = HFAttention(dim, cfg["num_attention_heads"], videomae, cfg.get("qkv_bias", True))
        self.intermediate = _Dense(dim, cfg["intermediate_size"])
        self.output = _Dense(cfg["intermediate_size"], dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=eps)
        self.layernorm_after = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(self.layernorm_before(x)) + x
        return self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x)))) + x


class HFEncoder(nn.Module):
    def __init__(self, cfg: dict, videomae: bool) -> None:
        super().__init__()
        self.layer = nn.ModuleList([HFLayer(cfg, videomae) for _ in range(cfg["num_hidden_layers"])])


class _Projection(nn.Module):
    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.projection = conv


class HFVideoMAEEmbeddings(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        t, p, dim = cfg["tubelet_size"], cfg["patch_size"], cfg["hidden_size"]
        self.patch_embeddings = _Projection(nn.Conv3d(cfg["num_channels"], dim, (t, p, p), (t, p, p)))
        n = (cfg["num_frames"] // t) * (cfg["image_size"] // p) ** 2
        self.position_embeddings = hf_sinusoid_table(n, dim)  # a plain attribute: not in the state dict

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embeddings.projection(pixel_values.permute(0, 2, 1, 3, 4)).flatten(2).transpose(1, 2)
        return x + self.position_embeddings.type_as(x)


class HFVideoMAEModel(nn.Module):
    """``VideoMAEModel``: ``last_hidden_state`` of pixel values (B, T, C, H, W)."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.embeddings = HFVideoMAEEmbeddings(cfg)
        self.encoder = HFEncoder(cfg, videomae=True)
        use_mean = cfg.get("use_mean_pooling", True)
        self.layernorm = None if use_mean else nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixel_values)
        for layer in self.encoder.layer:
            x = layer(x)
        return self.layernorm(x) if self.layernorm is not None else x


class HFVideoMAEForVideoClassification(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.videomae = HFVideoMAEModel(cfg)
        self.fc_norm = nn.LayerNorm(cfg["hidden_size"]) if cfg.get("use_mean_pooling", True) else None
        self.classifier = nn.Linear(cfg["hidden_size"], len(cfg["id2label"]))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.videomae(pixel_values)
        x = self.fc_norm(x.mean(1)) if self.fc_norm is not None else x[:, 0]
        return self.classifier(x)


class HFVideoMAEForPreTraining(nn.Module):
    """The encoder plus the pre-training modules' names (``encoder_to_decoder``, ``mask_token``, ``decoder``)."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.videomae = HFVideoMAEModel(cfg)
        d = cfg["hidden_size"] // 2
        self.encoder_to_decoder = nn.Linear(cfg["hidden_size"], d, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder = nn.Module()
        self.decoder.decoder_layers = nn.ModuleList([nn.LayerNorm(d)])
        self.decoder.norm = nn.LayerNorm(d)
        self.decoder.head = nn.Linear(d, 3 * cfg["tubelet_size"] * cfg["patch_size"] ** 2)


class HFViTForImageClassification(nn.Module):
    """``ViTForImageClassification``: CLS token, learned table, q/k/v biases, classifier on token 0."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        dim, p = cfg["hidden_size"], cfg["patch_size"]
        self.vit = nn.Module()
        self.vit.embeddings = nn.Module()
        self.vit.embeddings.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        n = (cfg["image_size"] // p) ** 2
        self.vit.embeddings.position_embeddings = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.vit.embeddings.patch_embeddings = _Projection(nn.Conv2d(cfg["num_channels"], dim, p, p))
        self.vit.encoder = HFEncoder(cfg, videomae=False)
        self.vit.layernorm = nn.LayerNorm(dim, eps=cfg["layer_norm_eps"])
        self.classifier = nn.Linear(dim, len(cfg["id2label"]))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        e = self.vit.embeddings
        x = e.patch_embeddings.projection(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([e.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + e.position_embeddings
        for layer in self.vit.encoder.layer:
            x = layer(x)
        return self.classifier(self.vit.layernorm(x)[:, 0])


def videomae_config(**kw) -> dict:
    """A small ``config.json`` of the Hugging Face VideoMAE layout (3 heads of 16: no width rule gives 3)."""
    cfg = {
        "architectures": ["VideoMAEForVideoClassification"],
        "model_type": "videomae",
        "hidden_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 3,
        "intermediate_size": 144,
        "hidden_act": "gelu",
        "image_size": 32,
        "patch_size": 16,
        "num_channels": 3,
        "num_frames": 4,
        "tubelet_size": 2,
        "qkv_bias": True,
        "use_mean_pooling": True,
        "layer_norm_eps": 1e-12,
        "id2label": {str(i): f"class_{i}" for i in range(5)},
    }
    cfg.update(kw)
    return cfg


def write_config(folder, cfg: dict) -> None:
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")


class MMAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class MMBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, init_values: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = MMAttention(dim, heads)
        self.mlp = nn.Module()  # mmcv FFN(num_fcs=2): layers = [Sequential(fc1, act, drop), fc2, drop]
        self.mlp.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0)), nn.Linear(hidden, dim), nn.Dropout(0.0)
        )
        if init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g1 = getattr(self, "gamma_1", 1.0)
        g2 = getattr(self, "gamma_2", 1.0)
        x = x + g1 * self.attn(self.norm1(x))
        return x + g2 * self.mlp.layers(self.norm2(x))


class MMActionVideoMAE(nn.Module):
    """A ``Recognizer3D`` with mmaction2's VideoMAE ``VisionTransformer`` backbone (mean pooling) and an
    ``fc_cls`` head; input (B, C, T, H, W)."""

    def __init__(
        self,
        dim: int = 48,
        depth: int = 2,
        heads: int = 3,
        hidden: int = 192,
        frames: int = 4,
        size: int = 32,
        patch: int = 16,
        tubelet: int = 2,
        classes: int = 5,
        init_values: float = 0.1,
    ) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.patch_embed = _Projection(nn.Conv3d(3, dim, (tubelet, patch, patch), (tubelet, patch, patch)))
        n = (frames // tubelet) * (size // patch) ** 2
        vec = torch.arange(dim, dtype=torch.float64)
        vec = torch.pow(10000, -((vec - vec % 2) / dim)).view(1, -1)
        table = torch.arange(n).view(-1, 1) * vec
        table[:, 0::2].sin_()
        table[:, 1::2].cos_()
        self.backbone.register_buffer("pos_embed", table.to(torch.float32).unsqueeze(0))
        self.backbone.blocks = nn.ModuleList([MMBlock(dim, heads, hidden, init_values) for _ in range(depth)])
        self.backbone.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.cls_head = nn.Module()
        self.cls_head.fc_cls = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        x = bb.patch_embed.projection(x).flatten(2).transpose(1, 2) + bb.pos_embed
        for blk in bb.blocks:
            x = blk(x)
        return self.cls_head.fc_cls(bb.fc_norm(x.mean(1)))


def randomize_(model: nn.Module, seed: int, std: float = 0.2) -> nn.Module:
    """Distinct random values in every parameter (LayerNorm scales around 1, the rest around 0); std 0.2
    makes attention peaked enough that a wrong head count moves the logits by about 0.3."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=g) * std
                p.copy_(1.0 + noise if isinstance(module, nn.LayerNorm) and name == "weight" else noise)
    return model.eval()
