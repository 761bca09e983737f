"""Build our list files from the public annotation files of Kinetics-400 and Something-Something-v2.

* Kinetics-400: CSV files with columns ``label, youtube_id, time_start, time_end[, split, is_cc]``;
  videos on disk named ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (the downloader's naming) or
  ``<youtube_id>.<ext>``, anywhere under the video folder (class sub-folders are fine). Labels are
  indexed by a label map (default: the sorted class names found in the CSVs, which is the
  public index order).
* SSv2: ``something-something-v2-labels.json`` (template -> index) and split JSON files (entries
  with ``id`` and ``template``, e.g. ``"Putting [something] on a surface"``); videos named
  ``<id>.webm`` (or any video extension).

Every split gives a ``<split>.txt`` video list (``relative/path LABEL``); videos listed in the
annotations but absent on disk go to ``<split>_missing.txt`` and labels that cannot be mapped to
``<split>_unmapped.txt``; both are returned in a :class:`BuildReport`. Split names come from the
caller and become file names: each output file must resolve inside ``out_dir``
(:func:`~video_sparse.data.lists.resolve_inside`), checked before anything is written.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from video_sparse.data.lists import (
    VIDEO_EXTENSIONS,
    LabelMapLike,
    load_label_map,
    resolve_inside,
    write_label_map,
    write_list_file,
)
from video_sparse.data.text import read_json, read_text
from video_sparse.safe_files import write_text

logger = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """Outcome of building one split's list.

    Attributes:
        split: split name.
        list_file: the list written.
        num_annotated: rows in the annotation file.
        num_written: lines in the list.
        missing: keys (video names) listed in the annotations but not found on disk.
        unmapped: label -> number of rows whose label is not in the label map.
    """

    split: str
    list_file: str
    num_annotated: int = 0
    num_written: int = 0
    missing: list[str] = field(default_factory=list)
    unmapped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for logs and tools."""
        return (
            f"{self.split}: {self.num_written}/{self.num_annotated} written to {self.list_file}, "
            f"{len(self.missing)} missing on disk, {sum(self.unmapped.values())} with unmapped labels "
            f"({len(self.unmapped)} distinct)"
        )


