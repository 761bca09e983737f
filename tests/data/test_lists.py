"""List-file parsing, label maps, and the lists shipped in data_lists/."""

import json
from pathlib import Path

import pytest

from video_sparse.data.lists import (
    detect_line_layout,
    load_label_map,
    parse_list_file,
    write_label_map,
    write_list_file,
)

DATA_LISTS = Path(__file__).resolve().parents[2] / "data_lists"


def _write(tmp_path, text, name="list.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_video_list_with_spaces_comments_and_blanks(tmp_path):
    path = _write(tmp_path, "# header comment\n\nmy videos/clip one.mp4 3\n  b.webm\t0  \n")
    records, layout = parse_list_file(path)
    assert layout == "video"
    assert [(r.path, r.label, r.num_frames, r.lineno) for r in records] == [
        ("my videos/clip one.mp4", 3, None, 3),
        ("b.webm", 0, None, 4),
    ]


def test_frame_list_splits_last_two_fields(tmp_path):
    path = _write(tmp_path, "folder with space 12 5\nplain 300 0\n")
    records, layout = parse_list_file(path)
    assert layout == "frames"
    got = [(r.path, r.num_frames, r.label) for r in records]
    assert got == [("folder with space", 12, 5), ("plain", 300, 0)]


@pytest.mark.parametrize(
    "line, layout",
    [
        ("a.mp4 1", "video"),
        ("dir/clip 12.mp4 3", "video"),
        ("clip.mp4 12 3", "frames"),
        ("folder 12 3", "frames"),
        ("x/y.MKV 0", "video"),
        ("no_extension 4", "video"),
    ],
)
def test_layout_detection(line, layout):
    assert detect_line_layout(line) == layout


@pytest.mark.parametrize(
    "text, lineno",
    [
        ("a.mp4 1\nlonely\n", 2),
        ("a.mp4 1\nb.mp4 x\n", 2),
        ("a.mp4 1\n\n# c\nb.mp4 -1\n", 4),
    ],
)
def test_malformed_video_line_names_file_and_line(tmp_path, text, lineno):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"list.txt:{lineno}\b"):
        parse_list_file(path)


def test_malformed_frame_line(tmp_path):
    path = _write(tmp_path, "f1 10 1\nf2 ten 1\n")
    with pytest.raises(ValueError, match=r"list.txt:2: expected 'relative/folder NUM_FRAMES LABEL'"):
        parse_list_file(path)
    with pytest.raises(ValueError, match=r"list.txt:1"):
        parse_list_file(path, layout="video", label_map=["a"])  # label 1 out of range for 1 class


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="no entries"):
        parse_list_file(_write(tmp_path, "# nothing\n\n"))
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        parse_list_file(tmp_path / "absent.txt")


def test_class_name_labels(tmp_path):
    names = ["abseiling", "air drumming", "zumba"]
    path = _write(tmp_path, "x/1.mp4 zumba\nx/2.mp4 air_drumming\nx/3.mp4 0\n")
    records, _ = parse_list_file(path, label_map=names)
    assert [r.label for r in records] == [2, 1, 0]
    with pytest.raises(ValueError, match=r"list.txt:1: label 'zumba' is not an integer and no label map"):
        parse_list_file(path)
    bad = _write(tmp_path, "x/1.mp4 yoga\n", "bad.txt")
    with pytest.raises(ValueError, match=r"bad.txt:1: label 'yoga' is not in the label map"):
        parse_list_file(bad, label_map=names)


def test_csv_with_header(tmp_path):
    path = _write(tmp_path, 'video,label\n"a, b/c d.mp4",air drumming\ne.mp4,0\n', "l.csv")
    records, layout = parse_list_file(path, label_map=["abseiling", "air drumming"])
    assert layout == "video"
    assert [(r.path, r.label, r.lineno) for r in records] == [("a, b/c d.mp4", 1, 2), ("e.mp4", 0, 3)]
    frames = _write(tmp_path, "label,num_frames,folder\n1,20,f a\n", "f.csv")
    records, layout = parse_list_file(frames)
    assert layout == "frames" and records[0][:3] == ("f a", 1, 20)
    bad = _write(tmp_path, "path,label\na.mp4,1\nb.mp4\n", "bad.csv")
    with pytest.raises(ValueError, match=r"bad.csv:3"):
        parse_list_file(bad)


