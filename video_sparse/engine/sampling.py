"""Resumable, deterministic sampling across ranks.

Every sample of an epoch gets a seed derived from (run seed, epoch, position), and the dataset
draws its augmentations from that seed alone (:class:`SeededDataset`). Data order and
augmentations therefore do not depend on the number of loader workers, and a run resumed in the
middle of an epoch sees exactly the samples (and crops, flips, ...) the uninterrupted run would.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_MIX = 0x9E3779B1


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample of one epoch."""
    return (seed * 1_000_003 + epoch * _MIX + position * 2_654_435_761) % (2 ** 63 - 1)


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

    def __init__(self, num_samples: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True) -> None:
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
            np.random.seed(seed % (2 ** 32))
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
