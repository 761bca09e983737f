"""Test-time views of user inputs, as items of the project's evaluation datasets.

Item ``i`` is input ``i // num_views``, view ``i % num_views`` (``clip_index * num_crops +
crop_index``), with the keys of :class:`video_sparse.data.VideoClassificationDataset` items
(``"input"``, ``"sample_index"``, ``"view_index"`` ...; ``"label"`` is always 0), so batches go through
:func:`video_sparse.data.collate_samples` and merge with :func:`video_sparse.evaluation.merge_views`.
An input that cannot be read comes back as ``{"failed": True, "sample_index", "view_index", "path",
"error"}``; nothing is substituted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from video_sparse.data import VideoReadError, open_video
from video_sparse.data.clip_sampling import sample_indices
from video_sparse.data.image_transforms import eval_transform
from video_sparse.data.images import load_image
from video_sparse.data.readers import DEFAULT_FRAME_TMPL
from video_sparse.data.video_transforms import VideoEvalTransform
from video_sparse.inference.inputs import InputItem

logger = logging.getLogger(__name__)

_NOT_READABLE = {"missing": "no such file or folder", "unknown": "not a video, image or frame folder"}


class PredictionDataset(Dataset):
    """Every test view of every input.

    Args:
        items: inputs from :func:`video_sparse.inference.discover_inputs`.
        num_frames: frames per clip ``T``; None for an image model.
        sampling: ``"dense"`` or ``"segment"`` (see ``video_sparse.data.clip_sampling``).
        frame_interval: gap between sampled frames (dense sampling).
        num_clips, num_crops: test views per input (1 x 1: one centred view).
        input_size: model input side ``S``.
        short_side_size: resize of the short side before cropping (videos).
        mean, std: normalisation statistics.
        backend: video decoder (``"auto"``, ``"decord"``, ``"pyav"``).
        filename_tmpl: frame file names in frame folders.

    Items: ``"input"`` float32 ``(C, T, S, S)`` for a video model, ``(C, S, S)`` for an image model.
    """

    def __init__(
        self,
        items: Sequence[InputItem],
        num_frames: int | None,
        sampling: str = "dense",
        frame_interval: int = 4,
        num_clips: int = 1,
        num_crops: int = 1,
        input_size: int = 224,
        short_side_size: int = 224,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        backend: str = "auto",
        filename_tmpl: str = DEFAULT_FRAME_TMPL,
    ) -> None:
        if num_clips <= 0 or num_crops <= 0:
            raise ValueError(f"num_clips and num_crops must be positive, got {num_clips}, {num_crops}")
        self.items = list(items)
        self.is_video = num_frames is not None
        self.num_frames = num_frames
        self.sampling = sampling
        self.frame_interval = int(frame_interval)
        self.num_clips = int(num_clips) if self.is_video else 1
        self.num_crops = int(num_crops) if self.is_video else 1
        self.num_views = self.num_clips * self.num_crops
        self.num_videos = len(self.items)
        self.video_paths = [item.path for item in self.items]
        self.backend = backend
        self.filename_tmpl = filename_tmpl
        self.short_side_size = max(short_side_size, input_size) if self.is_video else input_size
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if self.is_video:
            self.transform: Any = VideoEvalTransform(
                input_size, max(short_side_size, input_size), self.num_crops, mean, std
            )
        else:
            self.transform = eval_transform(input_size, mean=mean, std=std)

    def __len__(self) -> int:
        return self.num_videos * self.num_views

    def read_frames(self, index: int, clip_index: int = 0) -> np.ndarray:
        """Decoded frames of clip ``clip_index`` of input ``index``: uint8 ``(T, H, W, 3)``.

        An image given to a video model is reduced to the clip's short side (``short_side_size``)
        first, then repeated over the ``T`` frames: memory follows the clip, not the photo.

        Raises:
            VideoReadError: the input cannot be read (the message names the path and the reason).
        """
        item = self.items[index]
        if item.kind in _NOT_READABLE:
            raise VideoReadError(f"{item.path}: {_NOT_READABLE[item.kind]}")
        if item.kind == "image":
            image = self._image(item.path)
            w, h = image.size
            scale = self.short_side_size / min(w, h)
            if scale != 1:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
            return np.repeat(np.asarray(image)[None], self.num_frames or 1, axis=0)
        with open_video(
            item.path, self.backend, filename_tmpl=self.filename_tmpl, short_side=self.short_side_size
        ) as reader:
            total = reader.num_frames
            indices = sample_indices(
                self.sampling, total, self.num_frames, self.frame_interval, "test", clip_index, self.num_clips
            )
            return reader.get_frames(indices)

    def _image(self, path: str) -> Image.Image:
        try:
            return load_image(path, min_side=self.short_side_size)
        except (OSError, ValueError) as err:  # PIL: unreadable or truncated file
            raise VideoReadError(f"{path}: cannot read the image ({err})") from None

    def load_view(self, index: int, view_index: int = 0) -> torch.Tensor:
        """Model input of one view of input ``index`` (see the class docstring for shapes)."""
        clip_index, crop_index = divmod(view_index, self.num_crops)
        if not self.is_video:
            item = self.items[index]
            if item.kind != "image":
                reason = _NOT_READABLE.get(item.kind, f"a {item.kind} input given to an image model")
                raise VideoReadError(f"{item.path}: {reason}")
            return self.transform(self._image(item.path))
        return self.transform(self.read_frames(index, clip_index), crop_index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        sample, view = divmod(index, self.num_views)
        try:
            clip = self.load_view(sample, view)
        except Exception as err:  # noqa: BLE001 - one bad input never ends a run: report it and go on
            reason = str(err) if isinstance(err, VideoReadError) else f"{type(err).__name__}: {err}"
            return {
                "failed": True,
                "sample_index": sample,
                "view_index": view,
                "path": self.video_paths[sample],
                "error": reason,
            }
        clip_index, crop_index = divmod(view, self.num_crops)
        return {
            "input": clip,
            "label": 0,
            "sample_index": sample,
            "view_index": view,
            "clip_index": clip_index,
            "crop_index": crop_index,
            "skipped": 0,
        }
