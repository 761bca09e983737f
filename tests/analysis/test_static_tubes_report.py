"""The static-tube filter measured on a real clip: removed fraction, GMACs and the benchmark rows."""

from pathlib import Path

import pytest
import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.analysis.benchmark import BenchmarkConfig, run_benchmark, static_tube_variants
from video_sparse.analysis.flops import count_gmacs
from video_sparse.analysis.static_tubes import clip_report, load_clip, removed_fraction

CLIP = Path(__file__).resolve().parents[2] / ".venv/share/opencv-doc/vtest.avi"  # a fixed camera: mostly static


@pytest.fixture(scope="module")
def clip():
    if not CLIP.is_file():
        pytest.fail(f"{CLIP} missing: tools/setup_env.sh installs the opencv-doc clips")
    return load_clip(CLIP, size=64)


def test_report_counts_tubes_and_gmacs_of_the_filtered_forward(clip):
    torch.manual_seed(0)
    model = timm.create_model("sparse_videomae_nano_patch16_64", num_classes=3).eval()
    report = clip_report(model, clip, 0.1)
    assert report.tubes == 8 * 4 * 4 and report.kept == round((1 - report.removed) * report.tubes)
    assert 0.3 < report.removed <= 7 / 8  # a fixed camera: most later tubes repeat; the first step stays
    assert float(removed_fraction(model, clip, 0.1)[0]) == pytest.approx(report.removed)
    assert report.gmacs == pytest.approx(count_gmacs(model, clip).gmacs)  # 0: the model as it is
    # independent: the same model on a clip of only the kept tubes' count is not available, so check
    # that fewer tokens cost less and that no filtering costs exactly the plain count
    assert report.gmacs_filtered < report.gmacs * (1 - report.removed / 2)
    assert clip_report(model, clip, 0.0).gmacs_filtered == report.gmacs


def test_benchmark_rows_with_and_without_the_filter_on_real_clips():
    config = BenchmarkConfig(
        model="sparse_videomae_nano_patch16_64",
        batch_size=2,
        reps=1,
        warmup=0,
        train_reps=1,
        threads=1,
        memory=False,
        num_classes=3,
        clips=(str(CLIP),),
    )
    result = run_benchmark(config, static_tube_variants(0.1))
    plain, filtered = result.results
    assert plain.variant.name == "sparse_0.7" and filtered.variant.name == "static_0.1_sparse_0.7"
    assert filtered.gmacs < 0.6 * plain.gmacs
    assert len(plain.infer_s) == len(filtered.train_s) == 1


def test_tool_prints_the_table_once_and_refuses_a_non_video_in_one_line(tmp_path, capsys):
    import importlib.util

    tool_path = Path(__file__).resolve().parents[2] / "tools" / "static_tubes.py"
    spec = importlib.util.spec_from_file_location("static_tubes_tool", tool_path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = ["--model", "sparse_videomae_nano_patch16_64", "--size", "64"]
    table = tool.main([*args, str(CLIP)])
    out = capsys.readouterr().out
    assert out.count("| vtest.avi |") == 1 and out.strip() == table.strip()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(SystemExit) as stop:
        tool.main([*args, str(bad)])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.count("\n") == 0 and str(bad) in err and err.startswith("error:")
