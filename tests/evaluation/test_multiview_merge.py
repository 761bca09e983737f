"""Exact multi-view merging: duplicates, missing views, failures, distributed padding, score files."""

import logging
import math

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from video_sparse.evaluation.metrics import evaluation_summary
from video_sparse.evaluation.multiview import (
    MissingViewsError,
    load_video_scores,
    merge_views,
    remerge_view_dump,
    save_video_scores,
)
from video_sparse.evaluation.records import ViewScoreCollector, ViewScores, save_view_scores


def make_records(num_videos=7, num_views=3, num_classes=5, seed=0) -> ViewScores:
    """All views of all videos, in dataset order (video-major)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_videos)
    sample = np.repeat(np.arange(num_videos), num_views)
    view = np.tile(np.arange(num_views), num_videos)
    logits = rng.normal(size=(num_videos * num_views, num_classes)).astype(np.float32) * 3
    return ViewScores(sample, view, labels[sample], logits)


def take(records: ViewScores, rows) -> ViewScores:
    rows = np.asarray(rows, dtype=np.int64)
    return ViewScores(records.sample_index[rows], records.view_index[rows], records.labels[rows], records.logits[rows])


def reference_merge(records: ViewScores, how: str) -> dict[int, list[float]]:
    """Independent per-video merge with Python loops and math.exp."""
    per_video: dict[int, dict[int, list[float]]] = {}
    for s, v, row in zip(records.sample_index.tolist(), records.view_index.tolist(), records.logits.tolist()):
        per_video.setdefault(s, {})[v] = row
    out = {}
    for s, views in per_video.items():
        rows = [views[v] for v in sorted(views)]
        if how == "logit":
            out[s] = [sum(col) / len(col) for col in zip(*rows)]
            continue
        probs = []
        for row in rows:
            m = max(row)
            e = [math.exp(x - m) for x in row]
            probs.append([x / sum(e) for x in e])
        out[s] = [sum(col) / len(col) if how == "prob" else max(col) for col in zip(*probs)]
    return out


@pytest.mark.parametrize("how", ["prob", "logit", "max"])
def test_merge_matches_reference(how):
    records = make_records()
    merged = merge_views(records, num_views=3, how=how)
    ref = reference_merge(records, how)
    assert merged.sample_index.tolist() == list(range(7))
    for i, s in enumerate(merged.sample_index.tolist()):
        np.testing.assert_allclose(merged.scores[i], ref[s], rtol=1e-5, atol=1e-6)
    assert merged.labels.tolist() == records.labels[::3].tolist()


def test_hand_computed_two_views():
    # video 0: view logits (0, 0) and (ln 3, 0) -> probs (1/2, 1/2) and (3/4, 1/4) -> mean (5/8, 3/8)
    records = ViewScores([0, 0], [1, 0], [0, 0], [[math.log(3.0), 0.0], [0.0, 0.0]])
    merged = merge_views(records, num_views=2)
    np.testing.assert_allclose(merged.scores[0], [5 / 8, 3 / 8], rtol=1e-6)
    np.testing.assert_allclose(merge_views(records, 2, how="logit").scores[0], [math.log(3) / 2, 0.0], rtol=1e-6)
    np.testing.assert_allclose(merge_views(records, 2, how="max").scores[0], [3 / 4, 1 / 2], rtol=1e-6)


def test_padded_duplicate_view_does_not_change_result():
    records = make_records()
    base = merge_views(records, num_views=3)
    dup = take(records, list(range(len(records))) + [4, 0])  # two views seen twice (sampler padding)
    merged = merge_views(dup, num_views=3)
    assert merged.num_duplicates == 2
    np.testing.assert_array_equal(merged.scores, base.scores)
    np.testing.assert_array_equal(merged.sample_index, base.sample_index)
    assert evaluation_summary(merged)["num_views"] == 21


def test_order_of_rows_does_not_matter():
    records = make_records()
    perm = np.random.default_rng(1).permutation(len(records))
    np.testing.assert_allclose(merge_views(take(records, perm), 3).scores, merge_views(records, 3).scores, atol=1e-7)


@pytest.mark.parametrize("world_size", [2, 3, 4, 5])
@pytest.mark.parametrize("shuffle", [False, True])
def test_distributed_sampler_padding_is_exact(world_size, shuffle):
    records = make_records(num_videos=7, num_views=3)  # 21 views: padded for 2, 4 and 5 ranks
    single = merge_views(records, num_views=3)
    parts = []
    for rank in range(world_size):
        sampler = DistributedSampler(range(len(records)), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=3)
        parts.append(take(records, list(sampler)))
    gathered = ViewScores.concat(parts)
    assert len(gathered) == math.ceil(21 / world_size) * world_size
    merged = merge_views(gathered, num_views=3)
    np.testing.assert_allclose(merged.scores, single.scores, atol=1e-7)
    assert merged.num_duplicates == len(gathered) - 21
    assert evaluation_summary(merged) | {"num_duplicates": 0} == evaluation_summary(single)


def test_missing_view_raises_with_ids_and_counts():
    records = make_records(num_videos=12, num_views=3)
    drop = {4, 10, 11, 12, 31}  # row r is (r // 3, r % 3): samples 1, 3, 4, 10 lose 1, 2, 1, 1 views
    kept = take(records, [r for r in range(len(records)) if r not in drop])
    with pytest.raises(MissingViewsError) as info:
        merge_views(kept, num_views=3)
    assert info.value.incomplete == {1: 2, 3: 1, 4: 2, 10: 2}
    msg = str(info.value)
    assert "4 video(s) miss views" in msg and "sample 3: 1/3" in msg and "sample 10: 2/3" in msg


def test_missing_view_error_lists_only_a_few():
    records = make_records(num_videos=30, num_views=2)
    kept = take(records, np.arange(0, len(records), 2))  # every video keeps view 0 only
    with pytest.raises(MissingViewsError, match=r"30 video\(s\).*and 22 more"):
        merge_views(kept, num_views=2)


def test_absent_video_detected_with_num_samples():
    records = make_records(num_videos=5, num_views=2)
    kept = take(records, [r for r in range(len(records)) if records.sample_index[r] != 2])
    merge_views(kept, num_views=2)  # without num_samples the absence cannot be seen
    with pytest.raises(MissingViewsError) as info:
        merge_views(kept, num_views=2, num_samples=5)
    assert info.value.incomplete == {2: 0}
    merged = merge_views(kept, num_views=2, num_samples=5, failed={2})  # a failure is not missing
    assert merged.num_failed == 1 and len(merged) == 4


def test_failed_videos_are_excluded_and_counted(caplog):
    records = make_records(num_videos=6, num_views=3)
    # video 2 failed on one view: its two decoded views must not be averaged alone
    partial = take(records, [r for r in range(len(records)) if r != 7])
    with caplog.at_level(logging.INFO, logger="video_sparse.evaluation.multiview"):
        merged = merge_views(partial, num_views=3, failed=[2, 2])
    assert 2 not in merged.sample_index.tolist() and len(merged) == 5
    assert merged.num_failed == 1
    assert evaluation_summary(merged)["num_failed"] == 1
    assert "1 video(s) failed to decode" in caplog.text
    full = merge_views(records, num_views=3)
    np.testing.assert_allclose(merged.scores, np.delete(full.scores, 2, axis=0), atol=1e-7)


def test_bad_inputs():
    records = make_records(num_videos=2, num_views=2)
    with pytest.raises(ValueError, match="outside"):
        merge_views(records, num_views=1)
    with pytest.raises(ValueError, match="how must be"):
        merge_views(records, num_views=2, how="median")
    conflict = ViewScores([0, 0, 0], [0, 1, 0], [1, 1, 2], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="different labels"):
        merge_views(conflict, num_views=2)
    mixed = ViewScores([0, 0], [0, 1], [1, 2], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"views of sample 0 carry different labels \[1, 2\]"):
        merge_views(mixed, num_views=2)
    with pytest.raises(ValueError, match="integers"):
        ViewScores([0.5], [0], [0], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="rows"):
        ViewScores([0, 1], [0], [0], np.zeros((1, 2)))


def test_duplicate_with_different_logits_warns(caplog):
    records = ViewScores([0, 0, 0], [0, 1, 0], [1, 1, 1], [[0.0, 1.0], [0.0, 0.0], [5.0, 0.0]])
    with caplog.at_level(logging.WARNING):
        merge_views(records, num_views=2)
    assert "different logits" in caplog.text


def test_collector_view_dump_and_remerge(tmp_path):
    import torch

    records = make_records(num_videos=4, num_views=2, num_classes=3)
    collector = ViewScoreCollector()
    for start in range(0, len(records), 3):
        rows = slice(start, start + 3)
        collector.add(
            torch.from_numpy(records.sample_index[rows]),
            torch.from_numpy(records.view_index[rows]),
            torch.from_numpy(records.labels[rows]),
            torch.from_numpy(records.logits[rows]).requires_grad_(),
        )
    collector.add_failed([3])
    path = save_view_scores(tmp_path / "views", collector.result(), failed=collector.failed, num_views=2)
    assert path.suffix == ".npz"
    offline = remerge_view_dump(path)
    online = merge_views(records, num_views=2, failed={3})
    np.testing.assert_array_equal(offline.scores, online.scores)
    assert offline.num_failed == 1 and offline.sample_index.tolist() == [0, 1, 2]
    assert remerge_view_dump(path, how="logit").how == "logit"


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_video_score_file_roundtrip(tmp_path, suffix):
    records = make_records(num_videos=5, num_views=2, num_classes=4)
    merged = merge_views(records, num_views=2, failed={1})
    ids = [f"class a/video {i}.mp4" for i in range(5)]  # spaces and shared basenames are fine
    path = save_video_scores(tmp_path / f"scores{suffix}", merged, video_ids=ids)
    loaded, loaded_ids = load_video_scores(path)
    assert loaded_ids == [ids[i] for i in (0, 2, 3, 4)]
    np.testing.assert_array_equal(loaded.sample_index, merged.sample_index)
    np.testing.assert_array_equal(loaded.labels, merged.labels)
    np.testing.assert_allclose(loaded.scores, merged.scores, rtol=1e-7)
    with pytest.raises(ValueError, match="video_ids has 2 entries"):
        save_video_scores(tmp_path / f"bad{suffix}", merged, video_ids=ids[:2])


def test_video_score_csv_errors_name_line(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("sample_index,video_id,label,pred,score_0\n0,a,0,0,0.5\n1,b,x,0,0.5\n")
    with pytest.raises(ValueError, match=r"s\.csv:3"):
        load_video_scores(path)
