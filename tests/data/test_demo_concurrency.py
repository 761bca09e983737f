"""The demo set with two generating processes, and a regeneration cut short: never a mixed set vouched for."""

import multiprocessing
import time

import pytest

from video_sparse.data import demo
from video_sparse.data.lists import parse_list_file
from video_sparse.data.readers import PyAVReader

SMALL = dict(num_train=6, num_val=2, num_test=2, size=16)


def _frame_counts(root) -> dict[str, int]:
    counts = {}
    for split in ("train", "val", "test"):
        records, _ = parse_list_file(root / f"{split}.txt")
        for r in records:
            with PyAVReader(root / r.path) as reader:
                counts[r.path] = sum(1 for _ in reader.iter_frames())
    return counts


def _generate(args):
    root, start = args
    while time.time() < start:
        time.sleep(0.001)
    return demo.make_demo_dataset(root, num_frames=5, **SMALL)


def test_two_processes_generate_one_set(tmp_path):
    start = time.time() + 0.5
    with multiprocessing.get_context("fork").Pool(2) as pool:
        outs = pool.map(_generate, [(str(tmp_path), start)] * 2)
    assert outs[0] == outs[1]
    counts = _frame_counts(tmp_path)
    assert len(counts) == 10 and set(counts.values()) == {5}
    assert not [p for p in tmp_path.rglob(".*") if p.name != "demo.json"]  # no temporary file left


def test_regeneration_cut_short_is_not_vouched_for(tmp_path, monkeypatch):
    demo.make_demo_dataset(tmp_path, num_frames=4, **SMALL)
    real_write, calls = demo.write_video, []

    def dies_after_three(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt("killed")
        real_write(*args, **kwargs)

    monkeypatch.setattr(demo, "write_video", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        demo.make_demo_dataset(tmp_path, num_frames=6, **SMALL)  # other settings over the old set
    monkeypatch.setattr(demo, "write_video", real_write)
    assert not (tmp_path / "demo.json").exists()  # the old record no longer vouches for the mixed files
    demo.make_demo_dataset(tmp_path, num_frames=4, **SMALL)
    assert set(_frame_counts(tmp_path).values()) == {4}
