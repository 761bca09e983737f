"""Rank-aware logging to the console and ``train.log``, and TensorBoard scalars.

The log file is opened without following a symbolic link at its name and the TensorBoard folder must not
be a link (:mod:`video_sparse.safe_files`).
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from ..safe_files import ensure_dir, open_append

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _AppendHandler(logging.StreamHandler):
    """A log file handler whose file is opened with :func:`~video_sparse.safe_files.open_append`."""

    def close(self) -> None:
        try:
            self.flush()
            self.stream.close()
        finally:
            super().close()


def setup_logging(
    output_dir: str | Path | None, is_main: bool, level: int = logging.INFO, log_name: str = "train.log"
) -> None:
    """Rank 0 logs INFO to stdout and ``<output_dir>/<log_name>`` (stdout only when ``output_dir`` is None);
    other ranks log warnings only.

    Raises:
        UnsafeOutputError: the log file or ``output_dir`` is a symbolic link.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_video_sparse", False):
            root.removeHandler(handler)
            if isinstance(handler, _AppendHandler):
                handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if is_main and output_dir is not None:
        handlers.append(_AppendHandler(open_append(Path(output_dir) / log_name)))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        handler._video_sparse = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level if is_main else logging.WARNING)
    for noisy in ("DeepSpeed", "deepspeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*all_gather_into_tensor.*")


class MetricWriter:
    """TensorBoard scalars on rank 0 (off, with one warning, when tensorboard is not installed).

    Args:
        log_dir: event-file folder.
        enabled: False on the other ranks.
        purge_step: on a resume, the first step the resumed run logs: points at or after it that an
            interrupted run wrote after its last checkpoint are discarded by TensorBoard's readers, so
            the curves equal an uninterrupted run's (every scalar must use the same step axis).
    """

    def __init__(self, log_dir: str | Path, enabled: bool = True, purge_step: int | None = None) -> None:
        self._writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logging.getLogger(__name__).warning("tensorboard is not installed; no TensorBoard scalars")
            else:
                self._writer = SummaryWriter(str(ensure_dir(log_dir)), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


#: Files a run leaves for a person to read, in the order the closing line names them.
RESULT_FILES = {
    "results.json": "results",
    "video_scores.csv": "per-video scores",
    "view_scores.npz": "per-view logits",
    "adapter.pth": "adapters + head",
}


def outputs_line(output_dir: str | Path) -> str:
    """The closing line of a run: the folder and each result file in it, e.g. ``outputs written to
    /x/outputs/demo: results.json (results), video_scores.csv (per-video scores), ...``."""
    folder = Path(output_dir).resolve()
    found = [f"{name} ({what})" for name, what in RESULT_FILES.items() if (folder / name).is_file()]
    return f"outputs written to {folder}: {', '.join(found) if found else 'no result files'}"
