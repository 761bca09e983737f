"""What a user types and reads: path values, typos, class counts, file resolution, messages of the tools."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from video_sparse.checkpoint.report import LoadReport
from video_sparse.engine.config import compose_config
from video_sparse.engine.overrides import quote_path_override
from video_sparse.engine.preflight import _class_counts, find_file
from video_sparse.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("typed", "key", "expected"),
    [
        ("data.root=~/my_clips", "data.root", "{home}/my_clips"),
        ("data.root=/data/my clips", "data.root", "/data/my clips"),
        ("data.label_map=~/a b/labels (v2).txt", "data.label_map", "{home}/a b/labels (v2).txt"),
        ("pretrained=../w/it's [1].pth", "pretrained", "../w/it's [1].pth"),
        ("checkpoint=~/runs/x,y.pth", "checkpoint", "{home}/runs/x,y.pth"),
        ("output_dir=~/out dir", "output_dir", "{home}/out dir"),
        ("resume=~/run/checkpoints/step_1", "resume", "{home}/run/checkpoints/step_1"),
        ("resume=auto", "resume", "auto"),
        ("resume=null", "resume", None),
        ("data.root='/quoted/already'", "data.root", "/quoted/already"),
    ],
)
def test_path_settings_take_what_a_shell_passes(typed, key, expected):
    """The value after `=` as the shell hands it over (no `~` expansion, spaces kept by the user's quotes)."""
    cfg = compose_config(["data=custom", "data.root=/d", typed], "test")
    home = os.path.expanduser("~")
    value = cfg
    for part in key.split("."):
        value = value[part]
    assert value == (expected.format(home=home) if expected else None)


def test_non_path_values_and_options_pass_unchanged():
    for text in ("data.batch_size=4", "sparsity.keep_rate=0.5", "--cfg", "job", "data=custom", "name=~x"):
        assert quote_path_override(text) == text
    assert quote_path_override("+data.root=~/x") == f"+data.root='{os.path.expanduser('~')}/x'"
    assert quote_path_override("data.root=${oc.env:HOME}/x") == "data.root=${oc.env:HOME}/x"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batchsize=4", "data.batchsize is not a setting; did you mean data.batch_size?"),
        ("epoch=3", "epoch is not a setting; did you mean epochs?"),
        ("dat=custom", "dat is not a setting; did you mean data?"),
        ("data=custm", "data=custm is not an option of data; did you mean data=custom?"),
        ("sparsity=papr", "sparsity=papr is not an option of sparsity; did you mean sparsity=paper?"),
        ("optim.blrr=1e-3", "optim.blrr is not a setting; did you mean optim.blr?"),
        ("sparsity.keeprate=0.5", "sparsity.keeprate is not a setting; did you mean sparsity.keep_rate?"),
        ("train.log_evry=3", "train.log_evry is not a setting; did you mean train.log_every?"),
    ],
)
def test_a_mistyped_key_group_or_option_gets_did_you_mean(override, message):
    with pytest.raises(ConfigError) as err:
        compose_config(["data=custom", override], "train")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    if " is not an option of " in message:
        assert "Available options in" in str(err.value)


def test_an_added_key_nothing_reads_gets_did_you_mean():
    from video_sparse.engine.builders import instantiate_group

    cfg = compose_config(["data=custom", "data.root=/d", "+data.batchsize=4"], "train")
    with pytest.raises(
        ConfigError, match="data.batchsize is not an argument of VideoData; did you mean data.batch_size"
    ):
        instantiate_group(cfg.data, "data")


def test_train_tool_typo_is_one_line_with_the_suggestion(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), "data=custom", "data.root=~/x", "data.batchsize=4"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "did you mean data.batch_size?" in result.stderr and "use +data.batchsize" not in result.stderr
    assert not (tmp_path / "outputs").exists()


def _custom(tmp_path: Path, names: list[str], *overrides: str, mode: str = "train"):
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    return compose_config(["data=custom", f"data.root={tmp_path}", *overrides], mode)


def _saved(head: int | None, built: int | None = None) -> dict:
    return {"model_args": {"num_classes": built} if built else None, "data": {}, "head_classes": head}


def test_class_counts_of_every_source_must_agree(tmp_path):
    names = ["a", "b", "c"]
    assert set(_class_counts(_custom(tmp_path, names), None).values()) == {3}
    cases = [
        (_custom(tmp_path, names, "checkpoint=x.pth", mode="test"), _saved(4), "checkpoint=x.pth (its head): 4"),
        (_custom(tmp_path, names, "data.num_classes=5"), None, "data.num_classes: 5"),
        (_custom(tmp_path, names, "model.num_classes=2"), None, "model.num_classes: 2"),
        (_custom(tmp_path, names, "checkpoint=x.pth", mode="test"), _saved(None, 6), "(model_args): 6"),
    ]
    for cfg, saved, named in cases:
        with pytest.raises(ConfigError) as err:
            _class_counts(cfg, saved)
        text = str(err.value)
        assert "class counts disagree" in text and named in text and "labels.txt: 3" in text and "\n" not in text
    demo = compose_config(["checkpoint=x.pth"], "test")  # the demo: data.num_classes 4, no label map
    assert _class_counts(demo, _saved(4)) == {"data.num_classes": 4, "checkpoint=x.pth (its head)": 4}


