"""tools/benchmark.py end to end on a tiny model: files, table rows, a valid PNG (not timings)."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    summary = _tool("benchmark").main(
        [
            "--preset",
            "tiny",
            "--batch-size",
            "2",
            "--reps",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--keep-rates",
            "0.5",
            "0.7",
            "0.9",
            "--explicit-keep-rates",
            "0.7",
            "--no-memory",
            "--num-classes",
            "7",
            "--out-dir",
            str(out),
            "--name",
            "tiny",
        ]
    )
    return out, summary


def test_writes_json_markdown_and_plot(tool_run):
    out, summary = tool_run
    written = {Path(summary[k]).name for k in ("json", "markdown", "plot")}
    assert written == {"tiny.json", "tiny.md", "tiny.png"}
    data = json.loads((out / "tiny.json").read_text())
    names = [r["variant"]["name"] for r in data["results"]]
    assert names == ["dense_vit", "dense_adapter", "sparse_0.5", "sparse_0.7", "sparse_0.9", "explicit_0.7"]
    assert data["config"]["model"] == "sparse_vit_nano_patch16_64" and data["config"]["num_classes"] == 7
    assert data["environment"]["threads"] == 1
    table = (out / "tiny.md").read_text()
    for name in names:
        assert f"| {name} |" in table
    _assert_png(out / "tiny.png")
    assert set(summary["rows"]) == set(names)
    assert summary["ratios"]["gmacs_vs_dense_vit"] < 1


def test_plot_from_several_results(tool_run, tmp_path):
    out, _ = tool_run
    second = json.loads((out / "tiny.json").read_text())
    second["config"]["model"] = "another_model"
    (tmp_path / "b.json").write_text(json.dumps(second))
    result = _tool("benchmark").main(
        ["--plot-from", str(out / "tiny.json"), str(tmp_path / "b.json"), "--plot", str(tmp_path / "both.png")]
    )
    _assert_png(result["plot"])


def test_without_a_model_or_preset_it_lists_the_presets(tmp_path, capsys):
    assert _tool("benchmark").main(["--out-dir", str(tmp_path)]) == {"presets": sorted(_tool("benchmark").PRESETS)}
    out = capsys.readouterr().out
    assert "presets (python tools/benchmark.py --preset NAME" in out
    assert all(f"  {name} " in out for name in ("image", "tiny", "video", "video32", "video_large"))
    assert list(tmp_path.iterdir()) == []


def test_several_presets_in_one_call(tmp_path):
    common = [
        "--batch-size",
        "1",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--train-reps",
        "0",
        "--threads",
        "1",
        "--keep-rates",
        "0.5",
        "--explicit-keep-rates",
        "--no-memory",
        "--out-dir",
        str(tmp_path),
    ]
    result = _tool("benchmark").main(["--preset", "tiny", "tiny", *common])
    assert len(result["runs"]) == 2 and Path(result["plot"]).name == "cost_curves_cpu.png"
    _assert_png(result["plot"])
    table = (tmp_path / "tiny_cpu.md").read_text()
    assert "| sparse_0.5 |" in table and "explicit" not in table.split("| variant")[1].split("Key ratios")[0]
    with pytest.raises(SystemExit):
        _tool("benchmark").main(["--preset", "tiny", "tiny", "--name", "x", *common])
