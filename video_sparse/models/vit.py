"""One Vision Transformer for images and videos with Sparse-Tuning (arXiv 2405.14700).

``SparseViT`` is timm's ``VisionTransformer`` arithmetic with three switches:

- the token source: 2D patches + CLS token + learned position table (ViT-B/16 ImageNet-21k), or
  VideoMAE tubes (2x16x16) + fixed sin-cos table + mean pooling + ``fc_norm``;
- token sparsification at ``sparse_layers``: after the attention of such a block the tokens are
  scored (``score`` policy), the top ``ceil(keep_rate * N)`` are kept and the rest fused into one
  token; the block's MLP and all later blocks run on the shorter sequence;
- adapters in every block, parallel to the MLP (``adapter``), and for Dense Adapters the dense
  cross-layer connections: blocks are grouped in stages that end just before a sparsifying block;
  each stage's adapter outputs are summed and added to the hidden state at the stage end.

With ``keep_rate=1`` and ``adapter=None`` the model computes exactly the dense backbone. Parameter
names of the backbone are timm's (``blocks.N.attn.qkv`` ...), so checkpoints load by name. Every
parameter starts trainable; :func:`video_sparse.adapters.set_trainable` freezes the backbone.

Sparsifying layers default to the paper's placement scaled to the depth
(:func:`default_sparse_layers`: blocks 3/6/9 of 12 become 6/12/18 of 24, 8/16/24 of 32, 10/20/30 of 40).
Activation checkpointing (``grad_checkpointing=True`` or timm's ``set_grad_checkpointing()``)
recomputes each block in the backward pass; the recomputed forward reuses the token indices the
first forward selected, so both passes drop the same tokens.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple

import torch
from timm.layers import DropPath, LayerScale, Mlp, trunc_normal_
from timm.models import register_model
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..adapters import ADAPTERS, is_adapter_key
from ..layers import Attention, PatchEmbed2d, TubeletEmbed, sincos_position_table
from ..layers.static_tubes import PADDING_ID, PackedTubes, pack_tubes, static_tube_keep
from ..sparsify import (
    SCORE_POLICIES,
    TokenSelection,
    apply_selection,
    num_kept_from_units,
    num_kept_tokens,
    select_tokens,
)
from ..sparsify.padding import num_kept_per_clip, select_tokens_padded

DEFAULT_VIDEO_SCORE = "mean_attn"  # chosen by measurement: BENCHMARKS.md, "Video score policy"
#: The paper's sparsifying blocks (0-based) in a 12-block ViT; deeper models scale them.
PAPER_SPARSE_LAYERS: tuple[int, ...] = (3, 6, 9)
PAPER_DEPTH = 12
HEAD_NORMS = ("none", "batchnorm")


def default_sparse_layers(depth: int) -> tuple[int, ...]:
    """The paper's placement (blocks 3, 6, 9 of 12) in proportion to ``depth``.

    Block ``i`` of 12 becomes ``round(i * depth / 12)`` (halves rounded up): 6/12/18 of 24,
    8/16/24 of 32, 10/20/30 of 40, 1/2/3 of 4. Duplicates (very shallow models) are removed.
    """
    layers = [(i * depth * 2 + PAPER_DEPTH) // (2 * PAPER_DEPTH) for i in PAPER_SPARSE_LAYERS]
    return tuple(sorted({min(max(i, 0), depth - 1) for i in layers}))


class SparseOutput(NamedTuple):
    """What :meth:`SparseViT.forward` returns with ``return_kept=True``.

    Attributes:
        logits: (B, num_classes).
        kept: one (B, K_l) long tensor per sparsifying layer that dropped tokens: the original patch
            index (0 .. num_patches-1, time-major for video) of every kept token, in score order; -1
            marks a fused token that was kept, -2 padding (clips shortened by ``static_tubes``).
    """

    logits: torch.Tensor
    kept: list[torch.Tensor]


class Block(nn.Module):
    """Pre-norm transformer block; optionally sparsifies after attention and runs an adapter.

    ``x = x + attn(norm1(x))``; [select tokens]; ``x = x + mlp(norm2(x)) + adapter(x)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        attn_impl: str = "sdpa",
        sparsify: bool = False,
        score: str = "cls",
        fuse_token: bool = True,
        num_prefix_tokens: int = 1,
        adapter: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_drop=proj_drop, attn_impl=attn_impl)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.sparsify = sparsify
        self.score = score
        self.fuse_token = fuse_token
        self.num_prefix_tokens = num_prefix_tokens
        self.adapter = adapter

    def forward(
        self,
        x: torch.Tensor,
        keep_rate: float = 1.0,
        history: list[torch.Tensor] | None = None,
        kept: torch.Tensor | None = None,
        keep_units: int | None = None,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, TokenSelection | None]:
        """Run the block.

        Args:
            x: (B, P + N, C) tokens.
            keep_rate: fraction of the N scored tokens kept when this block sparsifies.
            history: earlier adapter outputs for history-reading adapters; reduced in place when
                this block drops tokens.
            kept: (B, K) indices to keep instead of the top-scored ones (the recomputed forward of
                activation checkpointing); the fused token's weights still come from the scores.
            keep_units: the keep rate as an integer of 1/10000 (overrides ``keep_rate``; see
                :func:`~video_sparse.sparsify.functional.num_kept_from_units`).
            valid: (B, P + N) bool, True for real tokens of a padded batch, or None: padding is
                ignored by attention and scores, and every sample keeps its own share of its real
                tokens (:mod:`video_sparse.sparsify.padding`).

        Returns:
            (B, P + N', C) tokens, the adapter output (or None), the token selection (or None).
        """
        num_scored = x.shape[1] - self.num_prefix_tokens
        num_keep = num_scored
        scored_valid = None if valid is None else valid[:, self.num_prefix_tokens :]
        if self.sparsify and scored_valid is not None:
            num_keep = num_kept_per_clip(scored_valid, keep_rate, keep_units)
            drops = bool((num_keep < scored_valid.sum(dim=1)).any())
        else:
            if self.sparsify:  # only sparsifying blocks count their kept tokens
                num_keep = (
                    num_kept_tokens(num_scored, keep_rate)
                    if keep_units is None
                    else num_kept_from_units(num_scored, keep_units)
                )
            drops = num_keep < num_scored
        attn_out, scores = self.attn(
            self.norm1(x),
            score=self.score if drops else None,
            num_prefix_tokens=self.num_prefix_tokens,
            key_padding_mask=valid,
        )
        x = x + self.drop_path1(self.ls1(attn_out))
        selection = None
        if scores is not None and scored_valid is not None:
            selection = select_tokens_padded(scores, scored_valid, num_keep, self.fuse_token, kept)
        elif scores is not None:
            if kept is None:  # ranked on detached scores: no tensor saved, so a recomputation may skip it
                kept = select_tokens(scores.detach(), keep_rate, fuse=False, num_keep=num_keep).kept
            selection = _forced_selection(scores, kept, self.fuse_token)
        if selection is not None:
            x = apply_selection(x, selection, self.num_prefix_tokens)
            if history:
                history[:] = [apply_selection(h, selection, self.num_prefix_tokens) for h in history]
        adapter_out = None
        if self.adapter is not None:
            adapter_out = self.adapter(x, history) if self.adapter.uses_history else self.adapter(x)
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        if adapter_out is not None:
            x = x + adapter_out
        return x, adapter_out, selection


