"""Image classification datasets that share the video datasets' item contract.

Every item is a dict with exactly the keys ``"input"`` (float tensor ``(C, H, W)``), ``"label"``
(int), ``"sample_index"`` (int), ``"view_index"`` (always 0: an image has one view) and
``"skipped"`` (int), so the training loop and the multi-view evaluation consume images and videos
alike. Datasets satisfy :class:`~video_sparse.data.contract.ClassificationDataset` (one view).

Unreadable images:
- training: the failure is logged, the next sample (with its own index and label) is returned
  instead and ``"skipped"`` counts the substitutions, so the loop can sum and report them;
- test: no substitution; the item is ``{"failed": True, "sample_index", "view_index", "path",
  "error"}`` and the collate function routes it to the failure count of the evaluation.

CIFAR-100, SVHN and Food-101 are read from the folders torchvision's classes use, never downloaded.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from video_sparse.data.failures import FailureCount, failed_item, load_sample
from video_sparse.data.image_transforms import IN21K_MEAN, IN21K_STD, eval_transform, train_transform
from video_sparse.data.images import load_image
from video_sparse.data.lists import parse_list_file
from video_sparse.data.text import read_json

__all__ = [
    "ImageClassificationDataset",
    "ImageFileDataset",
    "CIFAR100Dataset",
    "SVHNDataset",
    "Food101Dataset",
    "read_image_list",
    "load_rgb",
]

logger = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]
# Errors that mean "this file cannot be decoded"; anything else (a bug in a transform) propagates.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decodes an image file fully as RGB, as a viewer shows it (EXIF orientation, 16-bit grey
    scaled, transparency over white: :func:`video_sparse.data.images.load_image`), so a truncated
    file fails here."""
    return load_image(path)


def read_image_list(path: str | os.PathLike, num_classes: int | None = None) -> list[tuple[str, int]]:
    """Parses an image list file, lines ``relative/path.jpg LABEL`` (the video-list format of
    :func:`~video_sparse.data.lists.parse_list_file`: split from the right, so paths may hold spaces).

    Args:
        path: the list file.
        num_classes: if given, labels must lie in ``[0, num_classes)``.

    Returns:
        ``[(relative_path, label), ...]`` in file order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: on a malformed line, a bad label or an empty list, naming ``path:lineno``.
    """
    records, _ = parse_list_file(path, "video", None, num_classes)
    return [(r.path, r.label) for r in records]


