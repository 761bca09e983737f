"""Fashion-MNIST from its idx files, written as a VTAB-1K-layout task for the image pipeline.

Debian's ``dataset-fashion-mnist`` package installs the four files of the original release under
:data:`DEFAULT_ROOT` (``apt-get install -y dataset-fashion-mnist``; ``tools/setup_env.sh`` does it
when it runs as root): 60,000 training and 10,000 test images, 28x28 grey levels, 10 classes.

idx format (big-endian): two zero bytes, a type byte (``0x08`` = uint8), a byte with the number of
dimensions, one uint32 per dimension, then the data in C order. The files may be gzip-compressed.

:func:`write_fashion_mnist_vtab` turns them into the VTAB-1K layout the training recipe already
reads (``data=vtab``): a seeded, class-balanced subset of the training set as
``train800val200.txt`` (plus ``train800.txt``/``val200.txt``) and the test set as ``test.txt``, as
PNG files. Nothing is downloaded; a missing file is an error naming the path and the package.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from video_sparse.safe_files import ensure_dir, save_image, write_text

__all__ = ["CLASSES", "DEFAULT_ROOT", "load_fashion_mnist", "read_idx", "write_fashion_mnist_vtab"]

log = logging.getLogger(__name__)

#: Where ``dataset-fashion-mnist`` installs the idx files.
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "apt-get install -y dataset-fashion-mnist (as root; tools/setup_env.sh does it)"
#: Class names in label order (0..9).
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one idx file (optionally ``.gz``) of unsigned bytes.

    Returns:
        uint8 array of the shape the header declares, e.g. ``(N, 28, 28)`` images or ``(N,)`` labels.

    Raises:
        ValueError: a header that is not a uint8 idx header, or a size that does not match it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic {data[:4]!r})")
    if data[2] != 0x08:
        raise ValueError(f"{path}: idx type 0x{data[2]:02x} is not uint8 (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header != expected:
        raise ValueError(f"{path}: header declares {shape} ({expected} bytes), file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"Fashion-MNIST file not found: {root / stem}[.gz]; install it with {INSTALL_HINT}")


def load_fashion_mnist(split: str, root: str | os.PathLike = DEFAULT_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of ``split`` ("train" or "test")."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images = read_idx(_find(root, _FILES[split][0]))
    labels = read_idx(_find(root, _FILES[split][1])).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"{root}: {split} images {images.shape} do not match labels {labels.shape}")
    return images, labels


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices with (as near as possible) equal counts per class, seeded, in shuffled order."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [n // len(classes) + (1 if i < n % len(classes) else 0) for i in range(len(classes))]
    picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, per_class)]
    out = np.concatenate(picked)
    rng.shuffle(out)
    return out


def write_fashion_mnist_vtab(
    out_root: str | os.PathLike,
    task: str = "fashion_mnist",
    n_train: int = 1000,
    n_test: int | None = None,
    seed: int = 0,
    source: str | os.PathLike = DEFAULT_ROOT,
) -> Path:
    """Writes ``out_root/task`` in the VTAB-1K layout from the idx files; reuses a finished folder.

    Args:
        out_root: VTAB root; the task goes to ``out_root / task``.
        n_train: class-balanced training images (VTAB-1K: 1000 = 800 train + 200 val).
        n_test: test images (None: all 10,000; else a class-balanced subset, for quick runs).
        seed: subset seed.
        source: folder holding the idx files.

    Returns:
        The task folder. A ``meta.json`` records the arguments; a folder written with other
        arguments is rewritten.
    """
    task_dir = Path(out_root) / task
    meta = {"n_train": int(n_train), "n_test": n_test, "seed": int(seed), "source": str(Path(source).resolve())}
    meta_path = task_dir / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()) == meta:
        return task_dir
    train_x, train_y = load_fashion_mnist("train", source)
    test_x, test_y = load_fashion_mnist("test", source)
    train_idx = balanced_subset(train_y, n_train, seed)
    test_idx = np.arange(len(test_y)) if n_test is None else np.sort(balanced_subset(test_y, n_test, seed + 1))
    ensure_dir(task_dir / "images")

    def write(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, prefix: str) -> list[str]:
        lines = []
        for i in indices:
            rel = f"images/{prefix}_{int(i):05d}.png"
            save_image(Image.fromarray(images[i], mode="L"), task_dir / rel)
            lines.append(f"{rel} {int(labels[i])}\n")
        return lines

    train_lines = write(train_x, train_y, train_idx, "train")
    test_lines = write(test_x, test_y, test_idx, "test")
    n_val = len(train_lines) // 5
    lists = {
        "train800val200": train_lines,
        "train800": train_lines[:-n_val] if n_val else train_lines,
        "val200": train_lines[-n_val:] if n_val else [],
        "test": test_lines,
    }
    for name, lines in lists.items():
        write_text(task_dir / f"{name}.txt", "".join(lines))
    write_text(meta_path, json.dumps(meta))  # last: a task counts as complete only once every file is in place
    log.info("wrote Fashion-MNIST VTAB task %s: %d train, %d test images", task_dir, len(train_lines), len(test_lines))
    return task_dir
