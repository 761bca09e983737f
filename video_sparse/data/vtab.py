"""VTAB-1K in the folder layout used across parameter-efficient fine-tuning work.

Layout of one task::

    <root>/<task>/train800.txt        800 training images
    <root>/<task>/val200.txt          200 validation images (hyper-parameter search)
    <root>/<task>/train800val200.txt  the 1000 images of the final training run
    <root>/<task>/test.txt            the full test split
    <root>/<task>/images/...          the image files

Each list line is ``images/xxx.jpg LABEL``, relative to ``<root>/<task>/``. The 19 tasks, their
class counts and groups are in :data:`VTAB_TASKS`. The transform is a direct bicubic resize to
224 x 224 without augmentation (:func:`~video_sparse.data.image_transforms.vtab_transform`).

:func:`make_digits_vtab` writes a small task in this layout from scikit-learn's bundled digits
(real scanned handwriting), for tests and end-to-end runs without any download.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from video_sparse.data.image_datasets import ImageFileDataset, Transform, read_image_list
from video_sparse.data.image_transforms import IN21K_MEAN, IN21K_STD, vtab_transform
from video_sparse.safe_files import ensure_dir, save_image, write_text

__all__ = [
    "VTAB_TASKS",
    "VTAB_GROUPS",
    "VTAB_SPLITS",
    "VTABDataset",
    "vtab_tasks_in_group",
    "make_digits_vtab",
]

logger = logging.getLogger(__name__)

VTAB_GROUPS: tuple[str, str, str] = ("Natural", "Specialized", "Structured")
VTAB_SPLITS: tuple[str, ...] = ("train800val200", "train800", "val200", "test")

#: task name -> (number of classes, group), in the column order of the papers' tables.
VTAB_TASKS: dict[str, tuple[int, str]] = {
    "cifar": (100, "Natural"),
    "caltech101": (102, "Natural"),
    "dtd": (47, "Natural"),
    "oxford_flowers102": (102, "Natural"),
    "oxford_iiit_pet": (37, "Natural"),
    "svhn": (10, "Natural"),
    "sun397": (397, "Natural"),
    "patch_camelyon": (2, "Specialized"),
    "eurosat": (10, "Specialized"),
    "resisc45": (45, "Specialized"),
    "diabetic_retinopathy": (5, "Specialized"),
    "clevr_count": (8, "Structured"),
    "clevr_dist": (6, "Structured"),
    "dmlab": (6, "Structured"),
    "kitti": (4, "Structured"),
    "dsprites_loc": (16, "Structured"),
    "dsprites_ori": (16, "Structured"),
    "smallnorb_azi": (18, "Structured"),
    "smallnorb_ele": (9, "Structured"),
}


def vtab_tasks_in_group(group: str) -> list[str]:
    """Task names of one group (``"Natural"``, ``"Specialized"`` or ``"Structured"``) in table order."""
    if group not in VTAB_GROUPS:
        raise ValueError(f"group must be one of {VTAB_GROUPS}, got {group!r}")
    return [t for t, (_, g) in VTAB_TASKS.items() if g == group]


def _infer_num_classes(task_dir: Path) -> int:
    """Largest label + 1 over the task's list files (for tasks outside :data:`VTAB_TASKS`)."""
    labels = [
        y
        for name in VTAB_SPLITS
        if (task_dir / f"{name}.txt").is_file()
        for _, y in read_image_list(task_dir / f"{name}.txt")
    ]
    if not labels:
        raise ValueError(f"{task_dir}: no labels found in its list files; pass num_classes")
    return max(labels) + 1