class SparseViT(nn.Module):
    """Vision Transformer for images (``num_frames=None``) or videos, with Sparse-Tuning switches.

    Args:
        img_size: input height/width.
        patch_size: spatial patch size.
        in_chans: input channels.
        num_classes: classifier outputs (0 for no head).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer size.
        num_frames: frames per clip for a video model; None for images.
        tubelet_size: frames per token for video.
        class_token: prepend a CLS token.
        pos_embed: ``"learn"`` (parameter) or ``"sincos"`` (fixed VideoMAE table, not saved).
        global_pool: ``"token"`` (CLS) or ``"avg"`` (mean of tokens).
        fc_norm: LayerNorm after pooling instead of before (VideoMAE); default True for ``"avg"``.
        init_values: LayerScale init (DINOv2); None for no LayerScale.
        drop_rate, proj_drop_rate, drop_path_rate: dropout before the head, in blocks, stochastic depth.
        norm_eps: LayerNorm epsilon.
        keep_rate: fraction of tokens kept at each sparsifying layer (1.0 disables dropping).
        sparse_layers: 0-based indices of the sparsifying blocks; default
            :func:`default_sparse_layers` (the paper's 3/6/9 of 12, in proportion to ``depth``).
        fuse_token: fuse the dropped tokens into one token.
        score: importance policy, a name in :data:`~video_sparse.sparsify.SCORE_POLICIES` (``"cls"``,
            ``"mean_attn"``, ``"mean_query"``); default ``"cls"`` with a class token, else ``DEFAULT_VIDEO_SCORE``.
        fused_pool_weight: with mean pooling, count the fused token as ``"one"`` token or by the
            number of original tokens it absorbed (``"mass"``).
        adapter: ``"dense"`` (Dense Adapter, default), ``"dense_paper"``, ``"parallel"``
            (AdaptFormer) or None (plain backbone).
        adapter_dim: adapter bottleneck width.
        adapter_scale: output scale of the parallel adapter.
        dense_connections: add each stage's summed adapter outputs at the stage end; default True
            for ``adapter="dense"``.
        dense_include_embedding: also add the token embedding to the first stage's sum (the
            released code does; off by default so the untrained model equals the frozen one).
        dense_skip_last_block: leave the last block's adapter out of the final stage's sum (the
            released code sums blocks 9 and 10 of 9-11); on by default.
        attn_impl: ``"sdpa"`` or ``"explicit"`` (full attention matrices, reference style).
        head_norm: ``"none"`` or ``"batchnorm"``: a ``BatchNorm1d(embed_dim, affine=False, eps=1e-6)``
            (module ``head_norm``, running statistics only) between pooling and the linear head, the
            classifier of the paper's released code (``head.0``).
        grad_checkpointing: recompute every block in the backward pass (activation checkpointing)
            instead of keeping its activations; see :meth:`set_grad_checkpointing`.
        static_tubes: video only: drop, before the first block, every tube whose mean absolute
            difference to the tube before it at the same position is below this threshold (on the
            normalised input; :mod:`video_sparse.layers.static_tubes`); None or 0 keeps every tube.
            Kept tubes carry their own position encoding and, as token mass, their run length.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        num_frames: int | None = None,
        tubelet_size: int = 2,
        class_token: bool = True,
        pos_embed: str = "learn",
        global_pool: str = "token",
        fc_norm: bool | None = None,
        init_values: float | None = None,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        keep_rate: float = 0.7,
        sparse_layers: tuple[int, ...] | list[int] | None = None,
        fuse_token: bool = True,
        score: str | None = None,
        fused_pool_weight: str = "one",
        adapter: str | None = "dense",
        adapter_dim: int = 64,
        adapter_scale: float = 0.1,
        dense_connections: bool | None = None,
        dense_include_embedding: bool = False,
        dense_skip_last_block: bool = True,
        attn_impl: str = "sdpa",
        head_norm: str = "none",
        grad_checkpointing: bool = False,
        static_tubes: float | None = None,
    ) -> None:
        super().__init__()
        self.model_args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if sparse_layers is None:
            sparse_layers = default_sparse_layers(depth)
        self.model_args["sparse_layers"] = list(sparse_layers)
        sparse_layers = tuple(int(i) for i in sparse_layers)
        if head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {head_norm!r}")
        score = score or ("cls" if class_token else DEFAULT_VIDEO_SCORE)
        if score not in SCORE_POLICIES:
            raise ValueError(f"score must be one of {sorted(SCORE_POLICIES)}, got {score!r}")
        if SCORE_POLICIES[score].needs_class_token and not class_token:
            raise ValueError(
                f"score={score!r} needs a class token (class_token=True); use 'mean_attn' or 'mean_query' for video"
            )
        if any(not 0 <= i < depth for i in sparse_layers):
            raise ValueError(f"sparse_layers {sparse_layers} must lie in [0, {depth})")
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        if pos_embed not in ("learn", "sincos"):
            raise ValueError(f"pos_embed must be 'learn' or 'sincos', got {pos_embed!r}")
        if fused_pool_weight not in ("one", "mass"):
            raise ValueError(f"fused_pool_weight must be 'one' or 'mass', got {fused_pool_weight!r}")
        adapter = None if adapter in ("none", "") else adapter
        if adapter is not None and adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {sorted(ADAPTERS)} or None, got {adapter!r}")
        num_kept_tokens(1, keep_rate)  # validates the range
        _check_static_tubes(static_tubes, num_frames)

        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_frames = num_frames
        self.is_video = num_frames is not None
        self.num_prefix_tokens = 1 if class_token else 0
        self.global_pool = global_pool
        self.keep_rate = keep_rate
        self.sparse_layers = sparse_layers
        self.fused_pool_weight = fused_pool_weight
        self.static_tubes = static_tubes
        self.adapter_name = adapter
        self.dense_connections = (adapter == "dense") if dense_connections is None else dense_connections
        if self.dense_connections and adapter is None:
            raise ValueError("dense_connections needs an adapter")
        self.dense_include_embedding = dense_include_embedding
        self.dense_skip_last_block = dense_skip_last_block
        use_fc_norm = (global_pool == "avg") if fc_norm is None else fc_norm

        if self.is_video:
            self.patch_embed = TubeletEmbed(img_size, patch_size, in_chans, embed_dim, num_frames, tubelet_size)
        else:
            self.patch_embed = PatchEmbed2d(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        if pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_prefix_tokens, embed_dim))
        else:
            table = sincos_position_table(num_patches, embed_dim)
            if class_token:
                table = torch.cat([torch.zeros(1, 1, embed_dim), table], dim=1)
            self.register_buffer("pos_embed", table, persistent=False)
        self.pos_drop = nn.Identity()

        norm_layer = _layer_norm(norm_eps)
        drop_path = [float(r) for r in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        self.blocks = nn.ModuleList(
            [
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio,
                    qkv_bias,
                    proj_drop_rate,
                    drop_path[i],
                    init_values,
                    norm_layer,
                    attn_impl,
                    sparsify=i in sparse_layers,
                    score=score,
                    fuse_token=fuse_token,
                    num_prefix_tokens=self.num_prefix_tokens,
                    adapter=self._make_adapter(adapter, embed_dim, adapter_dim, adapter_scale, i),
                )
                for i in range(depth)
            ]
        )
        self.stage_ends = {i - 1 for i in sparse_layers if i > 0} | {depth - 1}
        self.uses_history = adapter is not None and ADAPTERS[adapter].uses_history
        self.norm = nn.Identity() if use_fc_norm else norm_layer(embed_dim)
        self.fc_norm = norm_layer(embed_dim) if use_fc_norm else nn.Identity()
        self.head_norm = _make_head_norm(head_norm, embed_dim, num_classes)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.grad_checkpointing = False
        self.set_grad_checkpointing(grad_checkpointing)

        self._init_weights()

    @staticmethod
    def _make_adapter(name: str | None, dim: int, hidden: int, scale: float, index: int) -> nn.Module | None:
        if name is None:
            return None
        if name == "parallel":
            return ADAPTERS[name](dim, hidden, scale=scale)
        if name == "dense_paper":
            return ADAPTERS[name](dim, hidden, layer_index=index)
        return ADAPTERS[name](dim, hidden)

    def _init_weights(self) -> None:
        if isinstance(self.pos_embed, nn.Parameter):
            trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for name, module in self.named_modules():
            if is_adapter_key(name):  # adapters initialise themselves (zero up-projections)
                continue
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations (timm's convention).

        Only applies while gradients are enabled; the recomputed forward keeps the same tokens.
        """
        self.grad_checkpointing = bool(enable)
        self.model_args["grad_checkpointing"] = self.grad_checkpointing

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head (and its BatchNorm, if any) with fresh ones of ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_norm = _make_head_norm(self.model_args["head_norm"], self.embed_dim, num_classes)
        self.model_args["num_classes"] = num_classes

    def _run_block(
        self,
        block: Block,
        x: torch.Tensor,
        keep_rate: float,
        history: list[torch.Tensor] | None,
        keep_units: int | None = None,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, TokenSelection | None]:
        """``block(x, keep_rate, history)``, through activation checkpointing when it is on."""
        if not (self.grad_checkpointing and torch.is_grad_enabled()):
            return block(x, keep_rate, history, keep_units=keep_units, valid=valid)
        first: dict[str, torch.Tensor] = {}

        def run(x: torch.Tensor, *hist: torch.Tensor) -> tuple[Any, ...]:
            # `history` is passed by value: the recomputation must see it as it was, not as reduced.
            local = list(hist) if history is not None else None
            out, adapter_out, selection = block(
                x, keep_rate, local, kept=first.get("kept"), keep_units=keep_units, valid=valid
            )
            if selection is not None and "kept" not in first:
                first["kept"] = selection.kept  # the recomputed forward keeps these tokens
            return out, adapter_out, selection, local

        out, adapter_out, selection, local = checkpoint(run, x, *(history or ()), use_reentrant=False)
        if history is not None:
            history[:] = local
        return out, adapter_out, selection

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + self.pos_embed.to(x.dtype))

    def _embed_static(self, x: torch.Tensor, threshold: float) -> PackedTubes:
        """Embed a clip batch and keep only its non-static tubes (:mod:`~video_sparse.layers.static_tubes`)."""
        keep = static_tube_keep(x, threshold, self.patch_embed.tubelet_size, self.patch_embed.patch_size)
        return pack_tubes(self._embed(x), keep, tuple(self.patch_embed.grid_size))

    def forward_tokens(
        self,
        x: torch.Tensor,
        keep_rate: float | None = None,
        track: bool = False,
        keep_units: int | None = None,
        static_tubes: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """Run embedding and blocks.

        Args:
            x: (B, C, H, W) images or (B, C, T, H, W) clips.
            keep_rate: overrides ``self.keep_rate`` for this call (keep-rate schedules).
            track: follow the original index and mass of every token.
            keep_units: the keep rate as an integer of 1/10000 (from
                :func:`~video_sparse.sparsify.functional.keep_units`); overrides ``keep_rate``. A
                compiled model (``dynamic=True``) keeps it symbolic: a keep-rate schedule passed this
                way compiles no new graph per rate.
            static_tubes: overrides ``self.static_tubes`` for this call (0 keeps every tube).

        Returns:
            tokens (B, P + N', C) after the final norm; token masses (B, N') when tracked or needed
            for pooling, else None; kept original indices per dropping layer (empty unless tracked).
            When static tubes are dropped, the first entry of the kept indices is the filter's
            (tubes in original order, -2 for padding), and the masses start at the run lengths;
            in a batch whose clips keep different numbers of tubes, padding has mass 0 and index -2.
        """
        keep_rate = self.keep_rate if keep_rate is None else keep_rate
        threshold = self.static_tubes if static_tubes is None else static_tubes
        packed = self._embed_static(x, threshold) if threshold else None
        x = self._embed(x) if packed is None else packed.tokens
        valid = None if packed is None else packed.valid
        track_mass = track or (self.global_pool == "avg" and self.fused_pool_weight == "mass") or packed is not None
        tokens = _TokenTracker(x.shape[0], x.shape[1] - self.num_prefix_tokens, x.device, track, track_mass, packed)
        stages = _StageSums.of(self, embedded=x) if self.dense_connections else None
        history: list[torch.Tensor] | None = [] if self.uses_history else None
        for i, block in enumerate(self.blocks):
            x, adapter_out, selection = self._run_block(block, x, keep_rate, history, keep_units, valid)
            if selection is not None:
                tokens.select(selection)
                if selection.valid is not None:
                    valid = torch.cat([valid[:, : self.num_prefix_tokens], selection.valid], dim=1)
            if stages is not None and adapter_out is not None:
                x = stages.add(i, x, adapter_out)
            if history is not None:
                history.append(adapter_out)
                del history[:-3]
        return self.norm(x), tokens.mass, tokens.kept_ids

    def forward_head(
        self, x: torch.Tensor, mass: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pool tokens (B, P + N, C) and classify; ``mass`` (B, N) weights mean pooling; ``valid``
        (B, N) bool leaves padding out of the mean (``mass`` of padding is 0 already)."""
        if self.global_pool == "token":
            x = x[:, 0]
        else:
            tokens = x[:, self.num_prefix_tokens :]
            if mass is not None and self.fused_pool_weight == "mass":
                weights = mass.to(tokens.dtype).unsqueeze(-1)
                x = (tokens * weights).sum(dim=1) / weights.sum(dim=1)
            elif valid is not None:
                weights = valid.to(tokens.dtype).unsqueeze(-1)
                x = (tokens * weights).sum(dim=1) / weights.sum(dim=1)
            else:
                x = tokens.mean(dim=1)
        return self.head(self.head_drop(self.head_norm(self.fc_norm(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the last block and norm: (B, P + N', C)."""
        return self.forward_tokens(x)[0]

    def forward(
        self,
        x: torch.Tensor,
        return_kept: bool = False,
        keep_rate: float | None = None,
        keep_units: int | None = None,
        static_tubes: float | None = None,
    ) -> torch.Tensor | SparseOutput:
        """Classify a batch; with ``return_kept`` also return the kept token indices per layer.

        ``keep_rate`` (a fraction) or ``keep_units`` (an integer of 1/10000, see
        :meth:`forward_tokens`) override ``self.keep_rate`` for this call, ``static_tubes`` the
        static-tube threshold (0: off).
        """
        tokens, mass, kept = self.forward_tokens(
            x, keep_rate=keep_rate, track=return_kept, keep_units=keep_units, static_tubes=static_tubes
        )
        filtered = bool(self.static_tubes if static_tubes is None else static_tubes)
        logits = self.forward_head(tokens, mass, valid=mass.gt(0) if filtered else None)
        return SparseOutput(logits, kept) if return_kept else logits

    def tokens_per_block(self, keep_rate: float | None = None) -> list[tuple[int, int]]:
        """Analytic (attention tokens, MLP tokens) per block, prefix included."""
        keep_rate = self.keep_rate if keep_rate is None else keep_rate
        n = self.patch_embed.num_patches
        counts = []
        for block in self.blocks:
            before = n
            if block.sparsify and num_kept_tokens(n, keep_rate) < n:
                n = num_kept_tokens(n, keep_rate) + (1 if block.fuse_token else 0)
            counts.append((before + self.num_prefix_tokens, n + self.num_prefix_tokens))
        return counts


class _TokenTracker:
    """The original index and the mass (tokens fused into it) of every kept token, through the selections."""

    def __init__(
        self,
        batch: int,
        num_patches: int,
        device: torch.device,
        ids: bool,
        mass: bool,
        packed: PackedTubes | None = None,
    ) -> None:
        self.kept_ids: list[torch.Tensor] = []  # (B, N') per sparsifying block; -1: fused token, -2: padding
        if packed is None:
            self.ids = torch.arange(num_patches, device=device).expand(batch, -1) if ids else None
            self.mass = torch.ones(batch, num_patches, device=device) if mass else None
            return
        self.ids = packed.ids if ids else None  # the static-tube filter: kept tubes, their run lengths
        self.mass = packed.lengths if mass else None
        if self.ids is not None:
            self.kept_ids.append(self.ids)

    def select(self, selection: TokenSelection) -> None:
        if self.ids is not None:
            self.ids = _reduce_ids(self.ids, selection)
            self.kept_ids.append(self.ids)
        if self.mass is not None:
            self.mass = apply_selection(
                self.mass.unsqueeze(-1), selection, 0, fuse_values=torch.ones_like(self.mass)
            ).squeeze(-1)
            if selection.valid is not None:  # padding slots hold dropped tokens' masses: zero them
                self.mass = self.mass * selection.valid


class _StageSums:
    """Dense connections: a stage's adapter outputs (and, if given, the token embedding in the first stage)
    are summed and added to the hidden state at the stage end; the last block's output is left out when
    ``skip_last`` (as the released code)."""

    def __init__(self, stage_ends: Collection[int], last: int, skip_last: bool, embedding: torch.Tensor | None):
        self.stage_ends, self.last, self.skip_last, self.total = stage_ends, last, skip_last, embedding

    @classmethod
    def of(cls, model: SparseViT, embedded: torch.Tensor) -> _StageSums:
        embedding = embedded if model.dense_include_embedding else None
        return cls(model.stage_ends, len(model.blocks) - 1, model.dense_skip_last_block, embedding)

    def add(self, index: int, x: torch.Tensor, adapter_out: torch.Tensor) -> torch.Tensor:
        if not (index == self.last and self.skip_last):
            self.total = adapter_out if self.total is None else self.total + adapter_out
        if index in self.stage_ends:
            if self.total is not None:
                x = x + self.total
            self.total = None
        return x


def _forced_selection(scores: torch.Tensor, kept: torch.Tensor, fuse: bool) -> TokenSelection:
    """:func:`select_tokens`'s selection with the kept indices ``kept`` (B, K) given; ``scores`` (B, N)
    still weight the fused token (and carry its gradient)."""
    fuse_weights = scores.float().scatter(1, kept, 0.0) if fuse and kept.shape[1] < scores.shape[1] else None
    return TokenSelection(kept, scores, fuse_weights)


def _make_head_norm(kind: str, dim: int, num_classes: int) -> nn.Module:
    if kind == "batchnorm" and num_classes > 0:
        return nn.BatchNorm1d(dim, affine=False, eps=1e-6)
    return nn.Identity()


def _reduce_ids(ids: torch.Tensor, selection: TokenSelection) -> torch.Tensor:
    """Follow original patch indices through a selection; a fused token gets -1."""
    kept = torch.gather(ids, 1, selection.kept)
    if selection.fuse_weights is not None:
        kept = torch.cat([kept, kept.new_full((kept.shape[0], 1), -1)], dim=1)
    if selection.valid is not None:
        kept = kept.masked_fill(~selection.valid, PADDING_ID)
    return kept


def _check_static_tubes(threshold: float | None, num_frames: int | None) -> None:
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"static_tubes must be None or a threshold >= 0, got {threshold!r}")
    if threshold and num_frames is None:
        raise ValueError("static_tubes drops tubes of a clip: it needs a video model (num_frames)")


def _layer_norm(eps: float) -> Any:
    def make(dim: int) -> nn.LayerNorm:
        return nn.LayerNorm(dim, eps=eps)

    return make


# --------------------------------------------------------------------------------------------------
# Registered variants. `timm.create_model(name, **overrides)` works after `import video_sparse`.
# A local checkpoint is loaded with `checkpoint="path"`; nothing is downloaded.
# --------------------------------------------------------------------------------------------------
_IMAGE = {"class_token": True, "pos_embed": "learn", "global_pool": "token"}
_VIDEO = {"class_token": False, "pos_embed": "sincos", "global_pool": "avg", "num_frames": 16, "tubelet_size": 2}


def _create(
    variant_args: dict[str, Any],
    pretrained: bool = False,
    checkpoint: str | None = None,
    arch_from_checkpoint: bool = False,
    **kwargs: Any,
) -> SparseViT:
    """Build a variant. With ``arch_from_checkpoint=True`` the network the checkpoint describes is built
    (:func:`~video_sparse.checkpoint.infer.resolve_model_args`): explicit arguments first, then what
    the file shows (its tensors: sizes, LayerScale, position table, pooling; its records: saved
    ``model_args``, ``config.json`` ...), then this variant's arguments for what the file does not show
    (the number of heads, a video's frame count and size), never a value guessed from another."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    if pretrained and checkpoint is None:
        raise ValueError(
            "video_sparse never downloads weights: pass checkpoint='/path/to/weights' "
            "(.npz, .pth, .safetensors) instead of pretrained=True"
        )
    if arch_from_checkpoint:
        if checkpoint is None:
            raise ValueError("arch_from_checkpoint=True needs checkpoint='/path/to/weights'")
        from ..checkpoint import create_model_from_checkpoint

        return create_model_from_checkpoint(checkpoint, defaults=variant_args, **kwargs)[0]
    model = SparseViT(**{**variant_args, **kwargs})
    if checkpoint is not None:
        from ..checkpoint import load_pretrained

        load_pretrained(model, checkpoint)
    return model


def _sizes(embed_dim: int, depth: int, num_heads: int, **extra: Any) -> dict[str, Any]:
    return dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, **extra)


@register_model
def sparse_vit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """ViT-B/16 at 224 (ImageNet-21k layout), Sparse-Tuning defaults."""
    return _create({**_IMAGE, **_sizes(768, 12, 12)}, pretrained, **kwargs)


@register_model
def sparse_vit_large_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """ViT-L/16 at 224 (24 blocks, 1024 wide, 16 heads); sparsifies at blocks 6, 12, 18."""
    return _create({**_IMAGE, **_sizes(1024, 24, 16)}, pretrained, **kwargs)


@register_model
def sparse_vit_huge_patch14_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """ViT-H/14 at 224 (32 blocks, 1280 wide, 16 heads); sparsifies at blocks 8, 16, 24."""
    return _create({**_IMAGE, **_sizes(1280, 32, 16), "patch_size": 14}, pretrained, **kwargs)


@register_model
def sparse_vit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """ViT-S/16 at 224."""
    return _create({**_IMAGE, **_sizes(384, 12, 6)}, pretrained, **kwargs)


@register_model
def sparse_vit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """ViT-Ti/16 at 224."""
    return _create({**_IMAGE, **_sizes(192, 12, 3)}, pretrained, **kwargs)


@register_model
def sparse_vit_small_patch14_dinov2(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """DINOv2 ViT-S/14 (LayerScale) at 224; its 518-px position table is resized on load."""
    return _create({**_IMAGE, **_sizes(384, 12, 6), "patch_size": 14, "init_values": 1e-5}, pretrained, **kwargs)


@register_model
def sparse_vit_nano_patch16_64(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """A 4-block, 96-wide image model at 64 px for tests and demos (sparsifies at blocks 1, 2, 3)."""
    return _create(
        {**_IMAGE, **_sizes(96, 4, 3), "img_size": 64, "sparse_layers": (1, 2, 3), "adapter_dim": 16},
        pretrained,
        **kwargs,
    )


@register_model
def sparse_videomae_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """VideoMAE ViT-B, 16 frames at 224, tubes 2x16x16."""
    return _create({**_VIDEO, **_sizes(768, 12, 12)}, pretrained, **kwargs)


@register_model
def sparse_videomae_large_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """VideoMAE ViT-L (24 blocks, 1024 wide, 16 heads), 16 frames at 224; sparsifies at blocks 6, 12, 18."""
    return _create({**_VIDEO, **_sizes(1024, 24, 16)}, pretrained, **kwargs)


@register_model
def sparse_videomae_huge_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """VideoMAE ViT-H (32 blocks, 1280 wide, 16 heads), 16 frames at 224; sparsifies at blocks 8, 16, 24."""
    return _create({**_VIDEO, **_sizes(1280, 32, 16)}, pretrained, **kwargs)


@register_model
def sparse_videomae_v2_giant_patch14_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """VideoMAE V2 ViT-g (40 blocks, 1408 wide, 16 heads, MLP 6144), tubes 2x14x14, 16 frames at 224.

    Sparsifies at blocks 10, 20, 30.
    """
    return _create({**_VIDEO, **_sizes(1408, 40, 16), "patch_size": 14, "mlp_ratio": 48 / 11}, pretrained, **kwargs)


@register_model
def sparse_videomae_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """VideoMAE ViT-S, 16 frames at 224."""
    return _create({**_VIDEO, **_sizes(384, 12, 6)}, pretrained, **kwargs)


@register_model
def sparse_videomae_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """ViT-Ti video model, 16 frames at 224."""
    return _create({**_VIDEO, **_sizes(192, 12, 3)}, pretrained, **kwargs)


@register_model
def sparse_videomae_nano_patch16_64(pretrained: bool = False, **kwargs: Any) -> SparseViT:
    """A 4-block, 96-wide video model, 16 frames at 64 px, for tests and the demo."""
    return _create(
        {**_VIDEO, **_sizes(96, 4, 3), "img_size": 64, "sparse_layers": (1, 2, 3), "adapter_dim": 16},
        pretrained,
        **kwargs,
    )


VARIANTS = (
    "sparse_vit_base_patch16_224",
    "sparse_vit_small_patch16_224",
    "sparse_vit_tiny_patch16_224",
    "sparse_vit_small_patch14_dinov2",
    "sparse_vit_nano_patch16_64",
    "sparse_videomae_base_patch16_224",
    "sparse_videomae_small_patch16_224",
    "sparse_videomae_tiny_patch16_224",
    "sparse_videomae_nano_patch16_64",
)
#: Backbones too large for a single small GPU (ZeRO-3 territory); tests build them at tiny sizes.
LARGE_VARIANTS = (
    "sparse_vit_large_patch16_224",
    "sparse_vit_huge_patch14_224",
    "sparse_videomae_large_patch16_224",
    "sparse_videomae_huge_patch16_224",
    "sparse_videomae_v2_giant_patch14_224",
)
