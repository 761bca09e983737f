import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from video_sparse.engine.sampling import ResumableSampler, SeededDataset


def test_ranks_partition_the_epoch_and_change_between_epochs():
    shares = []
    for rank in range(3):
        sampler = ResumableSampler(31, num_replicas=3, rank=rank, seed=5)
        sampler.set_epoch(2)
        shares.append([i for i, _ in sampler])
    flat = [i for share in shares for i in share]
    assert len(flat) == len(set(flat)) == 30 and all(len(s) == 10 for s in shares)
    other = ResumableSampler(31, num_replicas=3, rank=0, seed=5)
    other.set_epoch(3)
    assert [i for i, _ in other] != shares[0]


def test_resume_skips_exactly_what_was_consumed():
    full = ResumableSampler(40, num_replicas=2, rank=1, seed=1)
    full.set_epoch(4)
    items = list(full)
    resumed = ResumableSampler(40, num_replicas=2, rank=1, seed=1)
    resumed.set_epoch(4, start=7)
    assert list(resumed) == items[7:] and len(resumed) == len(items) - 7


def test_evaluation_padding_repeats_the_start():
    seen = []
    for rank in range(4):
        sampler = ResumableSampler(10, num_replicas=4, rank=rank, shuffle=False, drop_last=False)
        seen += [i for i, _ in sampler]
    assert sorted(seen) == sorted(list(range(10)) + [0, 1])


class _Random(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, index):
        return (index, torch.rand(1).item(), random.random(), float(np.random.rand()))


def test_seeded_items_ignore_and_keep_the_global_rng():
    ds = SeededDataset(_Random())
    torch.manual_seed(0)
    first = ds[(3, 1234)]
    after_first = torch.rand(1)
    torch.manual_seed(0)
    torch.rand(5)  # a different global state must not change the item
    assert ds[(3, 1234)] == first
    torch.manual_seed(0)
    ds[(3, 99)]
    assert torch.equal(torch.rand(1), after_first)  # the global stream is untouched
    assert ds[(3, 1235)] != first


def test_too_few_samples_for_the_ranks():
    with pytest.raises(ValueError, match="cannot be split"):
        ResumableSampler(3, num_replicas=4)
