"""Video classification dataset over a root folder and a list file.

Items are dicts (see :mod:`video_sparse.data.contract`); batch them with
:func:`video_sparse.data.collate.collate_samples`. The spatial transform is passed in
(:func:`~video_sparse.data.video_transforms.video_transform` builds one per split);
:func:`build_video_dataset` builds both from flat options.

Robustness: whatever one sample raises while opening, decoding, sampling or transforming becomes
a :class:`VideoReadError` whose message starts with ``list_file:line: path:`` and follows
:mod:`video_sparse.data.failures`: in ``train`` mode the video is logged, counted and replaced by
another random video (``"skipped"`` counts the replacements); after ``max_retries`` consecutive
failures a :class:`RuntimeError` stops the run. In ``val``/``test`` mode nothing is substituted:
the item comes back as ``{"failed": True, ...}`` so evaluation can exclude, count and report it.

With ``backend`` resolving to decord, build DataLoaders with ``multiprocessing_context="spawn"``
(decord may hang in forked workers); :func:`default_multiprocessing_context` returns the value.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from video_sparse.data.clip_sampling import MODES, SAMPLINGS, sample_indices
from video_sparse.data.failures import FailureCount, failed_item, load_sample
from video_sparse.data.lists import LabelMapLike, load_label_map, parse_list_file
from video_sparse.data.readers import (
    DEFAULT_FRAME_TMPL,
    FrameFolderReader,
    VideoReadError,
    open_video,
    resolve_backend,
)
from video_sparse.data.video_transforms import VideoEvalTransform, VideoTransform, video_transform

logger = logging.getLogger(__name__)

DEFAULT_NUM_CLIPS = {"dense": 5, "segment": 2}
TRANSFORM_OPTIONS = (
    "input_size",
    "short_side_size",
    "hflip",
    "randaugment",
    "randaugment_ops",
    "randaugment_magnitude",
    "min_scale",
    "max_scale",
    "min_ratio",
    "max_ratio",
    "mean",
    "std",
)
"""Options of :func:`build_video_dataset` that go to the transform rather than the dataset."""


class VideoClassificationDataset(Dataset):
    """Clips of videos (files or frame folders) listed in a list file.

    Satisfies :class:`~video_sparse.data.contract.ClassificationDataset`.

    Args:
        root: folder the list's relative paths start from.
        list_file: list file (``path LABEL`` or ``folder NUM_FRAMES LABEL``; see ``lists.py``).
        mode: ``"train"`` (random clip and augmentation), ``"val"`` (one centred clip and crop)
            or ``"test"`` (``num_clips x transform.num_crops`` views per video, one item per view).
        transform: uint8 frames ``(T, H, W, 3)`` + crop index -> float32 ``(C, T, H, W)``, with
            ``num_crops`` spatial crops (must be 1 outside ``test`` mode).
        layout: ``"video"``, ``"frames"``, ``"frames_start"`` or ``"auto"`` (from the list's line shape).
        backend: video decoder, ``"auto"`` (per file: decord when it imports and reads that file
            exactly, else PyAV; see ``readers.py``), ``"decord"``, ``"pyav"``.
        label_map: class names to resolve non-integer labels (file path, see ``load_label_map``).
        num_classes: class count of the head; every label of the list is checked against it when
            the list is parsed (error naming ``file:line`` and ``data.num_classes``).
        sampling: ``"dense"`` (K400: ``num_frames`` frames ``frame_interval`` apart) or
            ``"segment"`` (SSv2: one frame in each of ``num_frames`` segments).
        num_frames: frames per clip ``T``.
        frame_interval: gap between sampled frames (dense sampling).
        num_clips: test-time temporal clips (default 5 for dense, 2 for segment).
        min_frames: videos with fewer frames count as too short (treated as unreadable);
            shorter clips than the sampling span are otherwise padded with repeated frames.
        max_retries: consecutive unreadable videos tolerated in training before giving up.
        filename_tmpl, start_index: frame file names in frame folders (``img_00001.jpg``...);
            a ``frames_start`` list gives each folder's own start index.
        num_threads: decoder threads per reader.

    Item: the contract's keys plus ``"clip_index"`` and ``"crop_index"``; ``"view_index"`` is
    ``clip_index * num_crops + crop_index`` (0 in train/val). In test mode item ``i`` is video
    ``i // num_views``, view ``i % num_views``.

    Raises:
        FileNotFoundError: ``root`` or ``list_file`` missing.
        ValueError: a malformed list (``file:line``) or an invalid argument.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        list_file: str | os.PathLike,
        mode: str = "train",
        *,
        transform: VideoTransform,
        layout: str = "auto",
        backend: str = "auto",
        label_map: LabelMapLike = None,
        num_classes: int | None = None,
        sampling: str = "dense",
        num_frames: int = 16,
        frame_interval: int = 4,
        num_clips: int | None = None,
        min_frames: int = 1,
        max_retries: int = 10,
        filename_tmpl: str = DEFAULT_FRAME_TMPL,
        start_index: int = 1,
        num_threads: int = 1,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if num_frames <= 0 or frame_interval <= 0 or min_frames <= 0 or max_retries <= 0:
            raise ValueError("num_frames, frame_interval, min_frames and max_retries must be positive")
        if mode != "test" and transform.num_crops != 1:
            raise ValueError(
                f"a {mode!r} dataset takes one crop per clip; the transform has num_crops={transform.num_crops}"
            )
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data root not found: {self.root}")
        self.list_file = str(list_file)
        self.mode = mode
        self.classes = load_label_map(label_map)
        self.records, self.layout = parse_list_file(list_file, layout, self.classes, num_classes)
        if self.layout == "video":
            resolve_backend(backend)  # validates the name; "auto" is resolved per file
        self.backend = backend if self.layout == "video" else "frames"
        self.sampling = sampling
        self.num_frames = int(num_frames)
        self.frame_interval = int(frame_interval)
        self.transform = transform
        self.num_clips = int(num_clips if num_clips is not None else DEFAULT_NUM_CLIPS[sampling])
        self.num_crops = int(transform.num_crops)
        if self.num_clips <= 0 or self.num_crops <= 0:
            raise ValueError(f"num_clips and num_crops must be positive, got {self.num_clips}, {self.num_crops}")
        if mode != "test":
            self.num_clips = 1
        self.min_frames = int(min_frames)
        self.max_retries = int(max_retries)
        self.filename_tmpl = filename_tmpl
        self.start_index = int(start_index)
        self.num_threads = int(num_threads)
        self.sample_ids = [r.path for r in self.records]
        self.labels = [r.label for r in self.records]
        self.num_videos = len(self.records)
        self.num_classes = (
            int(num_classes)
            if num_classes is not None
            else (len(self.classes) if self.classes is not None else max(self.labels) + 1)
        )
        self.failures = FailureCount()
        logger.info(
            "%s: %d videos (%s layout, %s), mode=%s, %d view(s) per video",
            self.list_file,
            self.num_videos,
            self.layout,
            self.backend,
            mode,
            self.num_views,
        )

    @property
    def num_views(self) -> int:
        """Views per video: ``num_clips * num_crops`` in test mode, else 1."""
        return self.num_clips * self.num_crops

    @property
    def video_paths(self) -> list[str]:
        """The list's relative paths (the same as ``sample_ids``)."""
        return self.sample_ids

    def __len__(self) -> int:
        return self.num_videos * self.num_views

    def open(self, video_index: int):
        """Open the reader of video ``video_index`` (raises :class:`VideoReadError`).

        With a :class:`VideoEvalTransform` the reader reduces each frame to the transform's short
        side as it decodes it (the transform would resize it first anyway), so a high-resolution
        video costs memory in proportion to the clip."""
        rec = self.records[video_index]
        path = self.root / rec.path
        if self.layout != "video":
            start = self.start_index if rec.start_index is None else rec.start_index
            reader = FrameFolderReader(path, rec.num_frames, self.filename_tmpl, start)
        else:
            reader = open_video(path, self.backend, num_threads=self.num_threads)
        if isinstance(self.transform, VideoEvalTransform):
            reader.short_side = self.transform.short_side_size
        return reader

    def frame_indices(self, num_total: int, clip_index: int = 0) -> Any:
        """Frame indices of clip ``clip_index`` for a video of ``num_total`` frames (mode-dependent)."""
        return sample_indices(
            self.sampling, num_total, self.num_frames, self.frame_interval, self.mode, clip_index, self.num_clips
        )

    def load_clip(self, video_index: int, clip_index: int = 0, crop_index: int = 0) -> torch.Tensor:
        """Decode, sample and transform one view: float32 ``(C, T, H, W)``.

        Raises:
            VideoReadError: anything that fails for this sample (unreadable or too-short video, a
                decoder, conversion or transform error), as ``list_file:line: path: error``.
        """
        try:
            return self._load_clip(video_index, clip_index, crop_index)
        except Exception as e:  # one bad sample must never end the run: name it, let the caller decide
            rec = self.records[video_index]
            detail = str(e) if isinstance(e, VideoReadError) else f"{type(e).__name__}: {e}"
            raise VideoReadError(f"{self.list_file}:{rec.lineno}: {rec.path}: {detail}") from e

    def _load_clip(self, video_index: int, clip_index: int, crop_index: int) -> torch.Tensor:
        with self.open(video_index) as reader:
            total = reader.num_frames
            if total < self.min_frames:
                raise VideoReadError(f"{reader.path}: too short ({total} frames < min_frames={self.min_frames})")
            frames = reader.get_frames(self.frame_indices(total, clip_index))
        return self.transform(frames, crop_index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        video_index, view_index = divmod(index, self.num_views)
        clip_index, crop_index = divmod(view_index, self.num_crops)
        got = load_sample(
            lambda i: self.load_clip(i, clip_index, crop_index),
            video_index,
            train=self.mode == "train",
            errors=(VideoReadError,),
            failures=self.failures,
            sample_id=lambda i: self.sample_ids[i],
            replace=self._random_video,
            max_tries=self.max_retries,
            noun="videos",
            describe=str,
        )
        if got.error is not None:
            return failed_item(video_index, view_index, self.sample_ids[video_index], got.error)
        return self._item(got.value, got.sample_index, view_index, clip_index, crop_index, got.skipped)

    def _random_video(self, failed_index: int) -> int:
        return int(torch.randint(self.num_videos, (1,)))

    def _item(
        self, clip: torch.Tensor, video_index: int, view_index: int, clip_index: int, crop_index: int, skipped: int
    ) -> dict[str, Any]:
        return {
            "input": clip,
            "label": self.labels[video_index],
            "sample_index": video_index,
            "view_index": view_index,
            "clip_index": clip_index,
            "crop_index": crop_index,
            "skipped": skipped,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(list_file={self.list_file!r}, mode={self.mode!r}, "
            f"layout={self.layout!r}, backend={self.backend!r}, videos={self.num_videos}, "
            f"views={self.num_views}, sampling={self.sampling!r})"
        )


def build_video_dataset(
    root: str | os.PathLike, list_file: str | os.PathLike, mode: str = "train", **options: Any
) -> VideoClassificationDataset:
    """A :class:`VideoClassificationDataset` with its transform, from flat options.

    Options named in :data:`TRANSFORM_OPTIONS` (and ``num_crops``, default 3, for test mode) build
    the transform with :func:`~video_sparse.data.video_transforms.video_transform`; the others go
    to the dataset. ``hflip`` defaults to on for dense sampling and off for segment sampling
    (SSv2 labels such as "left to right" change meaning when flipped).

    Raises:
        TypeError: an option neither the transform nor the dataset takes.
    """
    transform_options = {k: options.pop(k) for k in TRANSFORM_OPTIONS if k in options}
    if transform_options.get("hflip") is None:
        transform_options["hflip"] = options.get("sampling", "dense") == "dense"
    transform = video_transform(mode, num_crops=options.pop("num_crops", 3), **transform_options)
    return VideoClassificationDataset(root, list_file, mode, transform=transform, **options)
