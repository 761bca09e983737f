"""List files and label maps for video classification.

Three whitespace list layouts are declared (see ``data_lists/README.md`` for examples):

* ``video``: ``relative/path.mp4 LABEL`` (one video file per line);
* ``frames``: ``relative/folder NUM_FRAMES LABEL`` (a folder of ``img_00001.jpg`` ...);
* ``frames_start``: ``relative/folder START_INDEX NUM_FRAMES LABEL`` (VideoMAE V2's frame lists:
  the folder's first frame file is numbered ``START_INDEX``).

Lines are split from the right, so paths may contain spaces; a line whose path part ends in an
integer field has the shape of another layout and is refused at parse time (it would otherwise
be read as a path with a space and fail only when the file is opened). Blank lines and lines
starting with ``#`` are skipped; a path that starts with ``#`` is written ``./#...`` (what
:func:`write_list_file` does) and read back without the ``./``. Files are read by
:func:`video_sparse.data.text.read_text` (UTF-8 or UTF-16 with or without a byte-order mark,
any line ends). A comma-separated variant with a header row (columns such as
``path,label`` or ``path,num_frames,label``) is accepted too, as are headerless comma rows
whose last field is an integer label. Labels are integers or class names resolved through a
label map (one class name per line; index = line number); with ``num_classes`` every label is
checked against the class count up front. A malformed line raises :class:`ValueError` whose
message starts with ``path:lineno``.

:func:`resolve_inside` keeps output paths derived from list entries inside their output root.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from video_sparse.checkpoint.io import atomic_write
from video_sparse.data.text import read_json, read_lines

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".flv", ".mpg", ".mpeg")
LAYOUTS = ("video", "frames", "frames_start")
COMMENT = "#"  #: a list line starting with this is a comment

_PATH_COLUMNS = (
    "path",
    "video",
    "video_path",
    "filename",
    "file",
    "folder",
    "frame_dir",
    "directory",
    "dir",
    "clip",
    "name",
)
_LABEL_COLUMNS = ("label", "label_id", "class", "class_id", "class_name", "category", "target")
_FRAMES_COLUMNS = ("num_frames", "total_frames", "frames", "n_frames", "length")

LabelMapLike = str | os.PathLike | Sequence[str] | Mapping[str, int] | None


class VideoRecord(NamedTuple):
    """One row of a list file.

    Attributes:
        path: path relative to the data root (video file or frame folder).
        label: integer class index.
        num_frames: frame count from a frame list, ``None`` for video lists.
        lineno: 1-based line number in the list file (for error messages).
        start_index: number of the first frame file (``frames_start`` lists), else ``None``.
    """

    path: str
    label: int
    num_frames: int | None
    lineno: int
    start_index: int | None = None


class UnsafePathError(ValueError):
    """An output path derived from input data would land outside its output root."""


def resolve_inside(root: str | os.PathLike, rel: str, where: str = "") -> Path:
    """Join ``rel`` to ``root`` and require the result to lie strictly inside ``root``.

    Both paths are resolved (``..``, and symbolic links that already exist), so ``../x``,
    absolute paths and links pointing out of ``root`` are all refused.

    Args:
        root: the output root (need not exist yet).
        rel: a relative path taken from input data (a list line, an annotation, a split name).
        where: prefix of the error message (e.g. ``list.txt:7``).

    Returns:
        The resolved path inside the resolved ``root``.

    Raises:
        UnsafePathError: ``rel`` is empty, absolute, or resolves to ``root`` itself or outside it.
    """
    prefix = f"{where}: " if where else ""
    if not rel or "\x00" in rel or os.path.isabs(rel):
        raise UnsafePathError(f"{prefix}path {rel!r} is not a relative path inside the output root {root}")
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / rel))
    if base not in target.parents:
        raise UnsafePathError(f"{prefix}path {rel!r} resolves to {target}, outside the output root {base}")
    return target


def _is_int(text: str) -> bool:
    text = text.strip()
    if text.startswith(("+", "-")):
        text = text[1:]
    return text.isdigit()


def load_label_map(label_map: LabelMapLike) -> list[str] | None:
    """Load class names in index order.

    Args:
        label_map: ``None``; a text file with one class name per line (index = 0-based line
            number); a JSON file mapping name -> index (the SSv2 ``labels.json`` layout) or
            holding a list of names; a sequence of names; or a mapping name -> index.

    Returns:
        The class names ordered by index, or ``None`` when ``label_map`` is ``None``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: duplicate or blank names, or indices that are not ``0..N-1``.
    """
    if label_map is None:
        return None
    if isinstance(label_map, Mapping):
        return _names_from_mapping(label_map, "<label map>")
    if isinstance(label_map, (str, os.PathLike)):
        path = Path(label_map)
        if not path.is_file():
            raise FileNotFoundError(f"label map not found: {path}")
        if path.suffix.lower() == ".json":
            data = read_json(path)
            if isinstance(data, Mapping):
                return _names_from_mapping(data, str(path))
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON object name -> index or a list of names")
            return _check_names([str(x) for x in data], str(path))
        lines = read_lines(path)
        while lines and not lines[-1][1].strip():
            lines.pop()
        names = []
        for lineno, line in lines:
            name = line.strip()
            if not name:
                raise ValueError(f"{path}:{lineno}: blank line inside a label map")
            names.append(name)
        return _check_names(names, str(path))
    return _check_names([str(x) for x in label_map], "<label map>")


def _names_from_mapping(mapping: Mapping, where: str) -> list[str]:
    try:
        pairs = sorted((int(v), str(k)) for k, v in mapping.items())
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: label map values must be integers ({e})") from None
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise ValueError(f"{where}: label indices must be exactly 0..{len(pairs) - 1}")
    return _check_names([name for _, name in pairs], where)


def _check_names(names: list[str], where: str) -> list[str]:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name.strip():
            raise ValueError(f"{where}: blank class name at index {i}")
        if name in seen:
            raise ValueError(f"{where}: duplicate class name {name!r} at indices {seen[name]} and {i}")
        seen[name] = i
    if not names:
        raise ValueError(f"{where}: empty label map")
    return names


class _LabelResolver:
    """Turns a label token into an int, through an optional list of class names."""

    def __init__(self, names: list[str] | None, num_classes: int | None = None):
        self.names = names
        self.num_classes = num_classes
        self.index = {n: i for i, n in enumerate(names)} if names else {}

    def can_resolve(self, token: str) -> bool:
        token = token.strip()
        return _is_int(token) or token in self.index or token.replace("_", " ") in self.index

    def __call__(self, token: str, where: str) -> int:
        label = self._resolve(token, where)
        if self.num_classes is not None and not 0 <= label < self.num_classes:
            raise ValueError(
                f"{where}: label {label} out of range for data.num_classes={self.num_classes} "
                f"(labels are 0..{self.num_classes - 1})"
            )
        return label

    def _resolve(self, token: str, where: str) -> int:
        token = token.strip()
        if _is_int(token):
            label = int(token)
            if label < 0 or (self.names is not None and label >= len(self.names)):
                bound = f" (label map has {len(self.names)} classes)" if self.names is not None else ""
                raise ValueError(f"{where}: label {label} out of range{bound}")
            return label
        for key in (token, token.replace("_", " ")):
            if key in self.index:
                return self.index[key]
        if self.names is None:
            raise ValueError(f"{where}: label {token!r} is not an integer and no label map was given")
        raise ValueError(f"{where}: label {token!r} is not in the label map")


def _content_lines(path: Path) -> Iterable[tuple[int, str]]:
    for lineno, raw in read_lines(path):
        line = raw.strip()
        if line and not line.startswith(COMMENT):
            yield lineno, line


def detect_line_layout(line: str) -> str:
    """Guess the layout (``"video"``, ``"frames"`` or ``"frames_start"``) of one list line.

    A line is a video line when everything left of the last field ends with a video extension;
    otherwise ``folder INT INT LABEL`` is a ``frames_start`` line and ``folder INT LABEL`` a
    ``frames`` line; anything else is a video line.
    """
    left = line.rsplit(None, 1)[0] if len(line.split()) > 1 else line
    if left.lower().endswith(VIDEO_EXTENSIONS):
        return "video"
    parts = line.rsplit(None, 3)
    if len(parts) == 4 and _is_int(parts[1]) and _is_int(parts[2]):
        return "frames_start"
    parts = line.rsplit(None, 2)
    if len(parts) == 3 and _is_int(parts[1]):
        return "frames"
    return "video"


_SHAPES = {
    "video": "'relative/path LABEL'",
    "frames": "'relative/folder NUM_FRAMES LABEL'",
    "frames_start": "'relative/folder START_INDEX NUM_FRAMES LABEL'",
}


def _count(text: str, what: str, where: str) -> int:
    if not _is_int(text):
        raise ValueError(f"{where}: {what} {text!r} is not an integer")
    value = int(text)
    if value < 0:
        raise ValueError(f"{where}: negative {what} {value}")
    return value


def _parse_whitespace_line(line: str, layout: str, resolve: _LabelResolver, where: str) -> tuple:
    """``(path, label, num_frames, start_index)`` of one line of a declared layout."""
    fields = {"video": 1, "frames": 2, "frames_start": 3}[layout]
    parts = line.rsplit(None, fields)
    if len(parts) != fields + 1:
        raise ValueError(f"{where}: expected {_SHAPES[layout]}, got {line!r}")
    path = parts[0]
    path_fields = path.split()
    if len(path_fields) > 1 and _is_int(path_fields[-1]) and not path.lower().endswith(VIDEO_EXTENSIONS):
        raise ValueError(
            f"{where}: {line!r} has an integer column more than the {layout!r} layout "
            f"{_SHAPES[layout]} (the path would end in {path_fields[-1]!r}); "
            f"lines must all fit one declared layout: {', '.join(_SHAPES.values())}"
        )
    if layout == "video":
        return path, resolve(parts[1], where), None, None
    if layout == "frames":
        if not _is_int(parts[1]):
            raise ValueError(f"{where}: expected {_SHAPES[layout]}, got {line!r}")
        return path, resolve(parts[2], where), _count(parts[1], "frame count", where), None
    start = _count(parts[1], "start index", where)
    return path, resolve(parts[3], where), _count(parts[2], "frame count", where), start


def _find_column(header: list[str], names: Sequence[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def _is_csv_header(line: str) -> bool:
    if "," not in line or _is_int(line.rsplit(None, 1)[-1]):
        return False  # a whitespace line ends in its integer label (its path may hold "label,")
    fields = next(csv.reader([line]))
    return _find_column(fields, _LABEL_COLUMNS) is not None


def _is_headerless_csv(line: str) -> bool:
    if "," not in line:
        return False
    last_ws = line.rsplit(None, 1)[-1]
    if "," not in last_ws:
        return False  # the last whitespace field is a clean label: a space list with a comma in the path
    last_csv = next(csv.reader([line]))[-1]
    return _is_int(last_csv)


def _parse_csv(
    path: Path, lines: list[tuple[int, str]], has_header: bool, layout: str, resolve: _LabelResolver
) -> tuple[list[VideoRecord], str]:
    rows = [(lineno, next(csv.reader([line]))) for lineno, line in lines]
    if has_header:
        (head_line, header), rows = rows[0], rows[1:]
        label_col = _find_column(header, _LABEL_COLUMNS)
        path_col = _find_column(header, _PATH_COLUMNS)
        frames_col = _find_column(header, _FRAMES_COLUMNS)
        if path_col is None:
            path_col = 0
        if layout == "auto":
            layout = "frames" if frames_col is not None else "video"
        if layout == "frames" and frames_col is None:
            raise ValueError(f"{path}:{head_line}: frame list header needs a num_frames column, got {header}")
        width = len(header)
    else:
        if layout == "auto":
            first = rows[0][1]
            layout = "frames" if len(first) >= 3 and _is_int(first[-2]) else "video"
        label_col, frames_col = -1, (-2 if layout == "frames" else None)
        path_col, width = None, None
    records = []
    for lineno, fields in rows:
        where = f"{path}:{lineno}"
        if width is not None:
            if len(fields) != width:
                raise ValueError(f"{where}: expected {width} comma-separated fields, got {len(fields)}")
            rel = fields[path_col].strip()
        else:
            need = 3 if layout == "frames" else 2
            if len(fields) < need:
                raise ValueError(f"{where}: expected at least {need} comma-separated fields, got {fields}")
            rel = ",".join(fields[: len(fields) - need + 1]).strip()
        num_frames = None
        if frames_col is not None:
            text = fields[frames_col].strip()
            if not _is_int(text) or int(text) < 0:
                raise ValueError(f"{where}: frame count {text!r} is not a non-negative integer")
            num_frames = int(text)
        if not rel:
            raise ValueError(f"{where}: empty path")
        records.append(VideoRecord(_unescape_path(rel), resolve(fields[label_col], where), num_frames, lineno))
    return records, layout


def parse_list_file(
    list_file: str | os.PathLike, layout: str = "auto", label_map: LabelMapLike = None, num_classes: int | None = None
) -> tuple[list[VideoRecord], str]:
    """Read a video or frame list file.

    Args:
        list_file: path of the list file.
        layout: one of :data:`LAYOUTS` or ``"auto"`` (decided from the first entry; every later
            line must fit the same layout).
        label_map: class names used to resolve non-integer labels (see :func:`load_label_map`).
        num_classes: when given, every label must lie in ``0..num_classes-1`` (the error names
            ``file:line`` and ``data.num_classes``).

    Returns:
        ``(records, layout)``: the rows in file order and the resolved layout.

    Raises:
        FileNotFoundError: the list file does not exist.
        ValueError: a malformed line (message starts with ``list_file:lineno``) or an empty list.
    """
    path = Path(list_file)
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    if num_classes is not None and int(num_classes) <= 0:
        raise ValueError(f"data.num_classes must be positive, got {num_classes}")
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    resolve = _LabelResolver(load_label_map(label_map), None if num_classes is None else int(num_classes))
    lines = list(_content_lines(path))
    if not lines:
        raise ValueError(f"{path}: the list file has no entries")
    first = lines[0][1]
    if (_is_csv_header(first) or _is_headerless_csv(first)) and layout == "frames_start":
        raise ValueError(
            f"{path}:{lines[0][0]}: the 'frames_start' layout is whitespace-separated "
            f"({_SHAPES['frames_start']}), got a comma-separated line"
        )
    if _is_csv_header(first):
        records, layout = _parse_csv(path, lines, True, layout, resolve)
    elif _is_headerless_csv(first):
        records, layout = _parse_csv(path, lines, False, layout, resolve)
    else:
        if layout == "auto":
            layout = detect_line_layout(first)
        records = []
        for lineno, line in lines:
            rel, label, num_frames, start = _parse_whitespace_line(line, layout, resolve, f"{path}:{lineno}")
            records.append(VideoRecord(_unescape_path(rel), label, num_frames, lineno, start))
    if not records:
        raise ValueError(f"{path}: the list file has no entries")
    return records, layout


def _escape_path(rel_path: str) -> str:
    """A path starting with the comment mark is written as ``./#...`` (read back by :func:`_unescape_path`)."""
    return f"./{rel_path}" if rel_path.startswith(COMMENT) else rel_path


