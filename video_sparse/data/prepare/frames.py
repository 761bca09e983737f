"""Frame extraction: video files -> folders of JPEG frames plus a frame-list file.

A folder is written under a temporary name of its own (host, pid and a random part, so two runs
never share one), its record ``.frames.json`` (frame count, naming) written last, and then renamed
into place. A folder counts as complete only when its record exists and every frame it names is on
disk, checked on every rerun; any other folder (cut short, from an older version, changed by hand)
is set aside and extracted again. :func:`prepare_frames` holds a lock on the output folder, so a
second run into it is refused naming the first, and removes temporary folders left by killed runs.
Videos that cannot be decoded are reported (returned and written to a failures file) without
stopping the run. Work is spread over worker processes (``spawn``-started when decoding with
decord, the platform default otherwise).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import secrets
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from video_sparse.data.lists import (
    VIDEO_EXTENSIONS,
    LabelMapLike,
    UnsafePathError,
    load_label_map,
    parse_list_file,
    resolve_inside,
    write_list_file,
)
from video_sparse.data.readers import (
    DEFAULT_FRAME_TMPL,
    VideoReadError,
    default_multiprocessing_context,
    open_video,
)
from video_sparse.safe_files import ensure_dir, write_text

logger = logging.getLogger(__name__)

RECORD = ".frames.json"
"""Written last into every frame folder: ``{"frames": N, "filename_tmpl": ..., "start_index": ...}``."""
LOCK = "prepare_frames.lock"
_PARTIAL = ".partial"


def complete_frame_count(
    out_dir: str | os.PathLike, filename_tmpl: str = DEFAULT_FRAME_TMPL, start_index: int = 1
) -> int | None:
    """The frame count of a complete frame folder, None for any other (missing, cut short, no record).

    Complete means: :data:`RECORD` names ``N`` frames with this naming, files ``start_index`` ..
    ``start_index + N - 1`` all exist and are not empty, and frame ``start_index + N`` does not exist.
    """
    out_dir = Path(out_dir)
    try:
        record = json.loads((out_dir / RECORD).read_text(encoding="utf-8"))
        n = int(record["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if n < 1 or record.get("filename_tmpl") != filename_tmpl or record.get("start_index") != start_index:
        return None
    for i in range(start_index, start_index + n):
        try:
            if (out_dir / filename_tmpl.format(i)).stat().st_size == 0:
                return None
        except OSError:
            return None
    if (out_dir / filename_tmpl.format(start_index + n)).exists():
        return None
    return n


def _temp_name(out_dir: Path, kind: str) -> Path:
    return out_dir.with_name(f".{out_dir.name}.{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}{kind}")


def _set_aside(folder: Path) -> None:
    """Remove ``folder`` by first renaming it to a private name (a reader never sees it half removed)."""
    doomed = _temp_name(folder, ".old" + _PARTIAL)
    try:
        os.rename(folder, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def extract_frames(
    video_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    short_side: int | None = 256,
    quality: int = 90,
    backend: str = "pyav",
    filename_tmpl: str = DEFAULT_FRAME_TMPL,
    start_index: int = 1,
) -> int:
    """Decode every frame of a video into ``out_dir/img_00001.jpg`` ...

    Args:
        video_path: the video file.
        out_dir: the frame folder to create (skipped when :func:`complete_frame_count` proves it
            complete; any other folder there is replaced).
        short_side: resize so the short side has this length (``None`` or 0 keeps the size).
        quality: JPEG quality (1-95).
        backend: decoder (``"pyav"``, ``"decord"``, ``"torchcodec"`` or ``"auto"``); every reader
            returns frames as a player shows them (first frame's size, aspect ratio, rotation; see
            ``video_sparse.data.display``), so the folder gives the same clip as the video.
        filename_tmpl, start_index: frame file naming.

    Returns:
        The number of frames in the folder.

    Raises:
        VideoReadError: the video cannot be decoded (no folder is left behind).
        UnsafeOutputError: the frame folder or its parent is a symbolic link.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    done = complete_frame_count(out_dir, filename_tmpl, start_index)
    if done is not None and not out_dir.is_symlink():
        return done
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if not Path(video_path).is_file():
        raise VideoReadError(f"{video_path}: video file not found")  # before any folder is created
    ensure_dir(out_dir.parent)
    if os.path.lexists(out_dir):
        if out_dir.is_symlink() or not out_dir.is_dir():
            raise VideoReadError(f"{out_dir}: exists and is not a frame folder (a link or a file); remove it")
        logger.warning("%s: incomplete frame folder (no or wrong %s record); extracting it again", out_dir, RECORD)
    tmp = _temp_name(out_dir, _PARTIAL)
    tmp.mkdir()
    count = 0
    try:
        with open_video(video_path, backend) as reader:
            for count, frame in enumerate(reader.iter_frames(), 1):
                img = Image.fromarray(frame)
                if short_side:
                    w, h = img.size
                    scale = short_side / min(w, h)
                    if scale != 1:
                        img = img.resize(
                            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
                        )
                img.save(tmp / filename_tmpl.format(count - 1 + start_index), quality=quality)
        if count == 0:
            raise VideoReadError(f"{video_path}: no frames decoded")
        record = {"frames": count, "filename_tmpl": filename_tmpl, "start_index": start_index}
        write_text(tmp / RECORD, json.dumps(record))  # last: the folder's proof of completeness
        _commit(tmp, out_dir, filename_tmpl, start_index)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return count


