"""One reader for the text files users bring: list files, label maps, annotations, JSON.

Editors save the same content in several ways: UTF-8 with or without a byte-order mark (Notepad,
Excel's "CSV UTF-8"), UTF-16 with a byte-order mark (Excel's "Unicode text"), CRLF (Windows),
CR-only (old Mac) or LF line ends, trailing spaces. Every reader of user text in the project goes
through :func:`read_text`, so all of them decode a file the same way; bytes that are not text in
the detected encoding are an error naming the file and line, never a silent replacement.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any

_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class TextFileError(ValueError):
    """A text file that cannot be decoded or parsed; the message starts with ``path:line``."""


def decode_text(data: bytes, where: str = "<text>") -> str:
    """Decode file bytes as :func:`read_text` does (BOM-selected encoding, else UTF-8; newlines
    normalised to ``\\n``).

    Raises:
        TextFileError: bytes that are not valid in the encoding (message ``where:line: ...``).
    """
    encoding, start = "utf-8", 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, start = name, len(bom)
            break
    body = data[start:]
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as e:
        good = body[: e.start].decode(encoding, errors="replace")
        line = good.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
        bad = body[e.start : e.end].hex(" ")
        raise TextFileError(
            f"{where}:{line}: not {encoding.upper()} text (bytes {bad}); save the file as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: str | os.PathLike) -> str:
    """The text of a user's file, decoded as described in the module docstring.

    Returns:
        The text with ``\\n`` line ends and without a byte-order mark.

    Raises:
        FileNotFoundError: the file does not exist.
        TextFileError: undecodable bytes (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return decode_text(path.read_bytes(), str(path))


def read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """``(lineno, line)`` for every line of :func:`read_text`, 1-based, trailing whitespace removed
    (blank lines kept; no line after a final newline)."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(i, line.rstrip()) for i, line in enumerate(lines, 1)]


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file read by :func:`read_text`.

    Raises:
        FileNotFoundError: the file does not exist.
        TextFileError: undecodable bytes or invalid JSON (``path:line:column: invalid JSON (...)``).
    """
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TextFileError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None