def test_find_file_names_the_kind_and_resolves_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_file("assets/demo_backbone_nano.safetensors", "pretrained") == str(
        REPO / "assets" / "demo_backbone_nano.safetensors"
    )
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "demo_backbone_nano.safetensors").write_bytes(b"")  # the current folder wins
    assert find_file("assets/demo_backbone_nano.safetensors", "pretrained") == str(
        (tmp_path / "assets" / "demo_backbone_nano.safetensors").resolve()
    )
    for key, kind in (
        ("pretrained", "backbone weights"),
        ("checkpoint", "trained weights"),
        ("--backbone", "backbone"),
    ):
        with pytest.raises(FileNotFoundError, match=f"{key}=nowhere.pth: {kind}.* not found"):
            find_file("nowhere.pth", key)


def test_classifier_resolves_the_experiments_backbone_from_another_folder(tmp_path, monkeypatch):
    from video_sparse.inference import VideoClassifier

    monkeypatch.chdir(tmp_path)
    overrides = [f"data.root={tmp_path / 'd'}"]
    clf = VideoClassifier.from_experiment("demo", overrides=overrides, device="cpu")
    assert clf.model.num_classes == 4
    clf = VideoClassifier.from_experiment(
        "demo", pretrained="assets/demo_backbone_nano.safetensors", overrides=overrides, device="cpu"
    )
    with pytest.raises(FileNotFoundError, match="pretrained=missing.safetensors: backbone weights not found"):
        VideoClassifier.from_experiment("demo", pretrained="missing.safetensors", overrides=overrides)
    with pytest.raises(FileNotFoundError, match="checkpoint=outputs/demo/adapter.pth: trained weights not found"):
        VideoClassifier.from_experiment("demo", checkpoint="outputs/demo/adapter.pth", overrides=overrides)


def test_export_onnx_names_a_missing_backbone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = _tool("export_onnx").main(["--model", "sparse_vit_nano_patch16_64", "--pretrained", "w.pth"])
    assert code == 2 and "--pretrained=w.pth: backbone weights not found" in capsys.readouterr().err


def test_export_onnx_benchmark_refuses_too_few_rounds(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool("export_onnx").main(["--model", "sparse_vit_nano_patch16_64", "--benchmark", "--repeats", "3"])
    assert exit_info.value.code == 2 and "at least 5 rounds" in capsys.readouterr().err


def test_speedup_is_dense_over_sparse_with_the_per_round_range():
    from video_sparse.analysis.onnx_export import speedup

    dense = {"median_s": 2.0, "times_s": [2.0, 3.0, 1.0]}
    sparse = {"median_s": 1.0, "times_s": [1.0, 1.0, 2.0]}
    assert speedup(dense, sparse) == {"median": 2.0, "min": 0.5, "max": 3.0}


def test_video_scores_columns_carry_the_class_names(tmp_path):
    from video_sparse.evaluation.multiview import MergedScores, load_video_scores, save_video_scores

    merged = MergedScores(np.arange(2), np.array([0, 2]), np.eye(3, dtype=np.float32)[[0, 2]], 1, "prob")
    path = save_video_scores(tmp_path / "s.csv", merged, ["a/x.mp4", "b/y.mp4"], ["cat", "dog, big", "eel"])
    assert path.read_text().splitlines()[0] == 'sample_index,video_id,label,pred,score_cat,"score_dog, big",score_eel'
    loaded, ids = load_video_scores(path)
    assert ids == ["a/x.mp4", "b/y.mp4"] and np.array_equal(loaded.scores, merged.scores)
    with pytest.raises(ValueError, match="2 class names for 3 score columns"):
        save_video_scores(tmp_path / "t.csv", merged, None, ["cat", "dog"])


def test_benchmark_without_arguments_lists_the_presets(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tool = _tool("benchmark")
    assert tool.main([]) == {"presets": sorted(tool.PRESETS)}
    text = capsys.readouterr().out
    for name, (model, *_rest) in tool.PRESETS.items():
        assert f"  {name} " in text and model in text
    assert "CPU: 209 s" in text
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert tool.build_parser().parse_args([]).out_dir == "outputs/benchmarks"


def test_generated_files_default_under_outputs_and_are_ignored():
    export = _tool("export_dinov2_onnx")
    assert "outputs/dinov2_vits14" in export.__doc__
    for path in ("benchmarks/a.json", "dinov2_vits14.safetensors", "outputs/benchmarks/x.md"):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False)
        assert result.returncode == 0, f"{path} is not ignored by git"


def test_load_report_says_what_loaded_in_words():
    backbone = LoadReport("b.safetensors", "timm", loaded=52, expected_missing=["blocks.0.adapter.w", "head.weight"])
    assert backbone.summary() == (
        "b.safetensors (timm): backbone: 52 tensors loaded; adapters and head (2 tensors) start fresh, as expected"
    )
    adapter = LoadReport("a.pth", "adapter", loaded=42, expected_missing=["blocks.0.attn.qkv.weight"] * 52)
    assert adapter.summary() == (
        "a.pth (adapter): adapters and head: 42 tensors loaded; the frozen backbone (52 tensors) comes from "
        "the backbone weights"
    )
    resized = LoadReport("p.npz", "npz", loaded=10, resized=["pos_embed"], unexpected=["decoder.w"])
    assert resized.summary() == (
        "p.npz (npz): backbone: 10 tensors loaded; 1 in the file but left out (decoder.w); "
        "1 resized to the model's grid (pos_embed)"
    )
