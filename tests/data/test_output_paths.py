"""Output paths derived from input data stay inside their output root (hostile list lines refused)."""

import importlib.util
import os
from pathlib import Path

import pytest

from video_sparse.data.lists import UnsafePathError, parse_list_file
from video_sparse.data.prepare.annotations import build_kinetics_lists, build_ssv2_lists
from video_sparse.data.prepare.frames import extract_frames, prepare_frames
from video_sparse.data.readers import VideoReadError

REPO = Path(__file__).resolve().parents[2]


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def site(tmp_path, painted):
    """``site/work/{videos,out}``, one real clip, and a sibling folder a link can point to."""
    work = tmp_path / "site" / "work"
    painted.write_video(work / "videos" / "ok" / "a.mp4", 6)
    painted.write_video(tmp_path / "site" / "x.mp4", 6)  # what ../../x.mp4 names from videos/
    (work / "out").mkdir()
    (tmp_path / "site" / "elsewhere").mkdir()
    (work / "out" / "link").symlink_to(tmp_path / "site" / "elsewhere")
    (work / "videos" / "link").mkdir()
    painted.write_video(work / "videos" / "link" / "b.mp4", 6)
    return tmp_path / "site"


@pytest.mark.parametrize(
    "line, lineno", [("../../x.mp4 1", 2), ("{abs} 1", 2), ("link/b.mp4 0", 2), ("ok/../../x.mp4 1", 2)]
)
def test_hostile_list_lines_are_refused_before_anything_is_written(site, line, lineno, capsys):
    work = site / "work"
    line = line.format(abs=site / "x.mp4")
    (work / "videos.txt").write_text(f"ok/a.mp4 0\n{line}\n")
    before = _tree(site)
    args = [
        "--videos",
        str(work / "videos"),
        "--list",
        str(work / "videos.txt"),
        "--out",
        str(work / "out"),
        "--out-list",
        str(work / "frames.txt"),
        "--workers",
        "0",
        "--no-progress",
    ]
    assert _tool("prepare_frames")(args) == 2
    err = capsys.readouterr().err
    assert f"videos.txt:{lineno}: path" in err and "would write outside --out" in err
    assert _tree(site) == before  # no frames, no folders, no frame list anywhere
    with pytest.raises(UnsafePathError, match=rf"videos.txt:{lineno}: path"):
        prepare_frames(
            work / "videos", work / "out", work / "frames.txt", list_file=work / "videos.txt", workers=0, progress=False
        )
    assert _tree(site) == before


def test_clean_list_still_extracts_inside_out(site):
    work = site / "work"
    (work / "videos.txt").write_text("ok/a.mp4 0\nok/./a.mp4 1\n")
    report = prepare_frames(
        work / "videos",
        work / "out",
        work / "frames.txt",
        list_file=work / "videos.txt",
        short_side=None,
        workers=0,
        progress=False,
    )
    assert report.failures == [] and report.num_extracted == 1 and report.num_skipped == 1
    records, layout = parse_list_file(work / "frames.txt")
    assert layout == "frames" and [(r.path, r.num_frames, r.label) for r in records] == [("ok/a", 6, 0), ("ok/a", 6, 1)]


def test_missing_video_creates_no_folder(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(VideoReadError, match="not found"):
        extract_frames(tmp_path / "nope.mp4", out / "deep" / "er" / "nope")
    assert not out.exists()


def test_folder_mode_refuses_symlinked_output(site):
    work = site / "work"
    (work / "classes.txt").write_text("ok\nlink\n")
    with pytest.raises(UnsafePathError, match="outside the output root"):
        prepare_frames(
            work / "videos", work / "out", work / "all.txt", label_map=work / "classes.txt", workers=0, progress=False
        )
    assert not any((site / "elsewhere").iterdir())


@pytest.mark.parametrize("split", ["../evil", "/tmp/evil", "a/../../evil"])
def test_build_lists_refuses_split_names_leaving_out(tmp_path, split, capsys):
    (tmp_path / "videos").mkdir()
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end\na,AAA,1,2\n")
    out = tmp_path / "lists"
    with pytest.raises(UnsafePathError, match=f"split '{split}'"):
        build_kinetics_lists({split: tmp_path / "train.csv"}, tmp_path / "videos", out)
    (tmp_path / "labels.json").write_text('{"a": "0"}')
    (tmp_path / "s.json").write_text('[{"id": "1", "template": "a"}]')
    with pytest.raises(UnsafePathError, match=f"split '{split}'"):
        build_ssv2_lists(tmp_path / "labels.json", {split: tmp_path / "s.json"}, tmp_path / "videos", out)
    code = _tool("build_lists")(
        [
            "kinetics",
            "--csv",
            f"{split}={tmp_path / 'train.csv'}",
            "--videos",
            str(tmp_path / "videos"),
            "--out",
            str(out),
        ]
    )
    assert code == 2 and "the output root" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "evil.txt").exists() and not os.path.exists("/tmp/evil.txt")


def test_score_dumps_take_no_path_from_the_list(tmp_path):
    """Video ids (list paths) are dump content only: hostile ones create no file and read back intact."""
    import numpy as np

    from video_sparse.evaluation import ViewScores, save_view_scores
    from video_sparse.evaluation.multiview import (
        load_video_scores,
        merge_views,
        save_video_scores,
    )

    ids = ["../../evil.mp4", str(tmp_path / "abs.mp4"), "a,b\n c.mp4"]
    scores = ViewScores(np.array([0, 1, 2]), np.zeros(3, int), np.array([0, 1, 0]), np.eye(3, 2, dtype=np.float32))
    out = tmp_path / "run" / "test"
    save_view_scores(out / "view_scores.npz", scores)
    for suffix in ("csv", "npz"):
        save_video_scores(out / f"video_scores.{suffix}", merge_views(scores, 1), video_ids=ids)
        assert load_video_scores(out / f"video_scores.{suffix}")[1] == ids
    assert _tree(tmp_path) == {
        "run",
        "run/test",
        "run/test/view_scores.npz",
        "run/test/video_scores.csv",
        "run/test/video_scores.npz",
    }
