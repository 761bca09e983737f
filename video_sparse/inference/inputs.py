"""What the user points prediction at: video files, frame folders, images, folders and list files.

:func:`discover_inputs` turns command-line paths into one :class:`InputItem` per thing to classify:

- a video file (``.mp4 .avi .webm .mkv .mov ...``) or an image file (``.jpg .png ...``);
- a frame folder: a folder holding frame images named by ``filename_tmpl`` (``img_00001.jpg``...);
- any other folder: searched recursively for videos, frame folders and (for image models) images;
- a list file (``.txt``/``.csv``): one path per line, relative to the list's folder (or absolute);
  the project's list formats (``path LABEL``, ``folder NUM_FRAMES LABEL``) work too, labels ignored.

Nothing is opened here: a path that does not exist, or a file of an unknown type, becomes an item of
kind ``"missing"``/``"unknown"`` so that prediction reports it with a reason and goes on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from video_sparse.data.lists import COMMENT
from video_sparse.data.readers import DEFAULT_FRAME_TMPL
from video_sparse.data.text import read_lines

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
LIST_SUFFIXES = frozenset({".txt", ".csv", ".lst"})
KINDS = ("video", "frames", "image", "missing", "unknown")


class InputItem(NamedTuple):
    """One thing to classify.

    Attributes:
        path: the file or folder (as given or resolved from a list/folder).
        kind: ``"video"``, ``"frames"`` (frame folder), ``"image"``, ``"missing"`` or ``"unknown"``.
    """

    path: str
    kind: str


def _frame_pattern(filename_tmpl: str) -> re.Pattern:
    head, _, tail = filename_tmpl.partition("{")
    tail = tail.partition("}")[2]
    return re.compile(re.escape(head) + r"\d+" + re.escape(tail) + "$")


def is_frame_folder(path: Path, filename_tmpl: str = DEFAULT_FRAME_TMPL) -> bool:
    """True if ``path`` is a folder with at least one frame file named by ``filename_tmpl``."""
    if not path.is_dir():
        return False
    pattern = _frame_pattern(filename_tmpl)
    with os.scandir(path) as entries:
        return any(e.is_file() and pattern.match(e.name) for e in entries)


def classify_path(path: Path, filename_tmpl: str = DEFAULT_FRAME_TMPL) -> str:
    """The :data:`KINDS` entry of one existing or missing path (list files and plain folders excluded)."""
    if not path.exists():
        return "missing"
    if path.is_dir():
        return "frames" if is_frame_folder(path, filename_tmpl) else "unknown"
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return "unknown"


def _scan_folder(folder: Path, images: bool, filename_tmpl: str) -> list[InputItem]:
    items: list[InputItem] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        current = Path(dirpath)
        if current != folder and is_frame_folder(current, filename_tmpl):
            items.append(InputItem(str(current), "frames"))
            dirnames[:] = []  # frames of one clip: do not descend
            continue
        dirnames.sort()
        for name in sorted(filenames):
            suffix = Path(name).suffix.lower()
            if suffix in VIDEO_SUFFIXES or (images and suffix in IMAGE_SUFFIXES):
                items.append(InputItem(str(current / name), "video" if suffix in VIDEO_SUFFIXES else "image"))
    return sorted(items)


def _read_list(list_file: Path, root: Path | None) -> list[Path]:
    """Paths named by a list file: one per line; trailing label fields (space- or comma-separated)
    are dropped when the shorter path exists; a line naming nothing that exists is kept whole."""
    base = root if root is not None else list_file.parent
    paths = []
    lines = [line.strip() for _, line in read_lines(list_file)]
    for line in lines:
        if not line or line.startswith(COMMENT):
            continue
        candidates = [
            line,
            *(line.rsplit(None, n)[0] for n in (1, 2) if len(line.split()) > n),
            line.split(",")[0].strip(),
        ]
        resolved = [Path(c) if Path(c).is_absolute() else base / c for c in candidates if c]
        found = next((p for p in resolved if p.exists()), None)
        if found is None and line.lower().startswith(("path,", "video,", "folder,", "youtube_id,")):
            continue  # a CSV header
        paths.append(found if found is not None else resolved[0])
    return paths


def discover_inputs(
    paths: Sequence[str | os.PathLike],
    images: bool = False,
    root: str | os.PathLike | None = None,
    filename_tmpl: str = DEFAULT_FRAME_TMPL,
) -> list[InputItem]:
    """Expand command-line paths into the items to classify, in a stable order.

    Args:
        paths: files, folders and list files.
        images: the model classifies images: image files in folders are inputs (else only videos
            and frame folders are collected from folders).
        root: folder the entries of list files are relative to (default: each list's folder).
        filename_tmpl: frame file names of frame folders.

    Returns:
        One item per input; duplicates (same resolved path) are listed once.
    """
    items: list[InputItem] = []
    for given in paths:
        path = Path(given)
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            listed = _read_list(path, Path(root) if root is not None else None)
            items.extend(InputItem(str(p), classify_path(p, filename_tmpl)) for p in listed)
        elif path.is_dir() and not is_frame_folder(path, filename_tmpl):
            found = _scan_folder(path, images, filename_tmpl)
            if not found:
                logger.warning("%s: no videos%s found", path, " or images" if images else "")
            items.extend(found)
        else:
            items.append(InputItem(str(path), classify_path(path, filename_tmpl)))
    seen: set[str] = set()
    unique = []
    for item in items:
        key = os.path.realpath(item.path)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique
