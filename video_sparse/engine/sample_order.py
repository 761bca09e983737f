"""Resumable, deterministic sampling across ranks.

Every sample of an epoch gets a seed derived from (run seed, epoch, position), and the dataset
draws its augmentations from that seed alone (:class:`SeededDataset`). Data order and
augmentations therefore do not depend on the number of loader workers, and a run resumed in the
middle of an epoch sees exactly the samples (and crops, flips, ...) the uninterrupted run would.
Each optimizer step takes the next ``processes x batch x accumulation`` positions of the epoch's
order, so a resume with another number of processes and the same global batch continues the same
order (:func:`check_layout` refuses what cannot continue exactly, :func:`resume_micro_step` maps
the position onto the new layout).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

log = logging.getLogger(__name__)

_MIX = 0x9E3779B1


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample of one epoch."""
    return (seed * 1_000_003 + epoch * _MIX + position * 2_654_435_761) % (2**63 - 1)


class ResumableSampler(Sampler):
    """Distributed sampler yielding ``(index, seed)`` pairs; can skip what a rank already consumed.

    Args:
        num_samples: dataset length.
        num_replicas: world size.
        rank: this rank.
        shuffle: permute per epoch (seeded by ``seed`` and the epoch).
        seed: run seed.
        drop_last: drop the tail so ranks get equal whole shares (training); otherwise the
            index list is padded by repeating its start (evaluation: duplicates are merged once).
    """

    def __init__(
        self,
        num_samples: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("the dataset is empty")
        self.num_samples, self.num_replicas, self.rank = num_samples, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        self.start = 0
        if drop_last:
            self.per_rank = num_samples // num_replicas
            if self.per_rank == 0:
                raise ValueError(f"{num_samples} samples cannot be split over {num_replicas} ranks")
        else:
            self.per_rank = -(-num_samples // num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip the first ``start`` samples of this rank's share."""
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.per_rank * self.num_replicas
        if total > len(order):
            order += order[: total - len(order)]
        return order[:total]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        for position in range(self.rank + self.start * self.num_replicas, len(order), self.num_replicas):
            yield order[position], sample_seed(self.seed, self.epoch, position)

    def __len__(self) -> int:
        return self.per_rank - self.start


class SeededDataset(Dataset):
    """Wrap a dataset so that item ``(index, seed)`` draws its randomness from ``seed`` only."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int] | int):
        if isinstance(item, int):
            return self.dataset[item]
        index, seed = item
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % (2**32))
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class ResumeLayoutError(ValueError):
    """A checkpoint cannot continue exactly with this run's processes, batch or ZeRO stage."""


class Layout(NamedTuple):
    """What fixes the global sample order and the optimizer state's partitioning.

    An optimizer step consumes the next ``global_batch`` positions of the epoch's order (see
    :class:`ResumableSampler`: rank ``r`` takes positions ``r, r + world_size, ...``), whatever the
    split into processes, micro-batches and accumulation, so any layout with the same global batch
    continues the same order. Saved in a checkpoint's client state under these field names.
    """

    world_size: int
    micro_batch: int
    accumulate_steps: int
    zero_stage: int

    @property
    def global_batch(self) -> int:
        return self.world_size * self.micro_batch * self.accumulate_steps

    def describe(self) -> str:
        return (
            f"{self.global_batch} samples per optimizer step = {self.world_size} process(es) x "
            f"data.batch_size={self.micro_batch} x optim.accumulate_steps={self.accumulate_steps}, "
            f"ZeRO stage {self.zero_stage}"
        )


def check_layout(saved: Mapping[str, Any], current: Layout, source: str) -> None:
    """Refuse a checkpoint that cannot continue exactly with this run's layout; warn when it changes.

    Args:
        saved: the checkpoint's client state (or its ``meta.json``): the :class:`Layout` fields and
            ``epoch_samples``. A checkpoint without them is taken to have this run's layout.
        current: this run's layout.
        source: the checkpoint, named in messages.

    Raises:
        ResumeLayoutError: the global batch or the ZeRO stage differs, or the number of processes
            differs under ZeRO stage >= 1 (optimizer state partitioned over the saving processes).
    """
    if "world_size" not in saved:
        log.warning(
            "%s records no process layout (an older checkpoint); assuming it was saved with %s",
            source,
            current.describe(),
        )
        return
    before = Layout(*(int(saved[name]) for name in Layout._fields))
    if before == current:
        return
    if before.global_batch != current.global_batch:
        raise ResumeLayoutError(
            f"{source} was saved with {before.describe()}; this run has {current.describe()}. The sample order, "
            f"steps per epoch and learning-rate schedule depend on the global batch: choose data.batch_size and "
            f"optim.accumulate_steps so that processes x batch x accumulation = {before.global_batch}"
            f"{_suggest(before.global_batch, current)}"
        )
    if before.zero_stage != current.zero_stage:
        raise ResumeLayoutError(
            f"{source} was saved with ZeRO stage {before.zero_stage}; this run uses stage "
            f"{current.zero_stage}: resume with deepspeed=zero{before.zero_stage}"
        )
    if before.world_size != current.world_size and before.zero_stage > 0:
        raise ResumeLayoutError(
            f"{source} was saved by {before.world_size} processes under ZeRO stage {before.zero_stage}, which "
            f"partitions the optimizer state over those processes; this run has {current.world_size}. Resume "
            f"with {before.world_size} processes (checkpoints of deepspeed=zero0 resume on any number)"
        )
    log.warning(
        "%s was saved with %s; continuing with %s: the same sample order and optimizer state; "
        "Mixup/CutMix pairs and drop-path masks are drawn per process and differ from the saving run's",
        source,
        before.describe(),
        current.describe(),
    )


def resume_micro_step(saved: Mapping[str, Any], current: Layout) -> int:
    """This rank's micro-steps already done in the epoch, for a checkpoint :func:`check_layout` accepted.

    ``epoch_samples`` (global positions of the epoch consumed, a whole number of optimizer steps) is
    divided by this layout's samples per micro-step; older checkpoints give their ``step_in_epoch``.
    """
    if "epoch_samples" not in saved:
        return int(saved.get("step_in_epoch", 0))
    consumed = int(saved["epoch_samples"])
    if consumed % current.global_batch:
        raise ResumeLayoutError(
            f"{consumed} samples of the epoch consumed: not a whole number of optimizer steps of {current.describe()}"
        )
    return consumed // (current.world_size * current.micro_batch)


def _suggest(global_batch: int, current: Layout) -> str:
    per_step = current.world_size * current.micro_batch
    if global_batch % per_step == 0:
        return f" (e.g. optim.accumulate_steps={global_batch // per_step})"
    per_rank = global_batch // current.world_size
    if global_batch % current.world_size == 0 and per_rank % current.accumulate_steps == 0:
        return f" (e.g. data.batch_size={per_rank // current.accumulate_steps})"
    return ""
