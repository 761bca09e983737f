"""Frame extraction: video files -> folders of JPEG frames plus a frame-list file.

A folder is written under a temporary name and renamed when every frame is on disk, so an
existing folder is complete and a rerun skips it (resumable). Videos that cannot be decoded are
reported (returned and written to a failures file) without stopping the run. Work is spread over
worker processes (``spawn``-started when decoding with decord, the platform default otherwise).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
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
    count_frames,
    default_multiprocessing_context,
    open_video,
)

logger = logging.getLogger(__name__)


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
        out_dir: the frame folder to create (skipped when it already exists: complete by construction).
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
    """
    from PIL import Image

    out_dir = Path(out_dir)
    if out_dir.is_dir():
        return count_frames(out_dir, filename_tmpl)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if not Path(video_path).is_file():
        raise VideoReadError(f"{video_path}: video file not found")  # before any folder is created
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
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
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return count


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
    existed = Path(job.out_dir).is_dir()
    try:
        n = extract_frames(
            job.video, job.out_dir, job.short_side, job.quality, job.backend, job.filename_tmpl, job.start_index
        )
    except VideoReadError as e:
        return job.index, None, str(e), False
    except Exception as e:  # keep the run going: any per-video failure is reported
        return job.index, None, f"{job.video}: {type(e).__name__}: {e}", False
    if n == 0:
        return job.index, None, f"{job.out_dir}: existing folder holds no frames", existed
    return job.index, n, None, existed


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare_frames`.

    Attributes:
        out_list: the frame-list file written.
        num_extracted: folders written in this run.
        num_skipped: folders that were already complete.
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
    """
    from tqdm import tqdm

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
        failures_file.write_text("".join(f"{p}\t{e}\n" for p, e in sorted(report.failures)), encoding="utf-8")
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
