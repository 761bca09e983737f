"""The benchmark's plumbing on a tiny model: rows, counts, ratios, JSON, Markdown (not timings)."""

import statistics

import pytest
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.analysis.benchmark import (
    BenchmarkConfig,
    BenchmarkResult,
    Variant,
    VariantResult,
    build_shared_models,
    build_variant_model,
    default_variants,
    make_batch,
    make_train_step,
    planned_calls,
    run_benchmark,
)
from video_sparse.analysis.benchmark_report import key_ratios, load_json, save_json, throughput, to_markdown
from video_sparse.analysis.flops import count_gmacs, input_shape_of

TINY = "sparse_vit_nano_patch16_64"


def _config(**overrides):
    base = dict(model=TINY, batch_size=2, reps=2, warmup=1, threads=1, memory=False, num_classes=5)
    return BenchmarkConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def tiny_run():
    variants = default_variants(keep_rates=(0.5, 0.7), explicit_keep_rates=(0.7,))
    ticks = []
    result = run_benchmark(_config(), variants, progress=ticks.append)
    return variants, ticks, result


def test_default_variants_rows():
    names = [v.name for v in default_variants((0.5, 0.7), (0.7,))]
    assert names == ["dense_vit", "dense_adapter", "sparse_0.5", "sparse_0.7", "explicit_0.7"]
    with pytest.raises(ValueError, match="keep rates"):
        default_variants((0.0,))


def test_config_defaults_and_errors():
    cfg = BenchmarkConfig(model=TINY, reps=3)
    assert cfg.train_reps == 3 and cfg.threads >= 1 and cfg.amp is None  # fp32 on CPU
    assert BenchmarkConfig(model=TINY, device="cuda:0").amp == "bfloat16"
    with pytest.raises(ValueError, match="batch_size"):
        BenchmarkConfig(model=TINY, batch_size=0)


def test_run_has_every_variant_and_measurement(tiny_run):
    variants, ticks, result = tiny_run
    assert [r.variant for r in result.results] == variants
    for r in result.results:
        assert len(r.infer_s) == 2 and len(r.train_s) == 2 and len(r.infer_cpu_s) == 2
        assert all(t > 0 for t in r.infer_s + r.train_s)
    assert len(ticks) == planned_calls(result.config, variants)
    assert result.input_shape == [2, 3, 64, 64]
    assert result.environment["threads"] == 1 and result.environment["torch"] == torch.__version__


def test_gmacs_match_an_independent_count(tiny_run):
    _, _, result = tiny_run
    for r in result.results:
        kwargs = {"adapter": "none"} if not r.variant.adapter else {}
        model = timm.create_model(
            TINY, num_classes=5, keep_rate=r.variant.keep_rate, attn_impl=r.variant.attn_impl, **kwargs
        )
        expected = count_gmacs(model, torch.zeros(input_shape_of(model, 1))).gmacs
        assert r.gmacs == pytest.approx(expected, rel=1e-9)
    assert result.get("sparse_0.5").gmacs < result.get("sparse_0.7").gmacs < result.get("dense_adapter").gmacs


def test_variants_share_backbone_weights():
    variants = default_variants((0.5,), (0.5,))
    models = build_shared_models(_config(), variants)
    keys = [(False, "sdpa", "auto"), (True, "sdpa", "auto"), (True, "explicit", "auto")]
    assert set(models) == set(keys)
    plain, adapter, explicit = (models[key] for key in keys)
    for name, value in plain.state_dict().items():
        assert torch.equal(value, adapter.state_dict()[name])
        assert torch.equal(value, explicit.state_dict()[name])
    for name, value in adapter.state_dict().items():
        assert torch.equal(value, explicit.state_dict()[name])
    assert explicit.blocks[0].attn.attn_impl == "explicit" and plain.blocks[0].adapter is None


def test_train_step_updates_only_trainable_parameters():
    cfg = _config()
    model = build_variant_model(cfg, Variant("s", 0.7))
    x, y = make_batch(cfg, model)
    frozen = model.blocks[1].attn.qkv.weight.clone()
    adapter = model.blocks[1].adapter.down1.weight.clone()
    make_train_step(model, x, y, 0.7, cfg)()
    assert torch.equal(model.blocks[1].attn.qkv.weight, frozen)
    assert not torch.equal(model.blocks[1].adapter.down1.weight, adapter)


def test_markdown_table_has_every_row(tiny_run):
    variants, _, result = tiny_run
    text = to_markdown(result)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [row.split("|")[1].strip() for row in rows] == [v.name for v in variants]
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert all(row.count("|") == header.count("|") for row in rows)
    assert "speedup_vs_dense_vit" in text and TINY in text


def test_json_round_trip(tiny_run, tmp_path):
    _, _, result = tiny_run
    loaded = load_json(save_json(result, tmp_path / "r.json"))
    assert loaded.to_dict() == result.to_dict()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        load_json(tmp_path / "bad.json")


def _row(name, keep, infer, train=(1.0,), adapter=True, attn="sdpa", gmacs=1.0, memory=None):
    return VariantResult(Variant(name, keep, adapter, attn), gmacs, list(infer), [], list(train), [], memory or {})


def test_key_ratios_from_medians():
    rows = [
        _row("dense_vit", 1.0, [2.0, 9.0, 3.0], adapter=False, gmacs=10.0),
        _row(
            "dense_adapter", 1.0, [4.0, 3.5, 3.2], train=[5.0], gmacs=10.5, memory={"train": 800.0, "train_base": 400.0}
        ),
        _row("sparse_0.7", 0.7, [2.0, 1.5, 2.5], train=[3.0], gmacs=7.0, memory={"train": 600.0, "train_base": 400.0}),
        _row("explicit_0.7", 0.7, [2.4, 2.6, 9.0], train=[3.3], attn="explicit", gmacs=7.0),
    ]
    result = BenchmarkResult(_config(batch_size=8), {}, [8, 3, 64, 64], rows)
    ratios = key_ratios(result, 0.7)
    median = statistics.median
    assert ratios["speedup_vs_dense_vit"] == pytest.approx(median([2.0, 9.0, 3.0]) / median([2.0, 1.5, 2.5]))
    assert ratios["speedup_vs_dense_adapter"] == pytest.approx(3.5 / 2.0)
    assert ratios["speedup_vs_explicit"] == pytest.approx(2.6 / 2.0)
    assert ratios["train_speedup_vs_explicit"] == pytest.approx(3.3 / 3.0)
    assert ratios["train_peak_vs_dense_adapter"] == pytest.approx(600 / 800)
    assert ratios["train_step_memory_vs_dense_adapter"] == pytest.approx(200 / 400)
    assert ratios["gmacs_vs_dense_vit"] == pytest.approx(0.7)
    assert ratios["speedup_vs_dense_vit_cpu"] is None  # no CPU times recorded
    assert throughput(result, rows[2]) == pytest.approx(8 / 2.0)


def test_run_rejects_duplicate_names():
    with pytest.raises(ValueError, match="unique"):
        run_benchmark(_config(), [Variant("a", 1.0), Variant("a", 0.5)])
