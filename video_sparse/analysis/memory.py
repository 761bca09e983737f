"""Peak-memory meters: process RSS high-water mark on CPU, allocator peak on CUDA.

On CPU the figure is the resident set size high-water mark (``VmHWM`` in ``/proc/self/status``,
else ``resource.getrusage``), so it includes the Python runtime, the libraries and the weights, not
only the tensors of the measured call. :func:`reset_rss_peak` lowers the mark to the current RSS
(Linux ``clear_refs``), so the peak of one call can be read in a process that did other work before.
The C allocator keeps freed blocks for reuse, by amounts that depend on the order of earlier
allocations; :func:`return_freed_memory_at_once` turns that off so that the RSS follows the live
tensors. Both change the process, hence :mod:`video_sparse.analysis.benchmark` measures each
variant in a fresh one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from pathlib import Path

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_KIB = 1024.0


def _status_field(name: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` in MiB, or None where the file does not exist."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return float(line.split()[1]) / _KIB
    return None


def rss_mib() -> float | None:
    """Current resident set size of this process in MiB (None where unknown)."""
    return _status_field("VmRSS")


def rss_peak_mib() -> float:
    """Resident set size high-water mark of this process in MiB."""
    peak = _status_field("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (_KIB * _KIB) if sys.platform == "darwin" else maxrss / _KIB  # bytes on macOS, KiB else


def reset_rss_peak() -> bool:
    """Lower the RSS high-water mark to the current RSS; False where the system does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def return_freed_memory_at_once(threshold: int = 128 * 1024) -> bool:
    """Make glibc give freed blocks of ``threshold`` bytes or more back to the OS at once.

    By default glibc raises its mmap threshold (up to 32 MiB) after large blocks are freed and keeps
    later blocks of that size in its heap, so the RSS of a process stays above its live tensors by a
    varying amount. Fixing the thresholds makes the RSS high-water mark follow the tensors. Affects
    the whole process: call it in a process made for measuring. False where glibc is absent.
    """
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))


def reset_peak(device: torch.device) -> bool:
    """Start a peak measurement on ``device``; False when the earlier peak could not be cleared."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return True
    return reset_rss_peak()


def peak_mib(device: torch.device) -> float:
    """Peak since :func:`reset_peak`: ``max_memory_allocated`` on CUDA, RSS high-water mark on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / (_KIB * _KIB)
    return rss_peak_mib()


def current_mib(device: torch.device) -> float | None:
    """Memory in use now: allocated tensors on CUDA, RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / (_KIB * _KIB)
    return rss_mib()