def index_video_folder(video_root: str | os.PathLike) -> dict[str, str]:
    """Map file stem -> path relative to ``video_root`` for every video file below it.

    When two files share a stem the first in sorted order is kept and a warning is logged.
    """
    root = Path(video_root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    index: dict[str, str] = {}
    duplicates = 0
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for name in sorted(files):
            if not name.lower().endswith(VIDEO_EXTENSIONS):
                continue
            stem = os.path.splitext(name)[0]
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if stem in index:
                duplicates += 1
                continue
            index[stem] = rel.replace(os.sep, "/")
    if duplicates:
        logger.warning("%s: %d video files share a name with another one; the first was kept", root, duplicates)
    return index


def check_split_names(splits: Iterable[str], out_dir: str | os.PathLike) -> None:
    """Refuse split names whose output files (``<split>.txt``, reports) would leave ``out_dir``.

    Raises:
        UnsafePathError: naming the split (e.g. ``../x`` or an absolute path).
    """
    for split in splits:
        for suffix in (".txt", "_missing.txt", "_unmapped.txt"):
            resolve_inside(out_dir, f"{split}{suffix}", f"split {split!r}")


def _label_index(names: list[str]) -> dict[str, int]:
    index = {n: i for i, n in enumerate(names)}
    for n, i in list(index.items()):
        index.setdefault(n.replace(" ", "_"), i)
    return index


def _write_split(
    split: str,
    rows: Iterable[tuple[str, str | None]],
    video_index: Mapping[str, str],
    label_index: Mapping[str, int],
    out_dir: Path,
) -> BuildReport:
    """rows: (candidate keys joined by '|', label or None)."""
    report = BuildReport(split=split, list_file=str(resolve_inside(out_dir, f"{split}.txt", f"split {split!r}")))
    entries = []
    for keys, label in rows:
        report.num_annotated += 1
        candidates = keys.split("|")
        rel = next((video_index[k] for k in candidates if k in video_index), None)
        if rel is None:
            report.missing.append(candidates[0])
            continue
        cls = label_index.get(label.strip()) if label is not None else None
        if cls is None:
            report.unmapped["<no label>" if label is None else label.strip()] += 1
            continue
        entries.append((rel, cls))
    report.num_written = write_list_file(report.list_file, entries)
    if report.missing:
        write_text(
            resolve_inside(out_dir, f"{split}_missing.txt", f"split {split!r}"),
            "".join(k + "\n" for k in report.missing),
        )
    if report.unmapped:
        write_text(
            resolve_inside(out_dir, f"{split}_unmapped.txt", f"split {split!r}"),
            "".join(f"{k}\t{v}\n" for k, v in report.unmapped.most_common()),
        )
    logger.info(report.summary())
    return report


def _read_kinetics_csv(path: Path) -> list[dict[str, str]]:
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        need = {"youtube_id", "time_start", "time_end"}
        if not need <= set(columns):
            raise ValueError(f"{path}:1: Kinetics CSV needs columns {sorted(need)}, got {columns}")
        rows = []
        for lineno, row in enumerate(reader, 2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            try:
                row["time_start"], row["time_end"] = (
                    str(int(float(row["time_start"]))),
                    str(int(float(row["time_end"]))),
                )
            except ValueError:
                raise ValueError(f"{path}:{lineno}: bad time_start/time_end in {row}") from None
            rows.append(row)
    return rows


def build_kinetics_lists(
    annotation_csvs: Mapping[str, str | os.PathLike],
    video_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    label_map: LabelMapLike = None,
) -> list[BuildReport]:
    """Write ``<split>.txt`` lists (and ``labels.txt``) for Kinetics-style CSV annotations.

    Args:
        annotation_csvs: split name -> CSV file (e.g. ``{"train": "train.csv", "val": "validate.csv"}``).
        video_root: folder holding the downloaded videos; list paths are relative to it.
        out_dir: where the lists, ``labels.txt`` and the missing/unmapped reports go.
        label_map: class names in index order; default: sorted unique labels of all CSVs.

    Returns:
        One :class:`BuildReport` per split.
    """
    out = Path(out_dir)
    check_split_names(annotation_csvs, out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {split: _read_kinetics_csv(Path(p)) for split, p in annotation_csvs.items()}
    names = load_label_map(label_map)
    if names is None:
        names = sorted({r["label"] for rows in tables.values() for r in rows if r.get("label")})
        if not names:
            raise ValueError("no labels found in the CSVs and no label map given")
        logger.info("label map from the CSVs: %d classes", len(names))
    write_label_map(out / "labels.txt", names)
    video_index = index_video_folder(video_root)
    label_index = _label_index(names)
    reports = []
    for split, rows in tables.items():
        keyed = []
        for r in rows:
            yid, start, end = r["youtube_id"], int(r["time_start"]), int(r["time_end"])
            keys = f"{yid}_{start:06d}_{end:06d}|{yid}_{start}_{end}|{yid}"
            keyed.append((keys, r.get("label") or None))
        reports.append(_write_split(split, keyed, video_index, label_index, out))
    return reports


def _template_name(template: str) -> str:
    return template.replace("[", "").replace("]", "").strip()


def build_ssv2_lists(
    labels_json: str | os.PathLike,
    split_jsons: Mapping[str, str | os.PathLike],
    video_root: str | os.PathLike,
    out_dir: str | os.PathLike,
) -> list[BuildReport]:
    """Write ``<split>.txt`` lists (and ``labels.txt``) for Something-Something-v2 annotations.

    Args:
        labels_json: ``something-something-v2-labels.json`` (template -> index as a string).
        split_jsons: split name -> JSON list of ``{"id", "template", ...}`` entries.
        video_root: folder holding ``<id>.webm`` files; list paths are relative to it.
        out_dir: where the lists, ``labels.txt`` and reports go.

    Returns:
        One :class:`BuildReport` per split (entries without a template are reported as unmapped).
    """
    out = Path(out_dir)
    check_split_names(split_jsons, out)
    out.mkdir(parents=True, exist_ok=True)
    names = load_label_map(labels_json)
    write_label_map(out / "labels.txt", names)
    label_index = {n: i for i, n in enumerate(names)}
    video_index = index_video_folder(video_root)
    reports = []
    for split, path in split_jsons.items():
        entries = read_json(path)
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a JSON list of video entries")  # noqa: TRY004 (file content)
        rows = []
        for k, e in enumerate(entries):
            if not isinstance(e, Mapping) or "id" not in e:
                raise ValueError(f"{path}: entry {k} has no 'id': {e!r}")
            template = e.get("template")
            rows.append((str(e["id"]), _template_name(template) if template else None))
        reports.append(_write_split(split, rows, video_index, label_index, out))
    return reports