def test_headerless_csv_and_commas_in_space_lists(tmp_path):
    records, layout = parse_list_file(_write(tmp_path, "a.mp4,3\nb,c.mp4,1\n"))
    assert layout == "video" and [(r.path, r.label) for r in records] == [("a.mp4", 3), ("b,c.mp4", 1)]
    records, layout = parse_list_file(_write(tmp_path, "f1,30,2\n", "f.txt"))
    assert layout == "frames" and records[0][:3] == ("f1", 2, 30)
    records, _ = parse_list_file(_write(tmp_path, "x,y.mp4 4\n", "s.txt"))
    assert (records[0].path, records[0].label) == ("x,y.mp4", 4)


def test_write_and_read_back(tmp_path):
    write_list_file(tmp_path / "v.txt", [("a b/c.mp4", 2), ("d.webm", 0)])
    records, layout = parse_list_file(tmp_path / "v.txt")
    assert layout == "video" and [(r.path, r.label) for r in records] == [("a b/c.mp4", 2), ("d.webm", 0)]
    write_list_file(tmp_path / "f.txt", [("a b", 10, 1)])
    records, layout = parse_list_file(tmp_path / "f.txt")
    assert layout == "frames" and records[0][:3] == ("a b", 1, 10)
    with pytest.raises(ValueError):
        write_list_file(tmp_path / "x.txt", [("bad\nname.mp4", 1)])


def test_label_map_formats(tmp_path):
    write_label_map(tmp_path / "l.txt", ["b", "a c"])
    assert load_label_map(tmp_path / "l.txt") == ["b", "a c"]
    (tmp_path / "l.json").write_text(json.dumps({"second": "1", "first": "0"}))
    assert load_label_map(tmp_path / "l.json") == ["first", "second"]
    (tmp_path / "gap.json").write_text(json.dumps({"a": "0", "b": "2"}))
    with pytest.raises(ValueError, match="0..1"):
        load_label_map(tmp_path / "gap.json")
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match="duplicate"):
        load_label_map(tmp_path / "dup.txt")
    (tmp_path / "blank.txt").write_text("a\n\nb\n")
    with pytest.raises(ValueError, match=r"blank.txt:2"):
        load_label_map(tmp_path / "blank.txt")
    assert load_label_map(None) is None


def test_shipped_kinetics400_labels():
    names = load_label_map(DATA_LISTS / "kinetics400_labels.txt")
    assert len(names) == 400 and len(set(names)) == 400
    assert names == sorted(names)  # public order: sorted class names
    assert names[0] == "abseiling" and names[-1] == "zumba"
    for name in (
        "passing American football (in game)",
        "skiing (not slalom or crosscountry)",
        "tying knot (not on a tie)",
        "massaging person's head",
        "air drumming",
    ):
        assert name in names


def test_shipped_ssv2_labels():
    names = load_label_map(DATA_LISTS / "ssv2_labels.txt")
    assert len(names) == 174 and len(set(names)) == 174
    assert not any("[" in n or "]" in n for n in names)
    assert names[0] == "Approaching something with your camera"
    assert names.index("Holding something") == 16
    assert names[-1] == "Wiping something off of something"


@pytest.mark.parametrize(
    "name, layout, n",
    [
        ("video_list.txt", "video", 2),
        ("frames_list.txt", "frames", 2),
        ("frames_start_list.txt", "frames_start", 2),
        ("video_list_header.csv", "video", 2),
        ("video_list_videomae.csv", "video", 2),
    ],
)
def test_documented_examples_parse(name, layout, n):
    label_map = DATA_LISTS / "kinetics400_labels.txt"
    records, got = parse_list_file(DATA_LISTS / "examples" / name, label_map=label_map)
    assert got == layout and len(records) == n
    if layout == "video":
        assert [r.label for r in records] == [0, 1]
        assert records[1].path == "air drumming/--nQbRBEz2s_000104_000114.mp4"
    readme = (DATA_LISTS / "README.md").read_text()
    first = next(
        line for line in (DATA_LISTS / "examples" / name).read_text().splitlines() if line and not line.startswith("#")
    )
    assert first in readme


