"""What one tool writes, the others read back identically.

``build_lists.py folders`` writes lists and a label map from class folders; :func:`parse_list_file`,
:func:`load_label_map`, the video dataset and the predict input lists must read back every path
and label, whatever the folder names hold: a leading ``#`` (not a comment), spaces, commas, a
column name before a comma, non-ASCII letters.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from video_sparse.data.lists import format_list_line, load_label_map, parse_list_file, write_list_file
from video_sparse.data.prepare.folders import build_folder_lists
from video_sparse.inference.inputs import discover_inputs

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["#hashtag", "# spaced hash", "with space", "a,b", "label,x", "naïve crème", "日本語", "plain"]
CLIPS = ["clip 1.mp4", "#2.mp4", "sub dir/3,x.mp4", "ü 4.mp4"]


@pytest.fixture
def class_folders(tmp_path) -> Path:
    root = tmp_path / "videos"
    for name in CLASSES:
        for clip in CLIPS:
            (root / name / clip).parent.mkdir(parents=True, exist_ok=True)
            (root / name / clip).write_bytes(b"")  # only names matter here
    return root


def test_folder_lists_read_back_every_video(class_folders):
    result = build_folder_lists(class_folders, val_fraction=0.25, test_fraction=0.25)
    names = load_label_map(result.files["labels"])
    assert names == sorted(CLASSES) == result.classes
    read = []
    for split in ("train", "val", "test"):
        records, layout = parse_list_file(result.files[split], label_map=result.files["labels"])
        assert layout == "video"
        read += [(r.path, names[r.label]) for r in records]
    on_disk = [(f"{c}/{clip}", c) for c in CLASSES for clip in CLIPS]
    assert sorted(read) == sorted(on_disk)
    assert all((class_folders / path).is_file() for path, _ in read)


def test_the_folders_tool_round_trips(class_folders):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_lists.py"), "folders", str(class_folders), "--val", "0.25"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    counts = dict.fromkeys(CLASSES, 0)
    names = load_label_map(class_folders / "labels.txt")
    for split in ("train", "val", "test"):
        for record in parse_list_file(class_folders / f"{split}.txt")[0]:
            counts[names[record.label]] += 1
    assert counts == {c: len(CLIPS) for c in CLASSES}  # no class loses its videos


@pytest.mark.parametrize("frames", [None, 16])
@pytest.mark.parametrize("path", ["#a/b.mp4", "# a/b c.mp4", "a,b/c.mp4", "label,x/y.mp4", "ü/ñ 1.mp4", "./#x.mp4"])
def test_format_and_parse_are_inverse(tmp_path, path, frames):
    entry = (path, 3) if frames is None else (path, frames, 3)
    write_list_file(tmp_path / "list.txt", [entry, ("plain.mp4", 1) if frames is None else ("plain", 8, 1)])
    (record, plain), _ = parse_list_file(tmp_path / "list.txt")
    expected = path[2:] if path.startswith("./#") else path  # "./#x" and "#x" name the same file
    assert (record.path, record.label, record.num_frames) == (expected, 3, frames)
    assert plain.path in ("plain.mp4", "plain")


@pytest.mark.parametrize("path", ["", " lead.mp4", "trail.mp4 ", "two\nlines.mp4", "cr\rx.mp4"])
def test_paths_no_line_can_hold_are_refused(path):
    with pytest.raises(ValueError, match="cannot be written to a list file"):
        format_list_line(path, 0)


def test_predict_list_of_written_paths(class_folders, tmp_path):
    rows = [(f"{c}/{clip}", 0) for c in CLASSES for clip in CLIPS]
    write_list_file(class_folders / "predict.txt", rows)
    items = discover_inputs([class_folders / "predict.txt"])
    assert sorted(Path(i.path).resolve() for i in items) == sorted((class_folders / p).resolve() for p, _ in rows)
    assert {i.kind for i in items} == {"video"}


ODD_IDS = ["#a/x.mp4", "a,b/c.mp4", 'say "hi"/d.mp4', "naïve/é 1.mp4", "label,x/y.mp4"]


def test_score_csv_round_trips_odd_video_ids(tmp_path):
    import numpy as np

    from video_sparse.evaluation.multiview import MergedScores, load_video_scores, save_video_scores

    n = len(ODD_IDS)
    scores = np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 10
    merged = MergedScores(np.arange(n), np.arange(n) % 3, scores, 2, "prob")
    save_video_scores(tmp_path / "scores.csv", merged, ODD_IDS)
    back, ids = load_video_scores(tmp_path / "scores.csv")
    assert ids == ODD_IDS
    assert np.array_equal(back.scores, scores) and np.array_equal(back.labels, merged.labels)


def test_prediction_csv_round_trips_odd_paths(tmp_path):
    import csv

    from video_sparse.inference.classifier import Prediction
    from video_sparse.inference.outputs import write_predictions

    predictions = [Prediction(p, "video", [("a, b", 0.75), ('c "d"', 0.25)], None, 1) for p in ODD_IDS]
    _, csv_path = write_predictions(predictions, tmp_path)
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == ODD_IDS
    assert {(r[5], r[7]) for r in rows[1:]} == {("a, b", 'c "d"')}
