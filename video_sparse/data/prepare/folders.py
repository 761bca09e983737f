"""List files from a folder of videos laid out one sub-folder per class (UCF-101, HMDB-51, most user data).

``<root>/<class name>/**/<clip>.mp4`` becomes ``train.txt``, ``val.txt`` and ``test.txt`` (lines
``class name/clip.mp4 LABEL``, paths relative to ``root``) and ``labels.txt`` (class names, label =
line number, sorted by name). The split is stratified: each class is shuffled with ``seed`` and cut
by the val/test fractions, so every class appears in every split it has videos enough for.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from video_sparse.data.lists import VIDEO_EXTENSIONS, write_label_map, write_list_file

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class FolderLists:
    """What :func:`build_folder_lists` wrote: class names, per-split counts and file paths."""

    classes: list[str]
    counts: dict[str, int]
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the tool's output."""
        counts = ", ".join(f"{split} {self.counts[split]}" for split in SPLIT_NAMES)
        return f"{len(self.classes)} classes, {sum(self.counts.values())} videos: {counts}"


def _videos_below(folder: Path, root: Path, extensions: tuple[str, ...]) -> list[str]:
    found = []
    for dirpath, dirnames, files in os.walk(folder):
        dirnames.sort()
        for name in sorted(files):
            if name.lower().endswith(extensions) and not name.startswith("."):
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return found


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(val, test) counts for a class of ``n`` videos; each non-zero fraction gets >= 1 when n >= 3."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n >= 3:
        n_val = max(n_val, 1) if val_fraction > 0 else 0
        n_test = max(n_test, 1) if test_fraction > 0 else 0
    while n_val + n_test >= n and (n_val or n_test):  # keep at least one training video
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def build_folder_lists(
    root: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
) -> FolderLists:
    """Write train/val/test lists and ``labels.txt`` for a class-folder layout.

    Args:
        root: folder holding one sub-folder per class; videos may sit deeper inside a class folder.
        out_dir: where the lists go (default ``root``; the list paths stay relative to ``root``).
        val_fraction, test_fraction: share of each class's videos for validation and test.
        seed: shuffles each class before the cut (the same seed gives the same split).
        extensions: file endings counted as videos (lower case).

    Returns:
        The class names (label order), per-split counts and written files.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: fewer than two classes with videos, bad fractions, or a split left empty.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"--val {val_fraction} and --test {test_fraction} must be in [0, 1) and sum below 1")
    per_class = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        videos = _videos_below(folder, root, extensions)
        if videos:
            per_class[folder.name] = videos
        else:
            log.warning("%s: no video files (%s), not a class", folder, ", ".join(extensions))
    if len(per_class) < 2:
        raise ValueError(
            f"{root}: found {len(per_class)} class folder(s) with videos; expected one sub-folder "
            f"per class (at least 2), e.g. {root}/cats/clip1.mp4 and {root}/dogs/clip2.mp4"
        )
    classes = sorted(per_class)
    splits: dict[str, list[tuple[str, int]]] = {name: [] for name in SPLIT_NAMES}
    for label, name in enumerate(classes):
        videos = list(per_class[name])
        random.Random(f"{seed}:{name}").shuffle(videos)
        n_val, n_test = _split_sizes(len(videos), val_fraction, test_fraction)
        parts = {"val": videos[:n_val], "test": videos[n_val : n_val + n_test], "train": videos[n_val + n_test :]}
        for split, part in parts.items():
            splits[split].extend((path, label) for path in sorted(part))
    for split in ("val", "test"):
        fraction = val_fraction if split == "val" else test_fraction
        if fraction > 0 and not splits[split]:
            raise ValueError(
                f"{root}: the {split} split is empty; classes need at least 3 videos each "
                f"(largest has {max(len(v) for v in per_class.values())})"
            )
    out = Path(out_dir) if out_dir is not None else root
    result = FolderLists(classes, {split: len(rows) for split, rows in splits.items()})
    for split, rows in splits.items():
        if rows:
            result.files[split] = out / f"{split}.txt"
            write_list_file(result.files[split], rows)
    result.files["labels"] = out / "labels.txt"
    write_label_map(result.files["labels"], classes)
    return result
