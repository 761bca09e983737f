"""Peak-memory meters, the fresh-process measurement and the memory of the exact video score."""

import mmap

import pytest
import torch

from video_sparse.analysis.benchmark import BenchmarkConfig, Variant, measure_peak_memory_isolated
from video_sparse.analysis.memory import current_mib, peak_mib, reset_peak, rss_mib, rss_peak_mib

CPU = torch.device("cpu")


def test_rss_peak_sees_a_large_allocation():
    if rss_mib() is None:
        pytest.fail("/proc/self/status is needed on Linux")
    resettable = reset_peak(CPU)
    before = peak_mib(CPU)
    block = mmap.mmap(-1, 96 * 2**20)  # fresh pages, whatever the allocator holds
    block.write(b"\x01" * len(block))
    after = peak_mib(CPU)
    assert after - before >= 90
    assert current_mib(CPU) >= before + 90
    block.close()
    if resettable:  # the mark comes back down to the current RSS once reset
        assert reset_peak(CPU)
        assert rss_peak_mib() < after - 60


def test_fresh_process_measures_a_training_step():
    cfg = BenchmarkConfig(model="sparse_vit_nano_patch16_64", batch_size=4, threads=1, num_classes=5)
    got = measure_peak_memory_isolated(cfg, Variant("sparse_0.5", 0.5), "train")
    assert got["base_mib"] is not None and got["peak_mib"] is not None
    assert got["peak_mib"] >= got["base_mib"] > 50  # a process with torch loaded
    assert got["allocator_set"] is True  # glibc told to return freed blocks at once


def test_bad_mode_is_reported():
    from video_sparse.analysis.benchmark import measure_peak_memory

    cfg = BenchmarkConfig(model="sparse_vit_nano_patch16_64", batch_size=1, threads=1, num_classes=5)
    with pytest.raises(ValueError, match="mode"):
        measure_peak_memory(cfg, Variant("x", 1.0), "backward")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_uses_bf16_and_allocator_peaks():
    from video_sparse.analysis.benchmark import default_variants, run_benchmark

    cfg = BenchmarkConfig(model="sparse_vit_nano_patch16_64", batch_size=8, reps=2, device="cuda", num_classes=5)
    result = run_benchmark(cfg, default_variants((0.5,), (0.5,)))
    assert cfg.amp == "bfloat16" and result.environment["memory_meter"].startswith("cuda")
    assert all(r.memory["train"] > 0 and not r.infer_cpu_s for r in result.results)


def _plain_autograd(q, k, v, scale, chunk):
    from video_sparse.layers.chunked_attention import _chunked_attention

    return _chunked_attention(q, k, v, scale, chunk)


@pytest.mark.parametrize("use", ["both", "out", "scores"])
def test_mean_attn_training_keeps_no_attention_matrix_and_same_gradients(use):
    from video_sparse.layers.chunked_attention import attention_with_received

    gen = torch.Generator().manual_seed(0)
    B, H, N, d, chunk = 2, 3, 37, 8, 16
    leaves = [torch.randn(B, H, N, d, generator=gen, dtype=torch.float64) for _ in range(3)]
    d_out = torch.randn(B, H, N, d, generator=gen, dtype=torch.float64)
    d_scores = torch.randn(B, H, N, generator=gen)
    results = []
    for fn in (attention_with_received, _plain_autograd):
        q, k, v = (t.clone().requires_grad_() for t in leaves)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, saved=saved: saved.append(t.numel()) or t, lambda t: t):
            out, scores = fn(q, k, v, d**-0.5, chunk)
        loss = (out * d_out).sum() * (use != "scores") + (scores * d_scores).sum() * (use != "out")
        loss.backward()
        results.append((out.detach(), scores.detach(), q.grad, k.grad, v.grad, max(saved)))
    ours, reference = results
    torch.testing.assert_close(ours[0], reference[0], rtol=0, atol=0)  # the same forward computation
    torch.testing.assert_close(ours[1], reference[1], rtol=0, atol=0)
    for a, b in zip(ours[2:5], reference[2:5]):  # the softmax runs in fp32 on either path
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert ours[5] <= B * H * N * d < reference[5]  # autograd alone keeps (B, H, chunk, N) matrices
