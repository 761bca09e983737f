import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from video_sparse.engine.sample_order import (
    Layout,
    ResumableSampler,
    ResumeLayoutError,
    SeededDataset,
    check_layout,
    resume_micro_step,
)


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


def _steps(num_samples: int, layout: Layout, epoch: int, micro_step: int = 0) -> list[list[tuple[int, int]]]:
    """The (index, seed) pairs of each optimizer step of an epoch, all ranks together, from ``micro_step``
    of each rank on, cut into micro-batches and accumulation groups as the training loop does."""
    per_rank = []
    for rank in range(layout.world_size):
        sampler = ResumableSampler(num_samples, layout.world_size, rank, seed=11)
        sampler.set_epoch(epoch, start=micro_step * layout.micro_batch)
        items = list(sampler)
        batches = [items[i : i + layout.micro_batch] for i in range(0, len(items), layout.micro_batch)]
        batches = [b for b in batches if len(b) == layout.micro_batch]  # drop_last
        per_rank.append(batches)
    steps = []
    for start in range(0, len(per_rank[0]) - layout.accumulate_steps + 1, layout.accumulate_steps):
        steps.append(
            sorted(item for batches in per_rank for b in batches[start : start + layout.accumulate_steps] for item in b)
        )
    return steps


@pytest.mark.parametrize("layout", [Layout(2, 4, 1, 0), Layout(1, 4, 2, 0), Layout(4, 1, 2, 0), Layout(8, 1, 1, 2)])
def test_every_split_of_the_global_batch_takes_the_same_samples(layout):
    reference = _steps(70, Layout(1, 8, 1, 0), epoch=3)  # one process, the whole global batch at once
    assert len(reference) == 8
    assert _steps(70, layout, epoch=3) == reference


def test_mid_epoch_resume_on_another_number_of_processes_continues_the_order():
    two, one = Layout(2, 4, 1, 0), Layout(1, 4, 2, 0)
    reference = _steps(70, two, epoch=1)
    saved = {**two._asdict(), "epoch_samples": 3 * 2 * 4, "step_in_epoch": 3}  # after 3 optimizer steps
    check_layout(saved, one, "ckpt")
    micro = resume_micro_step(saved, one)
    assert micro == 6  # 24 samples = 6 micro-batches of 4 on one process (2 accumulation steps each)
    continued = _steps(70, one, epoch=1, micro_step=micro)
    assert continued[:2] == reference[3:5]
    saved = {**one._asdict(), "epoch_samples": (micro + 4) * 4, "step_in_epoch": micro + 4}  # 2 steps later
    back = resume_micro_step(saved, two)
    assert _steps(70, two, epoch=1, micro_step=back) == reference[5:]
    # what a resume that counts per-rank micro-steps (the old rule) would take instead
    assert _steps(70, one, epoch=1, micro_step=3)[:2] != reference[3:5]


def test_layouts_that_cannot_continue_exactly_are_refused():
    saved = {**Layout(2, 4, 1, 2)._asdict(), "epoch_samples": 16}
    check_layout(saved, Layout(2, 4, 1, 2), "ckpt")  # the same layout
    with pytest.raises(
        ResumeLayoutError,
        match=r"ckpt was saved with 8 samples.*accumulation = 8 "
        r"\(e.g. optim.accumulate_steps=2\)",
    ):
        check_layout(saved, Layout(1, 4, 1, 2), "ckpt")
    with pytest.raises(ResumeLayoutError, match=r"e.g. data.batch_size=8"):
        check_layout(saved, Layout(1, 3, 1, 2), "ckpt")
    with pytest.raises(ResumeLayoutError, match=r"partitions the optimizer state.*Resume with 2 processes"):
        check_layout(saved, Layout(1, 4, 2, 2), "ckpt")
    with pytest.raises(ResumeLayoutError, match=r"ZeRO stage 2; this run uses stage 3"):
        check_layout(saved, Layout(2, 4, 1, 3), "ckpt")
    check_layout({**saved, "zero_stage": 0}, Layout(1, 2, 4, 0), "ckpt")  # ZeRO-0: any number of processes
    with pytest.raises(ResumeLayoutError, match="not a whole number of optimizer steps"):
        resume_micro_step({"epoch_samples": 12}, Layout(1, 4, 2, 0))


def test_checkpoints_without_a_layout_resume_as_before(caplog):
    check_layout({"step_in_epoch": 5}, Layout(2, 4, 1, 0), "old")
    assert "records no process layout" in caplog.text
    assert resume_micro_step({"step_in_epoch": 5}, Layout(2, 4, 1, 0)) == 5
