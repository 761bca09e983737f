"""Video classification dataset over a root folder and a list file.

Items are dicts (see :class:`VideoClassificationDataset`); batch them with
:func:`video_sparse.data.collate.collate_samples`.

Robustness: whatever one sample raises while opening, decoding, sampling or transforming becomes
a :class:`VideoReadError` whose message starts with ``list_file:line: path:``. In ``train`` mode
the video is logged, replaced by another random video and counted in the item's ``"skipped"``
field; after ``max_retries`` consecutive failures a :class:`RuntimeError` stops the run. In
``val``/``test`` mode nothing is substituted: the item comes back as ``{"failed": True, ...}``
so evaluation can exclude, count and report it.

With ``backend`` resolving to decord, build DataLoaders with ``multiprocessing_context="spawn"``
(decord may hang in forked workers); :func:`default_multiprocessing_context` returns the value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from video_sparse.data.clip_sampling import MODES, SAMPLINGS, sample_indices
from video_sparse.data.lists import LabelMapLike, load_label_map, parse_list_file
from video_sparse.data.readers import (
    DEFAULT_FRAME_TMPL,
    FrameFolderReader,
    VideoReadError,
    open_video,
    resolve_backend,
)
from video_sparse.data.video_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoEvalTransform,
    VideoTrainTransform,
)

logger = logging.getLogger(__name__)

DEFAULT_NUM_CLIPS = {"dense": 5, "segment": 2}


class VideoClassificationDataset(Dataset):
    """Clips of videos (files or frame folders) listed in a list file.

    Args:
        root: folder the list's relative paths start from.
        list_file: list file (``path LABEL`` or ``folder NUM_FRAMES LABEL``; see ``lists.py``).
        mode: ``"train"`` (random clip and augmentation), ``"val"`` (one centred clip and crop)
            or ``"test"`` (``num_clips x num_crops`` views per video, one item per view).
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
        input_size: output side ``H = W``.
        short_side_size: evaluation resize of the short side before cropping.
        num_clips: test-time temporal clips (default 5 for dense, 2 for segment).
        num_crops: test-time spatial crops.
        mean, std: normalisation statistics of the checkpoint.
        hflip: random horizontal flip in training; default on for dense, off for segment
            sampling (SSv2 labels such as "left to right" change meaning when flipped).
        randaugment: RandAugment in training (``randaugment_ops`` ops of ``randaugment_magnitude``).
        min_scale, max_scale: random-resized-crop area range (fraction of the frame).
        min_ratio, max_ratio: random-resized-crop aspect ratio range.
        min_frames: videos with fewer frames count as too short (treated as unreadable);
            shorter clips than the sampling span are otherwise padded with repeated frames.
        max_retries: consecutive unreadable videos tolerated in training before giving up.
        filename_tmpl, start_index: frame file names in frame folders (``img_00001.jpg``...);
            a ``frames_start`` list gives each folder's own start index.
        num_threads: decoder threads per reader.

    Item (a dict): ``"input"`` float32 ``(C, T, H, W)``; ``"label"``, ``"sample_index"`` (row of
    the video in the list), ``"view_index"`` (``clip_index * num_crops + crop_index``; 0 in
    train/val), ``"clip_index"``, ``"crop_index"``, ``"skipped"`` (videos replaced to produce
    this item; 0 outside training): ints. A failed evaluation item is
    ``{"failed": True, "sample_index", "view_index", "path", "error"}``.
    In test mode item ``i`` is video ``i // num_views``, view ``i % num_views``.
    """

    def __init__(self, root: str | os.PathLike, list_file: str | os.PathLike, mode: str = "train", *,
                 layout: str = "auto", backend: str = "auto", label_map: LabelMapLike = None,
                 sampling: str = "dense", num_frames: int = 16, frame_interval: int = 4,
                 input_size: int = 224, short_side_size: int = 256, num_clips: int | None = None,
                 num_crops: int = 3, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, hflip: bool | None = None, randaugment: bool = False,
                 randaugment_ops: int = 2, randaugment_magnitude: int = 9, min_scale: float = 0.08,
                 max_scale: float = 1.0, min_ratio: float = 3 / 4, max_ratio: float = 4 / 3,
                 min_frames: int = 1, max_retries: int = 10, filename_tmpl: str = DEFAULT_FRAME_TMPL,
                 start_index: int = 1, num_threads: int = 1, num_classes: int | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if num_frames <= 0 or frame_interval <= 0 or min_frames <= 0 or max_retries <= 0:
            raise ValueError("num_frames, frame_interval, min_frames and max_retries must be positive")
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
        self.num_clips = int(num_clips if num_clips is not None else DEFAULT_NUM_CLIPS[sampling])
        self.num_crops = int(num_crops)
        if self.num_clips <= 0 or self.num_crops <= 0:
            raise ValueError(f"num_clips and num_crops must be positive, got {self.num_clips}, "
                             f"{self.num_crops}")
        self.min_frames = int(min_frames)
        self.max_retries = int(max_retries)
        self.filename_tmpl = filename_tmpl
        self.start_index = int(start_index)
        self.num_threads = int(num_threads)
        self.hflip = (sampling == "dense") if hflip is None else bool(hflip)
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if mode == "train":
            self.transform: Any = VideoTrainTransform(
                input_size, min_scale, max_scale, min_ratio, max_ratio, self.hflip, randaugment,
                randaugment_ops, randaugment_magnitude, mean, std)
        else:
            self.transform = VideoEvalTransform(input_size, short_side_size,
                                                self.num_crops if mode == "test" else 1, mean, std)
        self.num_views = self.num_clips * self.num_crops if mode == "test" else 1
        self.video_paths = [r.path for r in self.records]
        self.labels = [r.label for r in self.records]
        self.num_videos = len(self.records)
        self.num_classes = int(num_classes) if num_classes is not None else (
            len(self.classes) if self.classes is not None else max(self.labels) + 1)
        logger.info("%s: %d videos (%s layout, %s), mode=%s, %d view(s) per video", self.list_file,
                    self.num_videos, self.layout, self.backend, mode, self.num_views)

    def __len__(self) -> int:
        return self.num_videos * self.num_views

    def open(self, video_index: int):
        """Open the reader of video ``video_index`` (raises :class:`VideoReadError`)."""
        rec = self.records[video_index]
        path = self.root / rec.path
        if self.layout != "video":
            start = self.start_index if rec.start_index is None else rec.start_index
            return FrameFolderReader(path, rec.num_frames, self.filename_tmpl, start)
        return open_video(path, self.backend, num_threads=self.num_threads)

    def frame_indices(self, num_total: int, clip_index: int = 0) -> Any:
        """Frame indices of clip ``clip_index`` for a video of ``num_total`` frames (mode-dependent)."""
        return sample_indices(self.sampling, num_total, self.num_frames, self.frame_interval, self.mode,
                              clip_index, self.num_clips if self.mode == "test" else 1)

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
                raise VideoReadError(f"{reader.path}: too short ({total} frames < "
                                     f"min_frames={self.min_frames})")
            frames = reader.get_frames(self.frame_indices(total, clip_index))
        if self.mode == "train":
            return self.transform(frames)
        return self.transform(frames, crop_index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self.mode == "train":
            return self._train_item(index)
        video_index, view_index = divmod(index, self.num_views)
        clip_index, crop_index = divmod(view_index, self.num_crops) if self.mode == "test" else (0, 0)
        try:
            clip = self.load_clip(video_index, clip_index, crop_index)
        except VideoReadError as e:
            logger.warning("unreadable video excluded from %s evaluation: %s", self.mode, e)
            return {"failed": True, "sample_index": video_index, "view_index": view_index,
                    "path": self.video_paths[video_index], "error": str(e)}
        return self._item(clip, video_index, view_index, clip_index, crop_index, 0)

    def _train_item(self, index: int) -> dict[str, Any]:
        video_index, errors = index, []
        while True:
            try:
                clip = self.load_clip(video_index)
                return self._item(clip, video_index, 0, 0, 0, len(errors))
            except VideoReadError as e:
                errors.append(str(e))
                logger.warning("skipping unreadable training video (%d in a row): %s", len(errors), e)
                if len(errors) >= self.max_retries:
                    raise RuntimeError(
                        f"{self.max_retries} consecutive unreadable videos in {self.list_file} "
                        f"(root {self.root}); last errors: " + " | ".join(errors[-3:])) from None
                video_index = int(torch.randint(self.num_videos, (1,)))

    def _item(self, clip: torch.Tensor, video_index: int, view_index: int, clip_index: int,
              crop_index: int, skipped: int) -> dict[str, Any]:
        return {"input": clip, "label": self.labels[video_index], "sample_index": video_index,
                "view_index": view_index, "clip_index": clip_index, "crop_index": crop_index,
                "skipped": skipped}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(list_file={self.list_file!r}, mode={self.mode!r}, "
                f"layout={self.layout!r}, backend={self.backend!r}, videos={self.num_videos}, "
                f"views={self.num_views}, sampling={self.sampling!r})")
