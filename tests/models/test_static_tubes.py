"""The static-tube filter: drop decision, run lengths, padded batches (with either score kernel) and the off switch."""

import pytest
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.layers.static_tubes import PADDING_ID, pack_tubes, run_lengths, static_tube_keep

NANO_VIDEO = "sparse_videomae_nano_patch16_64"
SIZE = 32  # 2x2 positions x 8 time steps = 32 tubes: fast


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = timm.create_model(NANO_VIDEO, num_classes=5, img_size=SIZE, **kwargs).eval()
    with torch.no_grad():  # adapters start at zero: perturb every weight so that they act
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _clips(seed=0):
    """Three clips: two with different static regions (different tube counts), one all moving."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 3, 16, SIZE, SIZE, generator=g)
    x[0, :, 6:] = x[0, :, 4:6].repeat(1, 5, 1, 1)  # time steps 3..7 repeat step 2
    x[0, :, 6:] += 0.01 * torch.randn(3, 10, SIZE, SIZE, generator=g)  # below the threshold
    x[1, :, :, :16, 16:] = x[1, :, :1, :16, 16:]  # one position static over the whole clip
    return x


def _brute_force_keep(x, threshold, tubelet=2, patch=16):
    B, _, T, H, W = x.shape
    keep = []
    for b in range(B):
        row = []
        for t in range(T // tubelet):
            for h in range(H // patch):
                for w in range(W // patch):
                    if t == 0:
                        row.append(True)
                        continue
                    rows, cols = slice(h * patch, (h + 1) * patch), slice(w * patch, (w + 1) * patch)
                    cur = x[b, :, t * tubelet : (t + 1) * tubelet, rows, cols]
                    prev = x[b, :, (t - 1) * tubelet : t * tubelet, rows, cols]
                    row.append(float((cur.double() - prev.double()).abs().mean()) >= threshold)
        keep.append(row)
    return torch.tensor(keep)


@pytest.mark.parametrize("threshold", [0.05, 0.3, 1.0, 1.2])
def test_drop_decision_matches_a_per_tube_loop(threshold):
    x = _clips(1)
    x[2, :, 8:] = 0.5 * x[2, :, 8:] + 0.5 * x[2, :, 6:8].repeat(1, 4, 1, 1)  # half-similar tubes
    got = static_tube_keep(x, threshold, 2, (16, 16))
    assert torch.equal(got, _brute_force_keep(x, threshold))


def test_run_lengths_match_a_loop_and_sum_to_the_time_steps():
    g = torch.Generator().manual_seed(3)
    grid = (8, 2, 3)
    keep = torch.rand(4, 48, generator=g) < 0.4
    keep.view(4, *grid)[:, 0] = True
    lengths = run_lengths(keep, grid)
    steps = keep.view(4, *grid)
    expected = torch.zeros(4, *grid, dtype=torch.long)
    for b in range(4):
        for h in range(2):
            for w in range(3):
                for t in range(8):
                    if steps[b, t, h, w]:
                        n = 1
                        while t + n < 8 and not steps[b, t + n, h, w]:
                            n += 1
                        expected[b, t, h, w] = n
    assert torch.equal(lengths, expected.flatten(1))
    assert torch.equal(lengths.view(4, *grid).sum(dim=1), torch.full((4, 2, 3), 8))


def test_pack_keeps_original_order_and_pads_only_to_the_longest_clip():
    tokens = torch.arange(2 * 8, dtype=torch.float32).view(2, 8, 1) + 1
    keep = torch.tensor([[1, 1, 0, 1, 0, 0, 1, 0], [1, 1, 1, 1, 1, 0, 1, 1]], dtype=torch.bool)
    packed = pack_tubes(tokens, keep, (4, 1, 2))
    assert packed.ids.tolist() == [[0, 1, 3, 6, PADDING_ID, PADDING_ID, PADDING_ID], [0, 1, 2, 3, 4, 6, 7]]
    assert packed.tokens[0, :4, 0].tolist() == [1, 2, 4, 7] and packed.tokens[0, 4:].abs().sum() == 0
    assert packed.lengths.tolist() == [[3, 1, 3, 1, 0, 0, 0], [1, 1, 1, 2, 1, 1, 1]]
    assert packed.valid.tolist() == [[True] * 4 + [False] * 3, [True] * 7]


@pytest.mark.parametrize(
    "kwargs", [{}, {"score": "mean_query"}, {"fused_pool_weight": "mass"}, {"attn_impl": "explicit"}]
)
def test_threshold_zero_or_none_is_todays_model_exactly(kwargs):
    x = _clips()
    plain = _model(**kwargs)
    with torch.no_grad():
        ref = plain(x, return_kept=True)
        for model, override in ((_model(static_tubes=0.0, **kwargs), None), (_model(static_tubes=0.3, **kwargs), 0.0)):
            out = model(x, return_kept=True, static_tubes=override)
            assert torch.equal(out.logits, ref.logits)
            assert len(out.kept) == len(ref.kept)
            assert all(torch.equal(a, b) for a, b in zip(out.kept, ref.kept))


def test_filter_that_drops_nothing_gives_todays_logits_and_tokens():
    x = torch.randn(2, 3, 16, SIZE, SIZE, generator=torch.Generator().manual_seed(5))  # no tube is static
    model = _model()
    with torch.no_grad():
        ref = model(x, return_kept=True)
        out = model(x, return_kept=True, static_tubes=1e-4)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-5, atol=1e-6)
    assert out.kept[0].tolist() == [list(range(32))] * 2  # the filter's entry: every tube
    assert all(torch.equal(a, b) for a, b in zip(out.kept[1:], ref.kept))


def test_repeated_frame_keeps_one_tube_per_position():
    frame = torch.randn(1, 3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    clip = torch.cat([frame.expand(1, 3, 16, SIZE, SIZE), torch.randn(1, 3, 16, SIZE, SIZE)])
    model = _model(static_tubes=1e-6, fused_pool_weight="mass")
    with torch.no_grad():
        out = model(clip, return_kept=True)
    assert out.kept[0][0].tolist() == [0, 1, 2, 3] + [PADDING_ID] * 28  # the first tube of each position
    assert out.kept[0][1].tolist() == list(range(32))
    assert all(int((ids[0] >= 0).sum()) <= 4 for ids in out.kept)
    packed = pack_tubes(torch.zeros(1, 32, 1), static_tube_keep(clip[:1], 1e-6, 2, (16, 16)), (8, 2, 2))
    assert packed.lengths[0].tolist() == [8.0] * 4  # each stands for the 8 time steps of its position


def _gathered_reference(model, clip, threshold):
    """Logits of the kept tubes alone: embedded, position-encoded, gathered, then the blocks and the
    head by hand (a model without adapters and dense connections, one clip, no padding)."""
    keep = static_tube_keep(clip, threshold, 2, (16, 16))[0]
    x = (model.patch_embed(clip) + model.pos_embed)[:, keep]
    for block in model.blocks:
        x = block(x, model.keep_rate)[0]
    return model.head(model.fc_norm(model.norm(x).mean(dim=1)))[0]


@pytest.mark.parametrize("score", ["mean_attn", "mean_query"])
def test_kept_tubes_logits_equal_a_run_on_the_gathered_tubes_alone(score):
    x = _clips()
    model = _model(static_tubes=0.3, adapter="none", score=score)  # timm drops None kwargs
    with torch.no_grad():
        batch = model(x)
        for b in range(3):
            torch.testing.assert_close(batch[b], _gathered_reference(model, x[b : b + 1], 0.3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"score": "mean_query"},
        {"fused_pool_weight": "mass"},
        {"attn_impl": "explicit"},
        {"adapter": "dense_paper"},
        {"dense_include_embedding": True, "keep_rate": 0.5},
    ],
)
def test_padding_in_a_mixed_batch_changes_nothing(kwargs):
    x = _clips()
    model = _model(static_tubes=0.3, **kwargs)
    with torch.no_grad():
        batch = model(x, return_kept=True)
        assert len({int((batch.kept[0][b] >= 0).sum()) for b in range(3)}) == 3  # three lengths: padded
        for b in range(3):
            alone = model(x[b : b + 1], return_kept=True)
            torch.testing.assert_close(batch.logits[b], alone.logits[0], rtol=1e-5, atol=1e-5)
            for mixed, single in zip(batch.kept, alone.kept):
                real = mixed[b][mixed[b] != PADDING_ID]
                assert real.tolist() == single[0].tolist()  # same tokens, same score order


def test_training_gradients_with_padding_and_checkpointing_equal_each_clip_alone():
    x = _clips()
    model = _model(static_tubes=0.3)
    video_sparse.adapters.set_trainable(model)
    model.train()

    def grads(inputs, checkpointing):
        model.zero_grad()
        model.set_grad_checkpointing(checkpointing)
        model(inputs).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    together = grads(x, True)
    alone = [grads(x[b : b + 1], False) for b in range(3)]
    for name, grad in together.items():
        torch.testing.assert_close(grad, sum(a[name] for a in alone), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"adapter": "dense_paper", "fused_pool_weight": "mass"}])
def test_fused_and_chunked_score_kernels_agree_on_a_padded_batch(kwargs):
    """The fused kernels mask the padding of clips shortened to different lengths exactly as the
    chunked kernel does: same kept tokens, logits and gradients."""
    x = _clips()
    runs = []
    for kernel in ("fused", "chunked"):
        model = _model(static_tubes=0.3, **kwargs)
        video_sparse.adapters.set_trainable(model)
        for block in model.blocks:
            block.attn.score_kernel = kernel
        with torch.no_grad():
            out = model(x, return_kept=True)
        model.train()
        model(x).sum().backward()
        runs.append((out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (fused, fused_grads), (chunked, chunked_grads) = runs
    assert len({int((fused.kept[0][b] >= 0).sum()) for b in range(3)}) == 3  # three lengths: padded
    assert len(fused.kept) == len(chunked.kept) > 1
    assert all(torch.equal(a, b) for a, b in zip(fused.kept, chunked.kept))
    torch.testing.assert_close(fused.logits, chunked.logits, rtol=1e-5, atol=1e-5)
    assert fused_grads.keys() == chunked_grads.keys() and fused_grads
    for name, grad in fused_grads.items():
        torch.testing.assert_close(grad, chunked_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="static_tubes"):
        timm.create_model(NANO_VIDEO, static_tubes=-0.1)
    with pytest.raises(ValueError, match="video model"):
        timm.create_model("sparse_vit_nano_patch16_64", static_tubes=0.1)
