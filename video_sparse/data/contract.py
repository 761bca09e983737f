"""What every classification dataset of the project offers (image and video alike).

Item ``i`` of a dataset is view ``i % num_views`` of sample ``i // num_views``; training and
validation sets have one view per sample, a video test set ``num_clips x num_crops``
(view index ``clip_index * num_crops + crop_index``). An item is a dict:

- ``"input"``: float32 ``(C, H, W)`` for an image, ``(C, T, H, W)`` for a video clip;
- ``"label"``, ``"sample_index"``, ``"view_index"``: ints;
- ``"skipped"``: unreadable samples replaced to produce this item (training; 0 otherwise).

Video items also carry ``"clip_index"`` and ``"crop_index"``. An unreadable evaluation sample
comes back as ``{"failed": True, "sample_index", "view_index", "path", "error"}``
(:mod:`video_sparse.data.failures`); :func:`~video_sparse.data.collate.collate_samples` sets
such items aside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from video_sparse.data.failures import FailureCount

ITEM_KEYS = ("input", "label", "sample_index", "view_index", "skipped")


@runtime_checkable
class ClassificationDataset(Protocol):
    """A map-style dataset of ``len(sample_ids) * num_views`` items (see the module docstring).

    Attributes:
        num_classes: classes of the head; every label lies in ``0..num_classes-1``.
        num_clips: temporal views per sample (1 for images and for train/val).
        num_crops: spatial views per sample (1 likewise).
        num_views: ``num_clips * num_crops``.
        sample_ids: one identifier per sample (video path relative to the root, or image id).
        labels: one label per sample.
        failures: unreadable samples met in this process (substituted or excluded).
    """

    num_classes: int
    num_clips: int
    num_crops: int
    sample_ids: Sequence[str]
    labels: Sequence[int]
    failures: FailureCount

    @property
    def num_views(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...