class ImageClassificationDataset(Dataset):
    """Base class: subclasses provide :meth:`load_image` and :meth:`sample_id`.

    Satisfies :class:`~video_sparse.data.contract.ClassificationDataset` with one view per image;
    unreadable images follow :mod:`video_sparse.data.failures` (substituted by the next sample
    in training, reported as failed otherwise).

    Args:
        labels: class of each sample.
        num_classes: number of classes.
        transform: PIL image -> ``(C, H, W)`` float tensor.
        train: substitute unreadable samples (training) or report them (test).
        max_substitutions: in training, give up after this many unreadable samples in a row.
    """

    num_clips: int = 1
    num_crops: int = 1
    num_views: int = 1

    def __init__(
        self,
        labels: Sequence[int],
        num_classes: int,
        transform: Transform,
        train: bool,
        max_substitutions: int = 16,
    ) -> None:
        self.labels: list[int] = [int(y) for y in labels]
        self.num_classes = int(num_classes)
        self.transform = transform
        self.train = bool(train)
        self.max_substitutions = int(max_substitutions)
        self.failures = FailureCount()

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, index: int) -> Image.Image:
        """Returns sample ``index`` as an RGB PIL image (raises an error of ``DECODE_ERRORS`` on failure)."""
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """A stable, human-readable identifier of sample ``index`` (a relative path for files)."""
        raise NotImplementedError

    @property
    def sample_ids(self) -> list[str]:
        """Identifiers of all samples, indexed by sample index (for per-sample score files)."""
        return [self.sample_id(i) for i in range(len(self))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        index = int(index) % n
        got = load_sample(
            self.load_image,
            index,
            train=self.train,
            errors=DECODE_ERRORS,
            failures=self.failures,
            sample_id=self.sample_id,
            replace=lambda i: (i + 1) % n,
            max_tries=self.max_substitutions + 1,
        )
        if got.error is not None:
            return failed_item(index, 0, self.sample_id(index), got.error)
        return {
            "input": self.transform(got.value),
            "label": self.labels[got.sample_index],
            "sample_index": got.sample_index,
            "view_index": 0,
            "skipped": got.skipped,
        }


class ImageFileDataset(ImageClassificationDataset):
    """Images stored as files under ``root``.

    Args:
        root: folder the relative paths are relative to.
        entries: ``[(relative_path, label), ...]``.
        num_classes: number of classes.
        transform: PIL image -> tensor.
        train: training (substitute unreadable files) or test (report them).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        entries: Sequence[tuple[str, int]],
        num_classes: int,
        transform: Transform,
        train: bool,
    ) -> None:
        super().__init__([y for _, y in entries], num_classes, transform, train)
        self.root = Path(root)
        self.paths: list[str] = [p for p, _ in entries]

    def load_image(self, index: int) -> Image.Image:
        return load_rgb(self.root / self.paths[index])

    def sample_id(self, index: int) -> str:
        return self.paths[index]


class _ArrayDataset(ImageClassificationDataset):
    """Images held in memory as a ``(N, H, W, 3)`` uint8 array."""

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int],
        num_classes: int,
        transform: Transform,
        train: bool,
        name: str,
    ) -> None:
        super().__init__(labels, num_classes, transform, train)
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] != len(self.labels):
            raise ValueError(f"{name}: expected ({len(self.labels)}, H, W, 3) images, got {images.shape}")
        self.images = np.ascontiguousarray(images, dtype=np.uint8)
        self._name = name

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])

    def sample_id(self, index: int) -> str:
        return f"{self._name}/{index:06d}"


def _default_transform(
    train: bool, image_size: int, mean: Sequence[float], std: Sequence[float], hflip: float = 0.5
) -> Transform:
    if train:
        return train_transform(image_size, hflip=hflip, mean=mean, std=std)
    return eval_transform(image_size, mean=mean, std=std)


def _check_split(split: str, allowed: Sequence[str], name: str) -> None:
    if split not in allowed:
        raise ValueError(f"{name}: split must be one of {list(allowed)}, got {split!r}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays: a data file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]
        return getattr(importlib.import_module(module), name)


def _load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        try:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise ValueError(f"{path}: not a readable CIFAR pickle ({e})") from e


class CIFAR100Dataset(_ArrayDataset):
    """CIFAR-100 from ``<root>/cifar-100-python/{train,test,meta}`` (torchvision's layout).

    Args:
        root: folder holding ``cifar-100-python/`` (or that folder itself).
        split: ``"train"`` or ``"test"``.
        transform: PIL image -> tensor; default random-resized-crop + flip (train) or resize (test).
        image_size: output side of the default transform.
        mean: normalisation mean of the default transform.
        std: normalisation std of the default transform.
        train: substitution policy; defaults to ``split == "train"``.

    Raises:
        FileNotFoundError: if the files are missing, saying what to download and where.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Transform | None = None,
        image_size: int = 224,
        mean: Sequence[float] = IN21K_MEAN,
        std: Sequence[float] = IN21K_STD,
        train: bool | None = None,
    ) -> None:
        _check_split(split, ("train", "test"), "CIFAR-100")
        root = Path(root)
        base = root / "cifar-100-python"
        if not base.is_dir() and (root / split).is_file():
            base = root
        file = base / split
        if not file.is_file():
            raise FileNotFoundError(
                f"CIFAR-100 {split} split not found: expected {root / 'cifar-100-python' / split}. "
                "Download the Python version (cifar-100-python.tar.gz, "
                "https://www.cs.toronto.edu/~kriz/cifar.html) and "
                f"extract it into {root}, so that {root / 'cifar-100-python'}/{{train,test,meta}} exist. "
                "Nothing is downloaded at run time."
            )
        entry = _load_pickle(file)
        try:
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = [int(y) for y in entry["fine_labels"]]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{file}: expected a dict with 'data' and 'fine_labels' ({e!r})") from None
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        meta = base / "meta"
        self.classes: list[str] = (
            list(_load_pickle(meta)["fine_label_names"]) if meta.is_file() else [str(i) for i in range(100)]
        )
        train = split == "train" if train is None else train
        if transform is None:
            transform = _default_transform(train, image_size, mean, std)
        super().__init__(images, labels, 100, transform, train, f"cifar100-{split}")


class SVHNDataset(_ArrayDataset):
    """SVHN cropped digits from ``<root>/{train,test,extra}_32x32.mat`` (torchvision's layout).

    Label 10 in the files (digit 0) becomes 0, as in torchvision. The default training transform
    does not flip (digits are not mirror-symmetric).

    Args:
        root: folder holding the ``.mat`` files.
        split: ``"train"``, ``"test"`` or ``"extra"``.
        transform: PIL image -> tensor; default random-resized-crop (train) or resize (test).
        image_size: output side of the default transform.
        mean: normalisation mean of the default transform.
        std: normalisation std of the default transform.
        train: substitution policy; defaults to ``split != "test"``.

    Raises:
        FileNotFoundError: if the file is missing, saying what to download and where.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Transform | None = None,
        image_size: int = 224,
        mean: Sequence[float] = IN21K_MEAN,
        std: Sequence[float] = IN21K_STD,
        train: bool | None = None,
    ) -> None:
        _check_split(split, ("train", "test", "extra"), "SVHN")
        file = Path(root) / f"{split}_32x32.mat"
        if not file.is_file():
            raise FileNotFoundError(
                f"SVHN {split} split not found: expected {file}. Download {file.name} (format 2, cropped "
                f"digits, http://ufldl.stanford.edu/housenumbers/) into {Path(root)}. "
                "Nothing is downloaded at run time."
            )
        try:
            from scipy.io import loadmat
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("SVHNDataset reads .mat files with scipy: pip install scipy") from e
        mat = loadmat(file)
        if "X" not in mat or "y" not in mat:
            raise ValueError(f"{file}: expected arrays 'X' (32, 32, 3, N) and 'y' (N, 1)")
        images = np.transpose(mat["X"], (3, 0, 1, 2))
        labels = mat["y"].astype(np.int64).reshape(-1)
        labels[labels == 10] = 0
        train = split != "test" if train is None else train
        if transform is None:
            transform = _default_transform(train, image_size, mean, std, hflip=0.0)
        super().__init__(images, labels.tolist(), 10, transform, train, f"svhn-{split}")


class Food101Dataset(ImageFileDataset):
    """Food-101 from ``<root>/food-101/{images,meta}`` (torchvision's layout).

    Classes are the sorted keys of ``meta/<split>.json``; sample ``c/id`` is ``images/c/id.jpg``.

    Args:
        root: folder holding ``food-101/`` (or that folder itself).
        split: ``"train"`` or ``"test"``.
        transform: PIL image -> tensor; default random-resized-crop + flip (train) or resize + centre
            crop (test).
        image_size: output side of the default transform.
        mean: normalisation mean of the default transform.
        std: normalisation std of the default transform.
        train: substitution policy; defaults to ``split == "train"``.

    Raises:
        FileNotFoundError: if the folder is missing, saying what to download and where.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Transform | None = None,
        image_size: int = 224,
        mean: Sequence[float] = IN21K_MEAN,
        std: Sequence[float] = IN21K_STD,
        train: bool | None = None,
    ) -> None:
        _check_split(split, ("train", "test"), "Food-101")
        root = Path(root)
        base = root / "food-101"
        if not base.is_dir() and (root / "meta").is_dir():
            base = root
        meta = base / "meta" / f"{split}.json"
        if not meta.is_file() or not (base / "images").is_dir():
            raise FileNotFoundError(
                f"Food-101 not found: expected {root / 'food-101'}/meta/{split}.json and "
                f"{root / 'food-101'}/images/. Download food-101.tar.gz "
                "(http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz) and extract it into "
                f"{root}. Nothing is downloaded at run time."
            )
        index = read_json(meta)
        if not isinstance(index, dict):
            raise ValueError(f"{meta}: expected a JSON object mapping class name -> list of 'class/id'")
        self.classes: list[str] = sorted(index)
        entries = [(f"images/{item}.jpg", label) for label, name in enumerate(self.classes) for item in index[name]]
        train = split == "train" if train is None else train
        if transform is None:
            transform = _default_transform(train, image_size, mean, std)
        super().__init__(base, entries, len(self.classes), transform, train)