def _commit(tmp: Path, out_dir: Path, filename_tmpl: str, start_index: int) -> None:
    """Rename the finished ``tmp`` to ``out_dir``; a complete ``out_dir`` written meanwhile by someone else is
    kept (the same frames), an incomplete one set aside first."""
    for _ in range(3):
        try:
            os.rename(tmp, out_dir)  # fails on a non-empty folder: never merges two folders
            return
        except OSError:
            if not os.path.lexists(out_dir):
                continue
            if complete_frame_count(out_dir, filename_tmpl, start_index) is not None:
                return
            _set_aside(out_dir)
    raise OSError(f"{out_dir}: cannot be put in place (it keeps changing)")


def remove_stale_partials(folders: set[Path]) -> int:
    """Remove temporary frame folders (``.<name>.*.partial``) in ``folders``, left by killed runs.

    Only safe while holding the output folder's lock (:data:`LOCK`). Returns how many were removed.
    """
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(_PARTIAL):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
    return removed


class _Job(NamedTuple):
    index: int
    video: str
    out_dir: str
    short_side: int | None
    quality: int
    backend: str
    filename_tmpl: str
    start_index: int


def _run_job(job: _Job) -> tuple[int, int | None, str | None, bool]:
    existed = complete_frame_count(job.out_dir, job.filename_tmpl, job.start_index) is not None
    try:
        n = extract_frames(
            job.video, job.out_dir, job.short_side, job.quality, job.backend, job.filename_tmpl, job.start_index
        )
    except VideoReadError as e:
        return job.index, None, str(e), False
    except Exception as e:  # keep the run going: any per-video failure is reported
        return job.index, None, f"{job.video}: {type(e).__name__}: {e}", False
    return job.index, n, None, existed


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare_frames`.

    Attributes:
        out_list: the frame-list file written.
        num_extracted: folders written in this run.
        num_skipped: folders that were already complete (proven by their record, see
            :func:`complete_frame_count`).
        failures: ``(video path, error)`` of videos that could not be extracted.
    """

    out_list: str
    num_extracted: int = 0
    num_skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def _entries_from_folder(video_root: Path, names: list[str] | None) -> list[tuple[str, int]]:
    if names is None:
        raise ValueError(
            "without a list file, a label map is needed: labels come from the parent "
            "folder name of each video (class-folder layout)"
        )
    index = {n: i for i, n in enumerate(names)}
    entries, unknown = [], set()
    for dirpath, _, files in os.walk(video_root):
        for name in sorted(files):
            if not name.lower().endswith(VIDEO_EXTENSIONS):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), video_root)
            cls = Path(rel).parent.name
            label = index.get(cls, index.get(cls.replace("_", " ")))
            if label is None:
                unknown.add(cls)
                continue
            entries.append((rel, label))
    if unknown:
        logger.warning(
            "videos in %d folders not named after a class were ignored: %s", len(unknown), sorted(unknown)[:10]
        )
    return sorted(entries)


def prepare_frames(
    video_root: str | os.PathLike,
    out_root: str | os.PathLike,
    out_list: str | os.PathLike,
    list_file: str | os.PathLike | None = None,
    label_map: LabelMapLike = None,
    short_side: int | None = 256,
    quality: int = 90,
    workers: int = 4,
    backend: str = "pyav",
    failures_file: str | os.PathLike | None = None,
    filename_tmpl: str = DEFAULT_FRAME_TMPL,
    start_index: int = 1,
    progress: bool = True,
) -> PrepareReport:
    """Extract the frames of many videos in parallel and write the frame list.

    Args:
        video_root: folder of the videos.
        out_root: folder of the frame folders (``out_root/<video path without extension>/``).
        out_list: frame-list file to write (``folder NUM_FRAMES LABEL``, folders relative to
            ``out_root``, in input order, failed videos left out).
        list_file: video list (``path LABEL``) naming the videos; without it every video under
            ``video_root`` is taken and labelled by its parent folder name through ``label_map``.
        label_map: class names (needed without ``list_file``, or for name labels in it).
        short_side, quality: resize and JPEG quality (see :func:`extract_frames`).
        workers: worker processes (0: in this process).
        backend: decoder for extraction.
        failures_file: where to write ``path<TAB>error`` lines (default ``<out_list>.failures.txt``;
            written only when something failed).
        filename_tmpl, start_index: frame file naming.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`PrepareReport`.

    Raises:
        UnsafePathError: an entry's frame folder would resolve outside ``out_root`` (``../x.mp4``,
            an absolute path, a symbolic link leading out); checked for every entry, naming
            ``list_file:line``, before anything is written.
        RunLockedError: another live run writes into ``out_root`` (it holds ``out_root/``:data:`LOCK`).
    """
    video_root, out_root = Path(video_root), Path(out_root)
    if not video_root.is_dir():
        raise FileNotFoundError(f"video folder not found: {video_root}")
    names = load_label_map(label_map)
    if list_file is not None:
        records, _ = parse_list_file(list_file, "video", names)
        entries = [(r.path, r.label) for r in records]
        where = [f"{list_file}:{r.lineno}" for r in records]
    else:
        entries = _entries_from_folder(video_root, names)
        where = [str(video_root / rel) for rel, _ in entries]
    jobs, refused, folders = [], [], []
    for i, (rel, _) in enumerate(entries):
        folder = str(Path(rel).with_suffix("")) if Path(rel).suffix.lower() in VIDEO_EXTENSIONS else rel
        try:  # the list decides where frames are written: keep every folder inside out_root
            out_dir = resolve_inside(out_root, folder, where[i])
        except UnsafePathError as e:
            refused.append(str(e))
            continue
        folders.append(out_dir.relative_to(os.path.realpath(out_root)).as_posix())
        jobs.append(
            _Job(
                i, str(video_root / rel), str(out_dir), short_side or None, quality, backend, filename_tmpl, start_index
            )
        )
    if refused:
        raise UnsafePathError(
            f"{len(refused)} list entries would write outside --out {out_root}; nothing was "
            f"written: " + "; ".join(refused[:5])
        )
    from video_sparse.engine.run_lock import RunLock

    with RunLock(out_root, name=LOCK):
        return _extract_all(jobs, entries, folders, out_list, failures_file, workers, backend, progress)


def _extract_all(
    jobs: list[_Job],
    entries: list[tuple[str, int]],
    folders: list[str],
    out_list: str | os.PathLike,
    failures_file: str | os.PathLike | None,
    workers: int,
    backend: str,
    progress: bool,
) -> PrepareReport:
    """The extraction of :func:`prepare_frames`, run while holding the output folder's lock."""
    from tqdm import tqdm

    stale = remove_stale_partials({Path(job.out_dir).parent for job in jobs})
    if stale:
        logger.info("removed %d temporary frame folders left by interrupted runs", stale)
    counts: dict[int, int] = {}
    report = PrepareReport(out_list=str(out_list))
    bar = tqdm(total=len(jobs), desc="extracting frames", unit="video", disable=not progress)
    if workers > 0 and len(jobs) > 1:
        ctx = multiprocessing.get_context(default_multiprocessing_context(backend))
        with ctx.Pool(min(workers, len(jobs))) as pool:
            results = list(_track(pool.imap_unordered(_run_job, jobs, chunksize=1), bar))
    else:
        results = list(_track(map(_run_job, jobs), bar))
    bar.close()
    position = {job.index: k for k, job in enumerate(jobs)}
    for index, n, error, existed in results:
        if error is not None:
            report.failures.append((jobs[position[index]].video, error))
        else:
            counts[index] = n
            if existed:
                report.num_skipped += 1
            else:
                report.num_extracted += 1
    rows = [(folders[k], counts[job.index], entries[job.index][1]) for k, job in enumerate(jobs) if job.index in counts]
    write_list_file(out_list, rows)
    if report.failures:
        failures_file = Path(failures_file or f"{out_list}.failures.txt")
        write_text(failures_file, "".join(f"{p}\t{e}\n" for p, e in sorted(report.failures)))
        logger.warning("%d videos could not be extracted; see %s", len(report.failures), failures_file)
    logger.info(
        "frames: %d extracted, %d already complete, %d failed; list %s",
        report.num_extracted,
        report.num_skipped,
        len(report.failures),
        out_list,
    )
    return report


def _track(results, bar):
    for r in results:
        bar.update(1)
        yield r
