"""Frame folders are complete because their record proves it, never because they exist; two runs into one
``--out`` never leave a truncated folder."""

import importlib.util
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from video_sparse.data.lists import parse_list_file
from video_sparse.data.prepare.frames import LOCK, RECORD, complete_frame_count, extract_frames, prepare_frames
from video_sparse.engine.run_lock import RunLock

REPO = Path(__file__).resolve().parents[2]
LENGTHS = {"a": 48, "b": 36, "c": 40}


@pytest.fixture
def clips(tmp_path, painted):
    for name, n in LENGTHS.items():
        painted.write_video(tmp_path / "videos" / f"{name}.mp4", n, height=48, width=64)
    (tmp_path / "videos.txt").write_text("".join(f"{name}.mp4 {i}\n" for i, name in enumerate(LENGTHS)))
    return tmp_path


def _check_folder(folder: Path, n: int, painted) -> None:
    """The folder holds exactly frames 1..n, each the painted frame of that index (the sequential decode)."""
    assert complete_frame_count(folder) == n
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([RECORD] + [f"img_{i:05d}.jpg" for i in range(1, n + 1)])
    for i in (1, n // 2, n):
        with Image.open(folder / f"img_{i:05d}.jpg") as img:
            assert painted.read_index(np.asarray(img.convert("RGB"))) == i - 1


def _extract(args):
    video, out, start = args
    while time.time() < start:  # both processes begin together
        time.sleep(0.001)
    return extract_frames(video, out, short_side=None, backend="pyav")


def test_two_extractions_of_one_folder_at_once(clips, painted):
    """No shared temporary name: two processes extracting the same folder both end with the whole video."""
    video, out = clips / "videos" / "a.mp4", clips / "frames" / "a"
    start = time.time() + 0.5
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        counts = pool.map(_extract, [(str(video), str(out), start)] * 2)
    assert counts == [LENGTHS["a"]] * 2
    _check_folder(out, LENGTHS["a"], painted)
    assert sorted(p.name for p in out.parent.iterdir()) == ["a"]  # no temporary folder left


@pytest.mark.parametrize("damage", ["frame_removed", "frame_emptied", "no_record", "record_larger", "extra_frame"])
def test_a_folder_not_proven_complete_is_extracted_again(clips, painted, damage):
    """Every way a folder can differ from its record (cut short by another run, an older version's folder
    without a record, a frame emptied) is found on the rerun and the folder extracted again."""
    kw = dict(out_list=clips / "frames.txt", list_file=clips / "videos.txt", short_side=None, workers=0)
    prepare_frames(clips / "videos", clips / "frames", progress=False, **kw)
    folder = clips / "frames" / "b"
    last = folder / f"img_{LENGTHS['b']:05d}.jpg"
    if damage == "frame_removed":
        (folder / "img_00017.jpg").unlink()
    elif damage == "frame_emptied":
        last.write_bytes(b"")
    elif damage == "no_record":
        (folder / RECORD).unlink()
        for i in range(20, LENGTHS["b"] + 1):  # a truncated folder of an earlier version
            (folder / f"img_{i:05d}.jpg").unlink()
    elif damage == "record_larger":
        (folder / RECORD).write_text(json.dumps({"frames": 99, "filename_tmpl": "img_{:05d}.jpg", "start_index": 1}))
    else:
        (folder / f"img_{LENGTHS['b'] + 1:05d}.jpg").write_bytes(last.read_bytes())
    assert complete_frame_count(folder) is None
    report = prepare_frames(clips / "videos", clips / "frames", progress=False, **kw)
    assert (report.num_extracted, report.num_skipped, report.failures) == (1, 2, [])
    for name, n in LENGTHS.items():
        _check_folder(clips / "frames" / name, n, painted)
    records, _ = parse_list_file(clips / "frames.txt")
    assert [(r.path, r.num_frames) for r in records] == list(LENGTHS.items())


def _tool_main():
    spec = importlib.util.spec_from_file_location("tool_prepare_frames", REPO / "tools" / "prepare_frames.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_second_run_into_one_out_is_refused_and_stale_partials_removed(clips, painted, capsys):
    """While one run holds --out a second stops with one line naming it (exit 2) and writes nothing; a
    killed run's temporary folder is removed by the next run; the result equals the sequential decode."""
    out = clips / "frames"
    stale = out / ".a.otherhost-1-deadbeef.partial"
    stale.mkdir(parents=True)
    (stale / "img_00001.jpg").write_bytes(b"junk")
    args = ["--videos", str(clips / "videos"), "--list", str(clips / "videos.txt"), "--out", str(out)]
    args += ["--out-list", str(clips / "frames.txt"), "--short-side", "0", "--workers", "0", "--no-progress"]
    main = _tool_main()
    with RunLock(out, name=LOCK):  # a live run holds --out
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{out} is in use by another run: pid {os.getpid()}" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == [stale.name] and not (clips / "frames.txt").exists()
    assert main(args) == 0
    assert "3 extracted, 0 already complete, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(LENGTHS)  # stale folder and lock file gone
    for name, n in LENGTHS.items():
        _check_folder(out / name, n, painted)
    assert main(args) == 0
    assert "0 extracted, 3 already complete, 0 failed" in capsys.readouterr().out
