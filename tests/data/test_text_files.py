"""Text as editors save it: one reader for list files, label maps, annotations and predict inputs.

The same content saved as UTF-8, UTF-8 with a byte-order mark (Notepad, Excel "CSV UTF-8"),
UTF-16 with a byte-order mark (Excel "Unicode text"), with CRLF, CR-only or LF line ends and
trailing spaces must read the same everywhere; undecodable bytes and broken JSON are errors that
name the file and line.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from video_sparse.data.lists import load_label_map, parse_list_file
from video_sparse.data.prepare.annotations import build_kinetics_lists, build_ssv2_lists
from video_sparse.data.text import TextFileError, read_json, read_lines, read_text
from video_sparse.inference.inputs import discover_inputs

ROOT = Path(__file__).resolve().parents[2]
#: how editors save text: (name, encoding, line end)
SAVED_AS = [
    ("utf8", "utf-8", "\n"),
    ("utf8_bom_crlf", "utf-8-sig", "\r\n"),
    ("utf8_bom_cr", "utf-8-sig", "\r"),
    ("utf16_bom_crlf", "utf-16", "\r\n"),
    ("utf16be_bom", "utf-16-be-bom", "\n"),
    ("utf8_crlf_trailing_spaces", "utf-8", "  \r\n"),
]


def save(path: Path, lines: list[str], how: str) -> Path:
    """Write ``lines`` as the editor named by ``how`` (an entry of :data:`SAVED_AS`) would."""
    _, encoding, end = next(s for s in SAVED_AS if s[0] == how)
    text = "".join(line + end for line in lines)
    if encoding == "utf-16-be-bom":
        data = b"\xfe\xff" + text.encode("utf-16-be")
    else:
        data = text.encode(encoding)  # "utf-16" and "utf-8-sig" write the byte-order mark
    path.write_bytes(data)
    return path


HOWS = [s[0] for s in SAVED_AS]


@pytest.mark.parametrize("how", HOWS)
def test_every_saving_reads_the_same_lines(tmp_path, how):
    lines = ["abseiling", "air drumming", "café crème", "", "zumba"]
    path = save(tmp_path / "t.txt", lines, how)
    assert [line for _, line in read_lines(path)] == lines
    assert [n for n, _ in read_lines(path)] == [1, 2, 3, 4, 5]
    assert "\ufeff" not in read_text(path) and "\r" not in read_text(path)


def test_undecodable_bytes_name_the_file_and_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes("abseiling\nair drumming\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(TextFileError, match=r"labels\.txt:3: not UTF-8 text \(bytes e9\)"):
        read_text(path)
    with pytest.raises(TextFileError, match=r"labels\.txt:3:"):
        load_label_map(path)


def test_broken_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "labels.json"
    path.write_bytes(b'\xef\xbb\xbf{\r\n  "Holding something": "0",\r\n  "Pushing something" "1"\r\n}')
    with pytest.raises(TextFileError, match=r"labels\.json:3:23: invalid JSON"):
        read_json(path)


@pytest.mark.parametrize("how", HOWS)
def test_label_maps(tmp_path, how):
    names = load_label_map(save(tmp_path / "labels.txt", ["abseiling", "air drumming"], how))
    assert names == ["abseiling", "air drumming"]
    ssv2 = json.dumps({"Holding something": "0", "Pushing something": "1"}, indent=1).split("\n")
    assert load_label_map(save(tmp_path / "labels.json", ssv2, how)) == ["Holding something", "Pushing something"]


@pytest.mark.parametrize("how", HOWS)
def test_list_file(tmp_path, how):
    save(tmp_path / "labels.txt", ["abseiling", "air drumming"], how)
    path = save(tmp_path / "train.txt", ["a/x 1.mp4 abseiling", "# note", "b/y.mp4 1"], how)
    records, layout = parse_list_file(path, label_map=tmp_path / "labels.txt")
    assert layout == "video"
    assert [(r.path, r.label, r.lineno) for r in records] == [("a/x 1.mp4", 0, 1), ("b/y.mp4", 1, 3)]


@pytest.mark.parametrize("how", ["utf8_bom_crlf", "utf16_bom_crlf", "utf8_bom_cr"])
def test_kinetics_label_map_and_csv_keep_class_0(tmp_path, how):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("aaa_000001_000011.mp4", "bbb_000002_000012.mp4"):
        (videos / name).write_bytes(b"")  # only names are matched here
    label_map = save(tmp_path / "k400_labels.txt", ["abseiling", "air drumming"], how)
    csv_file = save(
        tmp_path / "train.csv",
        ["label,youtube_id,time_start,time_end,split", "abseiling,aaa,1,11,train", '"air drumming",bbb,2,12,train'],
        how,
    )
    (report,) = build_kinetics_lists({"train": csv_file}, videos, tmp_path / "out", label_map)
    assert not report.unmapped and report.num_written == 2
    records, _ = parse_list_file(tmp_path / "out" / "train.txt")
    assert sorted((r.path, r.label) for r in records) == [("aaa_000001_000011.mp4", 0), ("bbb_000002_000012.mp4", 1)]
    assert load_label_map(tmp_path / "out" / "labels.txt")[0] == "abseiling"


@pytest.mark.parametrize("how", ["utf8_bom_crlf", "utf16_bom_crlf"])
def test_ssv2_annotations(tmp_path, how):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "7.webm").write_bytes(b"")
    labels = save(tmp_path / "labels.json", [json.dumps({"Holding something": "0", "Pushing something": "1"})], how)
    split = save(tmp_path / "train.json", [json.dumps([{"id": "7", "template": "Pushing [something]"}])], how)
    (report,) = build_ssv2_lists(labels, {"train": split}, videos, tmp_path / "out")
    assert report.num_written == 1 and not report.unmapped
    assert [(r.path, r.label) for r in parse_list_file(tmp_path / "out" / "train.txt")[0]] == [("7.webm", 1)]


def test_build_lists_tool_names_a_broken_labels_json(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "labels.json").write_bytes(b'\xef\xbb\xbf{"Holding something": "0",}')
    (tmp_path / "train.json").write_text("[]")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_lists.py"), "ssv2", "--labels", str(tmp_path / "labels.json")]
        + ["--split", f"train={tmp_path / 'train.json'}", "--videos", str(tmp_path / "videos")]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'labels.json'}:1:27: invalid JSON" in result.stderr


@pytest.mark.parametrize("how", HOWS)
def test_predict_input_list(tmp_path, how):
    for name in ("first clip.mp4", "second.mp4"):
        (tmp_path / name).write_bytes(b"")
    listed = save(tmp_path / "inputs.txt", ["first clip.mp4", "# a note", "second.mp4 3"], how)
    items = discover_inputs([listed])
    assert [(Path(i.path).name, i.kind) for i in items] == [("first clip.mp4", "video"), ("second.mp4", "video")]
