"""The benchmark's fairness switches on a tiny model: one pinned attention backend for every
variant, a chunked-score reference row, one profiler trace per variant (not timings)."""

from __future__ import annotations

import json

import pytest
import torch

import video_sparse  # noqa: F401
from video_sparse.analysis import benchmark
from video_sparse.analysis.benchmark import (
    SDPA_BACKENDS,
    BenchmarkConfig,
    build_variant_model,
    default_variants,
    planned_calls,
    run_benchmark,
)
from video_sparse.analysis.benchmark_report import key_ratios, to_markdown

VIDEO = "sparse_videomae_nano_patch16_64"


def _config(**overrides):
    base = dict(model=VIDEO, batch_size=1, reps=1, warmup=0, threads=1, memory=False, num_classes=3)
    return BenchmarkConfig(**{**base, **overrides})


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="sdpa_backend"):
        _config(sdpa_backend="fastest")
    assert set(SDPA_BACKENDS) == {"flash", "efficient", "cudnn", "math"}


def test_chunked_rows_use_the_chunked_kernel_and_give_their_ratio(tmp_path, monkeypatch):
    variants = default_variants((0.7,), (), chunked_keep_rates=(0.7,))
    assert [v.name for v in variants] == ["dense_vit", "dense_adapter", "sparse_0.7", "chunked_0.7"]
    model = build_variant_model(_config(), variants[-1])
    assert {b.attn.score_kernel for b in model.blocks} == {"chunked"}

    pinned, ticks = [], []
    real_context = benchmark.sdpa_kernel

    def recording_context(backend):
        pinned.append(backend)
        return real_context(backend)

    monkeypatch.setattr(benchmark, "sdpa_kernel", recording_context)
    config = _config(sdpa_backend="math", profile_dir=str(tmp_path / "traces"))
    result = run_benchmark(config, variants, progress=ticks.append)
    assert pinned == [torch.nn.attention.SDPBackend.MATH] and len(ticks) == planned_calls(config, variants)
    ratios = key_ratios(result)
    assert ratios["speedup_vs_chunked"] > 0 and ratios["train_speedup_vs_chunked"] > 0
    markdown = to_markdown(result)
    assert "SDPA, chunked score" in markdown and "SDPA backend math pinned" in markdown

    traces = sorted(p.name for p in (tmp_path / "traces").iterdir())
    assert traces == sorted(f"{v.name}.json" for v in variants)
    events = json.loads((tmp_path / "traces" / "sparse_0.7.json").read_text())["traceEvents"]
    labels = {e.get("name") for e in events}
    assert {"inference", "train_step"} <= labels
