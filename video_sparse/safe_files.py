"""Writing into output folders without following symbolic links planted there.

Anyone who can write into an output folder (a shared ``outputs/``, a copied run) could plant
``train.log -> ~/.bashrc`` or ``checkpoints -> /elsewhere``; a plain ``open(path, "w")`` or
``mkdir(exist_ok=True)`` would then write outside the folder. Every file the project writes goes
through one of these primitives instead:

* :func:`atomic_write` (also exported by :mod:`video_sparse.checkpoint.io`): a new temporary file created with
  ``O_EXCL`` next to the target, then ``os.replace`` onto it. The rename replaces a link itself,
  never its target, and refuses a linked parent folder (:func:`ensure_dir`).
* :func:`write_text`, :func:`write_bytes`, :func:`write_with`, :func:`save_image`: the same for text,
  bytes, writers that take a binary file object (``savefig``, ``np.savez``, ``torch.save``) and Pillow.
* :func:`open_append`: a log opened with ``O_NOFOLLOW``: a link at its name is refused.
* :func:`ensure_dir`: creates a folder and refuses one that is a symbolic link.
* :func:`refuse_links_inside`: a whole output folder checked before a run writes into it.

A refusal is an :class:`UnsafeOutputError`, one line naming the link and where it points. Folders
*above* an output folder may be links (``outputs -> /scratch/outputs`` on a cluster); the output folder
itself and everything inside it may not.

Only the standard library is imported here, so every layer may use it.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from .errors import ConfigError


class UnsafeOutputError(ConfigError):
    """A path the project was about to write through is a symbolic link (or not a plain file / folder)."""


def _link_error(path: Path) -> UnsafeOutputError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return UnsafeOutputError(
        f"{path} is a symbolic link (to {target}); refusing to write through it: "
        f"remove the link or choose another output folder"
    )


def refuse_link(path: str | os.PathLike) -> None:
    """Raise :class:`UnsafeOutputError` when ``path`` is a symbolic link (a missing path is fine)."""
    if os.path.islink(path):
        raise _link_error(Path(path))


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (and missing parents) and make sure it is not a symbolic link.

    Raises:
        UnsafeOutputError: ``path`` is a symbolic link, or exists and is not a folder.
    """
    path = Path(path)
    refuse_link(path)
    path.mkdir(parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):  # planted between the check and the mkdir
        raise _link_error(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeOutputError(f"{path} exists and is not a folder")
    return path


def _create_sibling_temp(path: Path) -> tuple[int, Path]:
    """Create a new, uniquely named temporary file next to ``path``, mode 0o666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file, then move it onto ``path``; never leaves a partial file.

    The temporary file lives in the same folder (so the final ``os.replace`` is atomic), is flushed
    and fsynced before the rename, gets the permissions of a normally created file (0o666 less the
    umask), and is removed if anything fails, leaving an existing ``path`` untouched. Missing parent
    folders are created. A symbolic link at ``path`` is replaced, never written through; a parent
    folder that is a link is refused (:func:`ensure_dir`).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp = _create_sibling_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not possible on every platform / file system
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def write_with(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """``write(file)`` into a temporary file next to ``path``, then rename it onto ``path`` (atomic, no link
    followed; :func:`atomic_write`)."""
    return atomic_write(path, write)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically, never through a link."""
    return write_with(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically, never through a link."""
    return write_bytes(path, text.encode(encoding))


def save_image(image: Any, path: str | os.PathLike, **params: Any) -> Path:
    """``image.save`` (Pillow) through :func:`write_with`, the format taken from the file name's suffix.

    Raises:
        ValueError: Pillow knows no format for the suffix.
    """
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}")
    return write_with(path, lambda f: image.save(f, format=fmt, **params))


def open_append(path: str | os.PathLike, encoding: str = "utf-8") -> TextIO:
    """Open a log for appending (created if missing) without following a link at its name.

    Raises:
        UnsafeOutputError: ``path`` or its folder is a symbolic link, or ``path`` is not a plain file.
    """
    path = Path(path)
    ensure_dir(path.parent)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), 0o666)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(path):
            raise _link_error(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeOutputError(f"{path} is not a plain file; refusing to write to it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding=encoding)


def refuse_links_inside(folder: str | os.PathLike) -> None:
    """Check that ``folder`` and nothing inside it is a symbolic link (links are not followed while looking).

    Raises:
        UnsafeOutputError: naming the first link found.
    """
    folder = Path(folder)
    refuse_link(folder)
    if not folder.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(dirnames + filenames):
            refuse_link(Path(dirpath) / name)
