"""tools/build_lists.py on small Kinetics-style and SSv2-style folders, round-tripped through the dataset."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from video_sparse.data.lists import load_label_map, parse_list_file
from video_sparse.data.video_dataset import build_video_dataset

REPO = Path(__file__).resolve().parents[2]
K400_LABELS = REPO / "data_lists" / "kinetics400_labels.txt"


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kinetics(tmp_path, painted):
    videos = tmp_path / "videos"
    painted.write_video(videos / "abseiling" / "AAA_000010_000020.mp4", 30)
    painted.write_video(videos / "air drumming" / "BBB_000005_000015.mp4", 31)
    painted.write_video(videos / "zumba" / "CCC.mp4", 32)
    painted.write_video(videos / "misc" / "EEE_000000_000010.mp4", 33)
    painted.write_video(videos / "val" / "VVV_000001_000011.mp4", 34)
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,AAA,10,20,train,0\n"
        '"air drumming",BBB,5,15,train,0\n'
        "zumba,CCC,0,10,train,0\n"
        "abseiling,DDD,3,13,train,0\n"
        "flying saucer,EEE,0,10,train,0\n"
    )
    (ann / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nyoga,VVV,1,11,val\n")
    return tmp_path


def test_kinetics_lists(kinetics):
    out = kinetics / "lists"
    code = _tool("build_lists").main(
        [
            "kinetics",
            "--csv",
            f"train={kinetics / 'ann/train.csv'}",
            "--csv",
            f"val={kinetics / 'ann/validate.csv'}",
            "--videos",
            str(kinetics / "videos"),
            "--out",
            str(out),
            "--label-map",
            str(K400_LABELS),
        ]
    )
    assert code == 0
    names = load_label_map(K400_LABELS)
    records, layout = parse_list_file(out / "train.txt")
    assert layout == "video"
    assert [(r.path, r.label) for r in records] == [
        ("abseiling/AAA_000010_000020.mp4", names.index("abseiling")),
        ("air drumming/BBB_000005_000015.mp4", names.index("air drumming")),
        ("zumba/CCC.mp4", names.index("zumba")),
    ]
    assert (out / "train_missing.txt").read_text().split() == ["DDD_000003_000013"]
    assert (out / "train_unmapped.txt").read_text() == "flying saucer\t1\n"
    assert load_label_map(out / "labels.txt") == names
    val, _ = parse_list_file(out / "val.txt")
    assert [(r.path, r.label) for r in val] == [("val/VVV_000001_000011.mp4", names.index("yoga"))]
    ds = build_video_dataset(
        kinetics / "videos",
        out / "train.txt",
        "val",
        backend="pyav",
        num_frames=4,
        frame_interval=2,
        input_size=64,
        short_side_size=64,
    )
    assert [ds[i]["label"] for i in range(len(ds))] == [0, 1, 399]


def test_kinetics_default_label_map_is_sorted_csv_labels(kinetics, painted):
    out = kinetics / "lists2"
    reports = _tool("build_lists").main(
        [
            "kinetics",
            "--csv",
            f"train={kinetics / 'ann/train.csv'}",
            "--videos",
            str(kinetics / "videos"),
            "--out",
            str(out),
        ]
    )
    assert reports == 0
    names = load_label_map(out / "labels.txt")
    assert names == sorted(["abseiling", "air drumming", "zumba", "flying saucer"])
    records, _ = parse_list_file(out / "train.txt")
    assert [r.label for r in records] == [0, 1, 3, 2]  # flying saucer now maps; DDD still missing
    assert not (out / "train_unmapped.txt").exists()


def test_ssv2_lists_via_the_command_line(tmp_path, painted):
    videos = tmp_path / "videos"
    for vid, n in (("101", 20), ("102", 22), ("103", 24), ("201", 26)):
        painted.write_video(videos / f"{vid}.webm", n)
    labels = {"Holding something": "0", "Moving something up": "1", "Pushing something from left to right": "2"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    train = [
        {
            "id": "101",
            "label": "pushing a cup",
            "template": "Pushing [something] from left to right",
            "placeholders": ["a cup"],
        },
        {"id": "102", "template": "Holding [something]"},
        {"id": "103", "template": "Spinning [something] so it continues spinning"},
        {"id": "999", "template": "Moving [something] up"},
    ]
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "val.json").write_text(json.dumps([{"id": "201", "template": "Moving [something] up"}]))
    out = tmp_path / "lists"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "build_lists.py"),
            "ssv2",
            "--labels",
            str(tmp_path / "labels.json"),
            "--split",
            f"train={tmp_path / 'train.json'}",
            "--split",
            f"val={tmp_path / 'val.json'}",
            "--videos",
            str(videos),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "train: 2/4 written" in proc.stdout and "1 missing on disk" in proc.stdout
    records, _ = parse_list_file(out / "train.txt")
    assert [(r.path, r.label) for r in records] == [("101.webm", 2), ("102.webm", 0)]
    assert (out / "train_missing.txt").read_text() == "999\n"
    assert "Spinning something so it continues spinning\t1" in (out / "train_unmapped.txt").read_text()
    ds = build_video_dataset(
        videos,
        out / "val.txt",
        "test",
        backend="pyav",
        sampling="segment",
        num_frames=8,
        input_size=64,
        short_side_size=64,
        num_clips=2,
        num_crops=1,
    )
    assert len(ds) == 2 and ds.labels == [1]
    torch.manual_seed(0)
    assert painted.clip_indices(ds[1]["input"]) == [int((j + 0.75) * 26 / 8) for j in range(8)]


def test_bad_split_argument_is_reported():
    with pytest.raises(SystemExit, match="SPLIT=PATH"):
        _tool("build_lists").main(["kinetics", "--csv", "train.csv", "--videos", ".", "--out", "."])
