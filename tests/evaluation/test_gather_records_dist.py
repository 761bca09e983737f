"""Gathering view records over 2 gloo processes: padded duplicates merge to the single-process result."""

import json

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from video_sparse.evaluation.gather import gather_failed, gather_view_records
from video_sparse.evaluation.metrics import evaluation_summary
from video_sparse.evaluation.multiview import merge_views
from video_sparse.evaluation.records import ViewScores

NUM_VIDEOS, NUM_VIEWS, NUM_CLASSES, WORLD = 9, 3, 6, 2  # 27 views: rank 1 gets one padded duplicate
FAILED = {4}


def all_records() -> ViewScores:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, NUM_CLASSES, NUM_VIDEOS)
    sample = np.repeat(np.arange(NUM_VIDEOS), NUM_VIEWS)
    view = np.tile(np.arange(NUM_VIEWS), NUM_VIDEOS)
    logits = rng.normal(size=(len(sample), NUM_CLASSES)).astype(np.float32)
    return ViewScores(sample, view, labels[sample], logits)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        records = all_records()
        rows = np.array(list(DistributedSampler(range(len(records)), num_replicas=WORLD, rank=rank, shuffle=True)))
        mine = ViewScores(
            records.sample_index[rows], records.view_index[rows], records.labels[rows], records.logits[rows]
        )
        # a view of video 4 fails to decode on whichever rank holds row 13 (video 4, view 1)
        my_failed = FAILED if 13 in rows else set()
        everywhere = gather_view_records(mine)
        at_zero = gather_view_records(mine, dst=0)
        failed = gather_failed(my_failed)
        merged = merge_views(everywhere, NUM_VIEWS, failed=failed, num_samples=NUM_VIDEOS)
        result = {
            "rank": rank,
            "rows": len(everywhere),
            "at_zero": None if at_zero is None else len(at_zero),
            "failed": sorted(failed),
            "summary": evaluation_summary(merged),
            "scores": merged.scores.tolist(),
        }
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.integration
def test_two_rank_gather_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    single = merge_views(all_records(), NUM_VIEWS, failed=FAILED, num_samples=NUM_VIDEOS)
    expected = evaluation_summary(single)
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["rows"] == 28  # 27 views padded to a multiple of 2
        assert got["at_zero"] == (28 if rank == 0 else None)
        assert got["failed"] == sorted(FAILED)
        assert got["summary"]["num_duplicates"] == 1
        assert {k: v for k, v in got["summary"].items() if k != "num_duplicates"} == {
            k: v for k, v in expected.items() if k != "num_duplicates"
        }
        np.testing.assert_allclose(got["scores"], single.scores, rtol=1e-6)


def test_without_process_group_returns_input():
    records = all_records()
    assert gather_view_records(records) is not None
    np.testing.assert_array_equal(gather_view_records(records).logits, records.logits)
    assert gather_failed([3, 3, 1]) == {1, 3}
