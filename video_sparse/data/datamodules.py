"""Data modules: the ``data`` config group as objects, one class per kind of data.

A module's keyword-only constructor takes the ``data`` keys (``data.start_index=0`` is
``VideoData(start_index=0)``), stores and checks them without touching the disk, and raises
:class:`~video_sparse.errors.ConfigError` naming ``data.<key>`` for a bad value. The run then
calls :meth:`prepare` (generated data, on the main process; the caller puts a barrier after it),
:meth:`check_lists` (every list parsed up front) and :meth:`dataset` per split, each returning a
:class:`~video_sparse.data.contract.ClassificationDataset`.

Common attributes: ``num_classes``, ``batch_size`` (per process), ``num_workers``, ``input_size``,
``mean``, ``std``, ``num_frames`` (1 for images) and ``is_video``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from video_sparse.data.clip_sampling import SAMPLINGS
from video_sparse.data.contract import ClassificationDataset
from video_sparse.data.image_datasets import CIFAR100Dataset, Food101Dataset, SVHNDataset
from video_sparse.data.image_transforms import IN21K_MEAN, IN21K_STD, eval_transform, train_transform, vtab_transform
from video_sparse.data.lists import LAYOUTS, load_label_map, parse_list_file
from video_sparse.data.readers import BACKENDS, DEFAULT_FRAME_TMPL, default_multiprocessing_context
from video_sparse.data.video_dataset import VideoClassificationDataset
from video_sparse.data.video_transforms import IMAGENET_MEAN, IMAGENET_STD, video_transform
from video_sparse.data.vtab import VTAB_SPLITS, VTAB_TASKS, VTABDataset
from video_sparse.errors import ConfigError

SPLITS = ("train", "val", "test")

__all__ = ["CIFAR100Data", "DataModule", "DemoData", "Food101Data", "SVHNData", "VTABData", "VideoData"]


def _positive(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"data.{key}={value!r}: expected a positive integer")
    return value


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"data.{key}={value!r}: expected true or false")
    return value


def _stats(key: str, value: Sequence[float]) -> tuple[float, float, float]:
    try:
        stats = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"data.{key}={value!r}: expected three numbers") from None
    if len(stats) != 3 or (key == "std" and min(stats) <= 0):
        raise ConfigError(f"data.{key}={list(value)!r}: expected three numbers" + (", all > 0" if key == "std" else ""))
    return stats  # type: ignore[return-value]


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


class DataModule(ABC):
    """Base of the data modules: the common attributes and their checks.

    Args:
        root: folder the data lives in (not opened here).
        num_classes: classes of the head.
        input_size: side of the model input in pixels.
        mean, std: per-channel normalisation (0-1 scale).
        batch_size: samples per process and step.
        num_workers: DataLoader worker processes.
    """

    is_video: bool = False
    num_frames: int = 1

    def __init__(
        self,
        *,
        root: str | os.PathLike,
        num_classes: int | None,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int,
        num_workers: int,
    ) -> None:
        if root is None or str(root) in ("", "???"):
            raise ConfigError("data.root must be set")
        self.root = Path(root)
        self.num_classes = None if num_classes is None else _positive("num_classes", num_classes)
        self.input_size = _positive("input_size", input_size)
        self.mean = _stats("mean", mean)
        self.std = _stats("std", std)
        self.batch_size = _positive("batch_size", batch_size)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"data.num_workers={num_workers!r}: expected an integer >= 0")
        self.num_workers = num_workers

    def prepare(self, is_main: bool) -> None:  # noqa: B027  (a default: most data need nothing written)
        """Write generated data when ``is_main`` (nothing to write here); the caller puts a barrier after it."""

    def check_lists(self, splits: Sequence[str] = SPLITS, require: bool = False) -> dict[str, int]:
        """Parse every list file up front; modules without list files return ``{}``."""
        return {}

    @abstractmethod
    def dataset(self, split: str) -> ClassificationDataset:
        """The dataset of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""

    def multiprocessing_context(self) -> str | None:
        """The DataLoader ``multiprocessing_context`` this data needs (None: the platform default)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, num_classes={self.num_classes})"


class VideoData(DataModule):
    """Videos (files or frame folders) listed in list files (Kinetics-400, SSv2, your own).

    Args:
        root: folder the lists' relative paths start from.
        num_classes: classes of the head; None: the number of names in ``label_map``.
        train_list, val_list, test_list: list files (see ``data_lists/README.md``); needed for
            the splits that are read.
        label_map: class names for lists whose labels are names (one per line or JSON).
        layout: ``auto`` or one of ``video``, ``frames``, ``frames_start``.
        backend: video decoder, ``auto``, ``pyav``, ``torchcodec`` or ``decord``.
        filename_tmpl, start_index: frame file names in frame folders (``str.format`` of the frame
            number) and the number of the first frame file.
        num_frames: frames per clip.
        sampling: ``dense`` (K400: frames ``frame_interval`` apart) or ``segment`` (SSv2).
        frame_interval: gap between sampled frames (dense sampling).
        input_size: crop side in pixels.
        short_side_size: evaluation resize of the short side; None: ``input_size``.
        test_num_clips: temporal views per test video; None: 5 for dense, 2 for segment sampling.
        test_num_crops: spatial views per test video.
        hflip, randaugment, min_scale, max_scale: training augmentation (``hflip=None``: on for
            dense, off for segment sampling, whose SSv2 labels change meaning when flipped).
        mean, std, batch_size, num_workers: see :class:`DataModule`.

    A value of None for ``num_frames``, ``input_size``, ``mean`` or ``std`` takes the default.
    """

    is_video = True

    def __init__(
        self,
        *,
        root: str | os.PathLike,
        num_classes: int | None,
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        label_map: str | None = None,
        layout: str = "auto",
        backend: str = "auto",
        filename_tmpl: str = DEFAULT_FRAME_TMPL,
        start_index: int = 1,
        num_frames: int | None = 16,
        sampling: str = "dense",
        frame_interval: int = 4,
        input_size: int | None = 224,
        short_side_size: int | None = 256,
        test_num_clips: int | None = None,
        test_num_crops: int = 3,
        hflip: bool | None = True,
        randaugment: bool = False,
        min_scale: float = 0.08,
        max_scale: float = 1.0,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        batch_size: int = 8,
        num_workers: int = 8,
    ) -> None:
        input_size = 224 if input_size is None else input_size
        super().__init__(
            root=root,
            num_classes=num_classes,
            input_size=input_size,
            mean=IMAGENET_MEAN if mean is None else mean,
            std=IMAGENET_STD if std is None else std,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        self.lists = {"train": train_list, "val": val_list, "test": test_list}
        self.label_map = label_map
        if layout not in ("auto", *LAYOUTS):
            raise ConfigError(f"data.layout={layout!r}: expected auto or one of {', '.join(LAYOUTS)}")
        if backend not in BACKENDS:
            raise ConfigError(f"data.backend={backend!r}: expected one of {', '.join(BACKENDS)}")
        self.layout, self.backend = layout, backend
        try:
            filename_tmpl.format(0)
        except (AttributeError, IndexError, KeyError, ValueError):
            raise ConfigError(
                f"data.filename_tmpl={filename_tmpl!r}: expected a str.format pattern of the frame "
                "number, e.g. img_{:05d}.jpg"
            ) from None
        self.filename_tmpl = filename_tmpl
        if isinstance(start_index, bool) or not isinstance(start_index, int) or start_index < 0:
            raise ConfigError(f"data.start_index={start_index!r}: expected an integer >= 0")
        self.start_index = start_index
        self.num_frames = _positive("num_frames", 16 if num_frames is None else num_frames)
        if sampling not in SAMPLINGS:
            raise ConfigError(f"data.sampling={sampling!r}: expected one of {', '.join(SAMPLINGS)}")
        self.sampling = sampling
        self.frame_interval = _positive("frame_interval", frame_interval)
        self.short_side_size = (
            self.input_size if short_side_size is None else _positive("short_side_size", short_side_size)
        )
        if self.short_side_size < self.input_size:
            raise ConfigError(f"data.short_side_size={self.short_side_size} is below data.input_size={self.input_size}")
        self.test_num_clips = None if test_num_clips is None else _positive("test_num_clips", test_num_clips)
        self.test_num_crops = _positive("test_num_crops", test_num_crops)
        self.hflip = (sampling == "dense") if hflip is None else _flag("hflip", hflip)
        self.randaugment = _flag("randaugment", randaugment)
        if not 0 < min_scale <= max_scale <= 1:
            raise ConfigError(
                f"data.min_scale={min_scale}, data.max_scale={max_scale}: need 0 < min_scale <= max_scale <= 1"
            )
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self._names: list[str] | None = None

    def _class_names(self) -> list[str] | None:
        if self._names is None and self.label_map is not None:
            self._names = load_label_map(self.label_map)
        return self._names

    def list_file(self, split: str) -> str | None:
        """The list file of ``split`` (None when unset)."""
        return self.lists[_split(split)]

    def check_lists(self, splits: Sequence[str] = SPLITS, require: bool = False) -> dict[str, int]:
        """Parse every split's list file up front, so that a malformed line or a label
        ``>= data.num_classes`` stops the run before any model is built or any pass runs.

        Args:
            splits: the splits to check.
            require: a split whose list file is unset or missing is an error (else it is passed over).

        Returns:
            Videos per checked split.

        Raises:
            ConfigError: naming ``data.<split>_list`` and ``list_file:line``.
            FileNotFoundError: with ``require``, a list file that is unset or missing, naming its key.
        """
        names = self._class_names()
        counts = {}
        for split in splits:
            list_file = self.list_file(split)
            if not list_file or not Path(list_file).is_file():
                if require:
                    raise FileNotFoundError(
                        f"data.{split}_list={list_file}: list file not found (make lists with tools/build_lists.py)"
                    )
                continue
            try:
                records, _ = parse_list_file(list_file, self.layout, names, self.num_classes)
            except ValueError as err:
                raise ConfigError(f"data.{split}_list: {err}") from err
            counts[split] = len(records)
        return counts

    def transform(self, split: str) -> Any:
        """The spatial transform of ``split`` (see :func:`~video_sparse.data.video_transforms.video_transform`)."""
        return video_transform(
            _split(split),
            input_size=self.input_size,
            short_side_size=self.short_side_size,
            num_crops=self.test_num_crops,
            hflip=self.hflip,
            randaugment=self.randaugment,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
            mean=self.mean,
            std=self.std,
        )

    def dataset(self, split: str) -> ClassificationDataset:
        """The video dataset of ``split`` (``test``: ``test_num_clips x test_num_crops`` views per video).

        Raises:
            ConfigError: the split's list file is unset.
            FileNotFoundError: ``root`` or the list file does not exist.
        """
        list_file = self.list_file(split)
        if not list_file:
            raise ConfigError(f"data.{split}_list must be set to read the {split} split")
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root does not exist: {self.root}")
        if not Path(list_file).is_file():
            raise FileNotFoundError(f"data.{split}_list does not exist: {list_file}")
        return VideoClassificationDataset(
            self.root,
            list_file,
            split,
            transform=self.transform(split),
            layout=self.layout,
            backend=self.backend,
            label_map=self._class_names(),
            num_classes=self.num_classes,
            sampling=self.sampling,
            num_frames=self.num_frames,
            frame_interval=self.frame_interval,
            num_clips=self.test_num_clips,
            filename_tmpl=self.filename_tmpl,
            start_index=self.start_index,
        )

    def multiprocessing_context(self) -> str | None:
        """``"spawn"`` when the backend may be decord (forked workers can hang), else None."""
        return default_multiprocessing_context(self.backend)


class DemoData(VideoData):
    """The generated demo set (:func:`~video_sparse.data.demo.make_demo_dataset`) under ``root``.

    Its list files are ``root/{train,val,test}.txt``, written by :meth:`prepare`.

    Args:
        demo: keyword arguments of ``make_demo_dataset`` (``num_train``, ``size``, ``seed``, ...).
        Others: see :class:`VideoData`.
    """

    def __init__(self, *, demo: dict[str, Any] | None = None, backend: str = "pyav", **kwargs: Any) -> None:
        root = kwargs.get("root")
        for split in SPLITS:
            if kwargs.get(f"{split}_list") is None and root is not None:
                kwargs[f"{split}_list"] = str(Path(root) / f"{split}.txt")
        super().__init__(backend=backend, **kwargs)
        if demo is not None and not isinstance(demo, dict):
            raise ConfigError(f"data.demo={demo!r}: expected a mapping of make_demo_dataset arguments")
        self.demo = dict(demo or {})
        if "num_frames" in self.demo:
            raise ConfigError("data.demo.num_frames: set data.num_frames instead")

    def _generate(self) -> dict[str, str]:
        from video_sparse.data.demo import make_demo_dataset

        try:
            return make_demo_dataset(self.root, num_frames=self.num_frames, **self.demo)
        except TypeError as err:
            raise ConfigError(f"data.demo: {err}") from err

    def prepare(self, is_main: bool) -> None:
        """Write the demo clips and lists (once; finished files are reused) when ``is_main``."""
        if is_main:
            self._generate()

    def dataset(self, split: str) -> ClassificationDataset:
        """The demo dataset of ``split``; the set is completed first if :meth:`prepare` has not run."""
        self._generate()  # returns at once when the set is complete
        return super().dataset(split)


class _ImageData(DataModule):
    """An image data set with train and test splits; subclasses set :attr:`dataset_class`."""

    dataset_class: Any = None
    classes_in_files: int = 0
    hflip: float = 0.5

    def __init__(
        self,
        *,
        root: str | os.PathLike,
        num_classes: int | None = None,
        input_size: int = 224,
        mean: Sequence[float] = IN21K_MEAN,
        std: Sequence[float] = IN21K_STD,
        batch_size: int = 64,
        num_workers: int = 4,
    ) -> None:
        num_classes = self.classes_in_files if num_classes is None else num_classes
        super().__init__(
            root=root,
            num_classes=num_classes,
            input_size=input_size,
            mean=mean,
            std=std,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        if self.num_classes != self.classes_in_files:
            raise ConfigError(
                f"data.num_classes={num_classes}: {type(self).__name__} has {self.classes_in_files} classes"
            )

    def transform(self, split: str) -> Any:
        """Random-resized crop and flip for ``train``, resize for ``val``/``test``."""
        if _split(split) == "train":
            return train_transform(self.input_size, hflip=self.hflip, mean=self.mean, std=self.std)
        return eval_transform(self.input_size, mean=self.mean, std=self.std)

    def dataset(self, split: str) -> ClassificationDataset:
        """``train`` reads the training files; ``val`` and ``test`` read the test files."""
        train = _split(split) == "train"
        return self.dataset_class(
            self.root, split="train" if train else "test", train=train, transform=self.transform(split)
        )


class CIFAR100Data(_ImageData):
    """CIFAR-100 from ``<root>/cifar-100-python`` (see :class:`~video_sparse.data.image_datasets.CIFAR100Dataset`)."""

    classes_in_files = 100

    dataset_class = CIFAR100Dataset


class SVHNData(_ImageData):
    """SVHN cropped digits from ``<root>/*_32x32.mat``; training does not flip (digits are not symmetric)."""

    classes_in_files = 10
    hflip = 0.0

    dataset_class = SVHNDataset


class Food101Data(_ImageData):
    """Food-101 from ``<root>/food-101`` (see :class:`~video_sparse.data.image_datasets.Food101Dataset`)."""

    classes_in_files = 101

    dataset_class = Food101Dataset


class VTABData(DataModule):
    """One VTAB-1K task, ``<root>/<task>/{train800val200,train800,val200,test}.txt``.

    Args:
        root: the VTAB-1K folder holding one sub-folder per task.
        task: task folder name (a key of ``vtab.VTAB_TASKS`` or your own).
        num_classes: classes; None: from the task table (required for other tasks).
        train_split, val_split: list names read for ``train`` and ``val``; ``test`` reads ``test``.
        input_size, mean, std, batch_size, num_workers: see :class:`DataModule`.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike,
        task: str,
        num_classes: int | None = None,
        train_split: str = "train800val200",
        val_split: str = "test",
        input_size: int = 224,
        mean: Sequence[float] = IN21K_MEAN,
        std: Sequence[float] = IN21K_STD,
        batch_size: int = 64,
        num_workers: int = 4,
    ) -> None:
        if not task or task == "???":
            raise ConfigError("data.task must be set (a VTAB-1K task folder, e.g. cifar or dtd)")
        if num_classes is None:
            if task not in VTAB_TASKS:
                raise ConfigError(f"data.num_classes must be set: task {task!r} is not in the VTAB-1K table")
            num_classes = VTAB_TASKS[task][0]
        super().__init__(
            root=root,
            num_classes=num_classes,
            input_size=input_size,
            mean=mean,
            std=std,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        for key, value in (("train_split", train_split), ("val_split", val_split)):
            if value not in VTAB_SPLITS:
                raise ConfigError(f"data.{key}={value!r}: expected one of {', '.join(VTAB_SPLITS)}")
        self.task, self.train_split, self.val_split = task, train_split, val_split

    def transform(self, split: str) -> Any:
        """The VTAB-1K transform (a direct resize, no augmentation) for every split."""
        _split(split)
        return vtab_transform(self.input_size, mean=self.mean, std=self.std)

    def dataset(self, split: str) -> ClassificationDataset:
        """``train``/``val`` read ``train_split``/``val_split``; ``test`` reads ``test``."""
        name = {"train": self.train_split, "val": self.val_split, "test": "test"}[_split(split)]
        return VTABDataset(
            self.root,
            self.task,
            split=name,
            transform=self.transform(split),
            num_classes=self.num_classes,
            train=split == "train",
        )


def data_module_class(data_cfg: Mapping[str, Any]) -> type[DataModule]:
    """The data-module class a ``data`` config names in ``_target_`` (without building it).

    Raises:
        ConfigError: no ``_target_``, or one that is not a :class:`DataModule`.
    """
    from hydra.utils import get_object

    from video_sparse.engine.targets import check_targets

    check_targets(data_cfg, "data")
    target = data_cfg.get("_target_")
    cls = get_object(target) if target else None
    if not (isinstance(cls, type) and issubclass(cls, DataModule)):
        raise ConfigError(f"data._target_={target!r} is not a data module (video_sparse.data.VideoData, ...)")
    return cls