def _unescape_path(rel_path: str) -> str:
    return rel_path[2:] if rel_path.startswith(f"./{COMMENT}") else rel_path


def format_list_line(rel_path: str, label: int, num_frames: int | None = None) -> str:
    """Format one list line (video layout when ``num_frames`` is ``None``, frames layout otherwise).

    :func:`parse_list_file` reads the line back to the same ``(rel_path, label, num_frames)``:
    spaces, commas and non-ASCII letters in the path are kept; a path starting with ``#`` is
    written as ``./#...`` so that it is not read as a comment.

    Raises:
        ValueError: a path that no line can hold (empty, a line break, leading or trailing spaces).
    """
    if any(c in rel_path for c in "\n\r") or rel_path != rel_path.strip() or not rel_path:
        raise ValueError(f"path {rel_path!r} cannot be written to a list file")
    rel_path = _escape_path(rel_path)
    if num_frames is None:
        return f"{rel_path} {int(label)}"
    return f"{rel_path} {int(num_frames)} {int(label)}"


def write_list_file(list_file: str | os.PathLike, entries: Iterable[tuple]) -> int:
    """Write a list file atomically.

    Args:
        list_file: output path; parent folders are created.
        entries: ``(rel_path, label)`` for a video list or ``(rel_path, num_frames, label)`` for a
            frame list.

    Returns:
        The number of lines written.
    """
    lines = []
    for entry in entries:
        if len(entry) == 2:
            lines.append(format_list_line(entry[0], entry[1]))
        elif len(entry) == 3:
            lines.append(format_list_line(entry[0], entry[2], entry[1]))
        else:
            raise ValueError(f"list entry must have 2 or 3 fields, got {entry!r}")
    text = "".join(line + "\n" for line in lines).encode("utf-8")
    atomic_write(list_file, lambda f: f.write(text))
    return len(lines)


def write_label_map(path: str | os.PathLike, names: Sequence[str]) -> None:
    """Write class names one per line (index = line number), atomically."""
    _check_names(list(names), str(path))
    for name in names:
        if "\n" in name or name != name.strip():
            raise ValueError(f"{path}: class name {name!r} cannot be written to a label map")
    text = "".join(n + "\n" for n in names).encode("utf-8")
    atomic_write(path, lambda f: f.write(text))