def test_four_column_frames_start_layout(tmp_path):
    path = _write(tmp_path, "ssv2/78687 0 45 93\nfolder with space 1 38 16\n")
    records, layout = parse_list_file(path)
    assert layout == "frames_start"
    got = [(r.path, r.start_index, r.num_frames, r.label, r.lineno) for r in records]
    assert got == [("ssv2/78687", 0, 45, 93, 1), ("folder with space", 1, 38, 16, 2)]
    assert parse_list_file(path, layout="frames_start")[0] == records
    assert detect_line_layout("a/b 0 45 93") == "frames_start"
    assert detect_line_layout("a/b 12.mp4 0") == "video"


@pytest.mark.parametrize(
    "text, layout, lineno",
    [
        ("a.mp4 1\nf 0 30 2\n", "auto", 2),  # a four-column line inside a video list
        ("f 30 2\ng 0 30 2\n", "auto", 2),  # ... inside a frame list
        ("f 30 2\n", "video", 1),  # frame line read as a video line
        ("f 0 30 2\n", "frames", 1),  # four-column line read as a frame line
        ("f 30 2\n", "frames_start", 1),  # too few columns
        ("f 0 -1 2\n", "auto", 1),  # VideoMAE V2's "whole video" marker is no frame count
        ("f -1 30 2\n", "frames_start", 1),
    ],
)
def test_lines_fitting_no_declared_layout_are_refused_at_parse_time(tmp_path, text, layout, lineno):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"list.txt:{lineno}: "):
        parse_list_file(path, layout=layout)


@pytest.mark.parametrize(
    "text, label_map, lineno, label",
    [
        ("a.mp4 0\nb.mp4 4\n", None, 2, 4),
        ("f 30 1\ng 30 7\n", None, 2, 7),
        ("f 0 30 3\ng 0 30 5\n", None, 2, 5),
        ("a.mp4,4\n", None, 1, 4),
        ("path,label\na.mp4,e\n", ["a", "b", "c", "d", "e"], 2, 4),  # a name beyond the head
    ],
)
def test_labels_checked_against_num_classes_up_front(tmp_path, text, label_map, lineno, label):
    path = _write(tmp_path, text)
    with pytest.raises(
        ValueError,
        match=rf"list.txt:{lineno}: label {label} out of range for "
        rf"data.num_classes=4",
    ):
        parse_list_file(path, label_map=label_map, num_classes=4)
    assert len(parse_list_file(path, label_map=label_map, num_classes=label + 1)[0]) >= 1


def test_resolve_inside_refuses_escapes(tmp_path):
    from video_sparse.data.lists import UnsafePathError, resolve_inside

    out = tmp_path / "out"
    out.mkdir()
    assert resolve_inside(out, "a/b c/d", "l:1") == out.resolve() / "a/b c/d"
    assert resolve_inside(out, "a/../b") == out.resolve() / "b"
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    (out / "inner").symlink_to(out / "a", target_is_directory=True)
    assert resolve_inside(out, "inner/x") == out.resolve() / "a/x"
    for rel in ("../../x", "../out2/x", "/tmp/x", "", ".", "a/..", "link/x", "link"):
        with pytest.raises(UnsafePathError, match="l:7: path"):
            resolve_inside(out, rel, "l:7")


def test_frames_start_list_reads_each_folder_from_its_own_start(tmp_path):
    import numpy as np
    from PIL import Image

    from video_sparse.data.video_dataset import build_video_dataset

    for name, start in (("a", 0), ("b b", 5)):
        (tmp_path / name).mkdir()
        for k in range(4):  # frame k of the video is grey level 50 * k
            Image.fromarray(np.full((8, 8, 3), 50 * k, np.uint8)).save(
                tmp_path / name / f"img_{start + k:05d}.jpg", quality=100
            )
    list_file = _write(tmp_path, "a 0 4 1\nb b 5 4 0\n")
    ds = build_video_dataset(
        tmp_path,
        list_file,
        "test",
        num_frames=4,
        frame_interval=1,
        input_size=8,
        short_side_size=8,
        num_clips=1,
        num_crops=1,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        num_classes=2,
    )
    assert ds.layout == "frames_start" and ds.labels == [1, 0]
    for i in range(2):
        item = ds[i]
        assert not item.get("failed")
        levels = item["input"].mean(dim=(0, 2, 3)) * 255 / 50
        assert levels.round().tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"list.txt:1: label 1 out of range for data.num_classes=1"):
        build_video_dataset(tmp_path, list_file, "test", num_classes=1)
