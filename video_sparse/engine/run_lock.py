"""One run per output folder: an exclusive lock file naming its holder.

``<output_dir>/run.lock`` holds the holder's pid, host and start time (JSON) and an exclusive
``fcntl.flock`` for as long as the run lives. The kernel drops the flock when the process ends,
however it ends, so a lock file left by a dead run (killed, crashed) is detected as stale and taken
over with a warning naming the dead holder; a second live run is refused with a :class:`RunLockedError`
naming the holder. Where ``flock`` is not supported (some network file systems), the file's pid is
checked instead: on the same host a pid that no longer runs marks a stale lock.

The lock file is opened with ``O_NOFOLLOW`` in a folder that must not be a symbolic link, and
:func:`lock_run_folder` then checks that nothing inside the run folder is a link
(:mod:`video_sparse.safe_files`), so a planted ``run.lock``, ``train.log`` or ``checkpoints`` link is
refused before the run writes anything.

Only :func:`lock_run_folder` imports from the package (lazily), so the module loads cheaply on its own.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Self

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


class RunLockedError(RuntimeError):
    """Another live run holds the output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (started {when}: {holder.get('cmd', '?')})"


def _link_error(path: Path) -> Exception:
    """The package's ``UnsafeOutputError`` where the package is importable, else a plain ``OSError``."""
    message = (
        f"{path} is a symbolic link (to {os.readlink(path)}); refusing to write through it: "
        f"remove the link or choose another output folder"
    )
    try:
        from ..safe_files import UnsafeOutputError
    except ImportError:  # loaded on its own
        return OSError(errno.ELOOP, message)
    return UnsafeOutputError(message)


class RunLock:
    """Exclusive lock on an output folder; use as a context manager or call :meth:`acquire`/:meth:`release`.

    Args:
        folder: the run's output folder (created if missing).
        name: the lock file's name in ``folder``.
    """

    def __init__(self, folder: str | os.PathLike, name: str = LOCK_NAME) -> None:
        self.path = Path(folder) / name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def read_holder(self) -> dict[str, Any]:
        """What the lock file says about its holder (``{}`` when missing or unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> Self:
        """Take the lock.

        Raises:
            RunLockedError: a live run holds it; the message names that run's pid, host and command.
        """
        if self._fd is not None:
            return self
        folder = self.path.parent
        if folder.is_symlink():
            raise _link_error(folder)
        folder.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(10):
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as err:
                if err.errno == errno.ELOOP or self.path.is_symlink():
                    raise _link_error(self.path) from None
                raise
            try:
                locked = self._try_flock(fd)
            except BaseException:
                os.close(fd)
                raise
            if not locked:
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent} is in use by another run: {_describe(self.read_holder())}; "
                    f"wait for it to end or choose another output_dir"
                )
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:  # the holder released (and removed) the file between our open and flock
                os.close(fd)
                continue
            self._take(fd)
            return self
        raise RunLockedError(f"could not lock {self.path}: the lock file keeps changing")

    def _try_flock(self, fd: int) -> bool:
        """True when this process now holds the lock on ``fd``."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                log.warning("%s: file locks not supported here (%s); checking the holder's pid instead", self.path, err)
        holder = self.read_holder()
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return True
        return holder.get("host") == socket.gethostname() and not _pid_alive(pid)

    def _take(self, fd: int) -> None:
        previous = self.read_holder()
        if previous.get("pid") not in (None, os.getpid()):
            log.warning("%s: taking over a stale lock of %s, which no longer runs", self.path, _describe(previous))
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "cmd": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_folder(folder: str | os.PathLike, is_main: bool) -> RunLock | None:
    """Rank 0 locks ``folder`` and checks that nothing in it is a symbolic link; every rank raises when
    that failed. Call it before anything is written into ``folder``.

    Returns:
        The held lock on rank 0, None on the other ranks.

    Raises:
        RunLockedError: another live run holds ``folder``.
        UnsafeOutputError: ``folder``, or something inside it, is a symbolic link (named).
    """
    from ..safe_files import UnsafeOutputError, refuse_links_inside
    from .distributed import broadcast_object

    lock, error = None, None
    if is_main:
        try:
            lock = RunLock(folder).acquire()
            refuse_links_inside(folder)
        except (RunLockedError, UnsafeOutputError) as err:
            if lock is not None:
                lock.release()
                lock = None
            error = (type(err).__name__, str(err))
    error = broadcast_object(error)
    if error:
        raise (UnsafeOutputError if error[0] == "UnsafeOutputError" else RunLockedError)(error[1])
    return lock