class VTABDataset(ImageFileDataset):
    """One VTAB-1K task.

    Args:
        root: the VTAB-1K folder holding one sub-folder per task.
        task: task name (a key of :data:`VTAB_TASKS`, or any folder name if ``num_classes`` is
            given or can be inferred from the list files).
        split: ``"train800val200"`` (final training), ``"train800"``, ``"val200"`` or ``"test"``.
        transform: PIL image -> tensor; default :func:`vtab_transform` for every split.
        image_size: output side of the default transform.
        mean: normalisation mean of the default transform (ViT-B/16 IN-21k: 0.5).
        std: normalisation std of the default transform (ViT-B/16 IN-21k: 0.5).
        num_classes: overrides the table; for unknown tasks defaults to the largest label + 1
            found in the task's list files.
        train: substitute unreadable images (training) or report them (test); defaults to
            ``split.startswith("train")``.

    Raises:
        FileNotFoundError: if the task folder or list file is missing.
        ValueError: on a malformed list line or an out-of-range label (naming ``file:line``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        task: str,
        split: str = "train800val200",
        transform: Transform | None = None,
        image_size: int = 224,
        mean: Sequence[float] = IN21K_MEAN,
        std: Sequence[float] = IN21K_STD,
        num_classes: int | None = None,
        train: bool | None = None,
    ) -> None:
        if split not in VTAB_SPLITS:
            raise ValueError(f"VTAB split must be one of {list(VTAB_SPLITS)}, got {split!r}")
        task_dir = Path(root) / task
        if not task_dir.is_dir():
            raise FileNotFoundError(
                f"VTAB-1K task folder not found: {task_dir}. Expected <root>/<task>/ holding "
                f"{', '.join(s + '.txt' for s in VTAB_SPLITS)} and the images they list "
                f"(known tasks: {', '.join(VTAB_TASKS)})."
            )
        if num_classes is None:
            num_classes = VTAB_TASKS[task][0] if task in VTAB_TASKS else _infer_num_classes(task_dir)
        entries = read_image_list(task_dir / f"{split}.txt", num_classes=num_classes)
        if not entries:
            raise ValueError(f"{task_dir / (split + '.txt')}: the list is empty")
        self.task = task
        self.split = split
        self.group = VTAB_TASKS[task][1] if task in VTAB_TASKS else None
        train = split.startswith("train") if train is None else train
        if transform is None:
            transform = vtab_transform(image_size, mean=mean, std=std)
        super().__init__(task_dir, entries, num_classes, transform, train)


def make_digits_vtab(
    root: str | os.PathLike,
    task: str = "digits",
    n_train: int = 100,
    n_test: int = 100,
    size: int = 32,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Writes a VTAB-1K-layout task of real images from scikit-learn's digits (10 classes).

    The digits (8 x 8 scans, 16 grey levels) are upscaled to ``size`` with bicubic interpolation
    and saved as RGB JPEGs. ``train800val200.txt`` lists all ``n_train`` training images,
    ``train800.txt`` its first ``1 - val_fraction`` and ``val200.txt`` the rest, as in VTAB-1K
    (800 + 200 = 1000); ``test.txt`` lists ``n_test`` other images.

    Args:
        root: VTAB root; the task is written to ``root / task``.
        task: task folder name.
        n_train: training images (train800 + val200).
        n_test: test images (disjoint from the training ones).
        size: image side in pixels.
        val_fraction: share of ``n_train`` that goes to ``val200.txt``.
        seed: selects which digits are used.

    Returns:
        The task folder.

    Raises:
        ImportError: if scikit-learn is not installed.
        ValueError: if more images are asked for than the 1797 digits.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("make_digits_vtab needs scikit-learn: pip install scikit-learn") from e
    digits = load_digits()
    total = len(digits.target)
    if n_train < 2 or n_test < 1 or n_train + n_test > total:
        raise ValueError(f"need n_train >= 2, n_test >= 1 and n_train + n_test <= {total}, got {n_train}, {n_test}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")

    order = np.random.default_rng(seed).permutation(total)
    task_dir = Path(root) / task
    ensure_dir(task_dir / "images")

    def write(indices: np.ndarray, prefix: str) -> list[str]:
        lines = []
        for k, i in enumerate(indices):
            pixels = np.clip(digits.images[i] * (255.0 / 16.0), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
            rel = f"images/{prefix}_{k:04d}.jpg"
            save_image(image, task_dir / rel, quality=95)
            lines.append(f"{rel} {int(digits.target[i])}\n")
        return lines

    train_lines = write(order[:n_train], "train")
    test_lines = write(order[n_train : n_train + n_test], "test")
    n_val = max(1, int(round(n_train * val_fraction)))
    lists = {
        "train800": train_lines[: n_train - n_val],
        "val200": train_lines[n_train - n_val :],
        "train800val200": train_lines,
        "test": test_lines,
    }
    for name, lines in lists.items():
        write_text(task_dir / f"{name}.txt", "".join(lines))
    logger.info("wrote digits VTAB task %s: %d train, %d test images of %d px", task_dir, n_train, n_test, size)
    return task_dir
