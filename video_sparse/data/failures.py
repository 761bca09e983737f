"""The one policy for unreadable samples, shared by the image and the video datasets.

- Training: the failure is logged and counted, and another sample (``replace(index)``) is loaded
  instead; the item's ``"skipped"`` field says how many were replaced to produce it. After
  ``max_tries`` unreadable samples in a row a :class:`RuntimeError` stops the run.
- Evaluation: nothing is substituted (that would corrupt the per-sample merge); the failure is
  logged and counted, and the item comes back as ``{"failed": True, "sample_index",
  "view_index", "path", "error"}`` so that the evaluation excludes it and reports the count.

Counts are per process: DataLoader workers hold their own copies of a dataset, so the loop reads
the items' ``"skipped"`` and ``"failed"`` fields, which travel with the batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class FailureCount:
    """Unreadable samples met by one dataset in this process.

    Attributes:
        events: every failed load, a sample met twice counting twice.
    """

    def __init__(self) -> None:
        self.events = 0
        self._ids: dict[str, None] = {}  # insertion-ordered set

    def add(self, sample_id: str) -> None:
        """Record one failed load of ``sample_id``."""
        self.events += 1
        self._ids.setdefault(str(sample_id), None)

    @property
    def count(self) -> int:
        """Distinct unreadable samples."""
        return len(self._ids)

    @property
    def sample_ids(self) -> list[str]:
        """Identifiers of the unreadable samples, in the order they were first met."""
        return list(self._ids)

    def __repr__(self) -> str:
        return f"FailureCount(count={self.count}, events={self.events})"


class Loaded(NamedTuple):
    """Outcome of :func:`load_sample`: ``value`` of sample ``sample_index`` after ``skipped``
    substitutions, or (evaluation only) ``value=None`` and the ``error`` text."""

    sample_index: int
    value: Any
    skipped: int
    error: str | None = None


def load_sample(
    load: Callable[[int], T],
    index: int,
    *,
    train: bool,
    errors: tuple[type[BaseException], ...],
    failures: FailureCount,
    sample_id: Callable[[int], str],
    replace: Callable[[int], int],
    max_tries: int,
    noun: str = "samples",
    describe: Callable[[BaseException], str] = lambda e: f"{type(e).__name__}: {e}",
) -> Loaded:
    """Load sample ``index`` under the substitution (training) or exclusion (evaluation) policy.

    Args:
        load: sample index -> loaded value; raises one of ``errors`` for an unreadable sample.
        index: the sample asked for.
        train: substitute (True) or report (False) an unreadable sample.
        errors: exception types that mean "this sample cannot be read"; others propagate.
        failures: the dataset's counter, updated once per failed load.
        sample_id: sample index -> identifier for logs and counts (relative path or image id).
        replace: failed sample index -> the sample to try next (training).
        max_tries: loads attempted in a row before giving up (training).
        noun: what a sample is, for the error message (``"videos"``, ``"samples"``).
        describe: the error text of a failed load (default ``"Type: message"``).

    Returns:
        A :class:`Loaded`; in evaluation ``value`` is None and ``error`` set when unreadable.

    Raises:
        RuntimeError: in training, ``max_tries`` unreadable samples in a row.
    """
    current, messages = index, []
    for skipped in range(max_tries):
        try:
            return Loaded(current, load(current), skipped)
        except errors as e:
            text = describe(e)
            failures.add(sample_id(current))
            if not train:
                logger.warning(
                    "cannot read %s (sample %d): %s; excluded from evaluation", sample_id(current), current, text
                )
                return Loaded(current, None, 0, text)
            messages.append(text)
            nxt = replace(current)
            logger.warning(
                "cannot read %s (sample %d): %s; substituting sample %d", sample_id(current), current, text, nxt
            )
            current = nxt
    raise RuntimeError(
        f"{max_tries} consecutive unreadable {noun} in a row, starting at sample {index} "
        f"({sample_id(index)}); last errors: " + " | ".join(messages[-3:])
    )


def failed_item(sample_index: int, view_index: int, path: str, error: str) -> dict[str, Any]:
    """The item of an unreadable evaluation sample (routed aside by ``collate_samples``)."""
    return {"failed": True, "sample_index": sample_index, "view_index": view_index, "path": path, "error": error}
