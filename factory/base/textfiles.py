"""Read a user's text file safely: UTF-8 (with or without a BOM) or UTF-16 with a BOM, in bounded memory.

Every way the file can be unreadable becomes one UserError naming the file, the byte offset where
there is one, and what to do. Lines are streamed; a line longer than the limit is reported, not held.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from factory.base.errors import UserError

MAX_LINE_CHARS = int(os.environ.get("FACTORY_MAX_LINE_CHARS", 16 * 1024 * 1024))
CHUNK = 1 << 20
SAVE_AS = "save it as UTF-8 (or UTF-16 with a byte-order mark)"

# Longest BOMs first: UTF-32 LE starts with the UTF-16 LE BOM.
_BOMS = [
    (codecs.BOM_UTF32_LE, None, "UTF-32 LE"), (codecs.BOM_UTF32_BE, None, "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8 with a BOM"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE with a BOM"), (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE with a BOM"),
]


@dataclass(frozen=True)
class LineTooLong:
    """A line over MAX_LINE_CHARS: skipped without being held in memory."""
    line: int
    chars: int

    def message(self) -> str:
        return (f"line {self.line} is {self.chars:,} characters long, over the {MAX_LINE_CHARS:,} limit "
                f"(FACTORY_MAX_LINE_CHARS); is it really one row?")


def open_binary(path: Path, what: str = "file") -> BinaryIO:
    """The file opened for reading, or a UserError that says why it cannot be."""
    try:
        if path.is_dir():
            raise UserError(f"{path}: is a directory, not a {what}; name the file inside it")
        f = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except PermissionError:
        raise UserError(f"{path}: cannot be read (permission denied); check the {what}'s permissions "
                        f"(chmod u+r) or its owner") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc}); check the {what}") from None
    return f


def sniff(head: bytes, path: Path) -> tuple[str, int, str | None]:
    """(codec, BOM length, a note for the data summary or None for plain UTF-8)."""
    for bom, codec, label in _BOMS:
        if head.startswith(bom):
            if codec is None:
                raise UserError(f"{path}: is {label} text, which is not accepted; {SAVE_AS}")
            return codec, len(bom), (None if codec == "utf-8" else f"decoded from {label}")
    return "utf-8", 0, None


def _undecodable(path: Path, codec: str, offset: int, bad: bytes) -> UserError:
    if codec == "utf-8":
        return UserError(f"{path}: is not UTF-8 text: byte offset {offset:,} ({bad[:4].hex(' ')}) is not valid "
                         f"UTF-8; {SAVE_AS}")
    return UserError(f"{path}: is not valid {codec.upper()} text at byte offset {offset:,}; {SAVE_AS}")


def _nul(path: Path, offset: int) -> UserError:
    return UserError(f"{path}: holds a NUL byte at byte offset {offset:,}: a binary file, or UTF-16 without a "
                     f"byte-order mark; {SAVE_AS}")


class Decoder:
    """Bytes in, text out, with absolute byte offsets in its errors."""

    def __init__(self, path: Path, codec: str, start: int):
        self.path, self.codec, self.fed = path, codec, start
        self._dec = codecs.getincrementaldecoder(codec)("strict")

    def decode(self, raw: bytes, final: bool = False) -> str:
        base = self.fed - len(self._dec.buffer)  # offset of the first byte the decoder looks at now
        self.fed += len(raw)
        try:
            text = self._dec.decode(raw, final)
        except UnicodeDecodeError as exc:
            if final and exc.end >= len(exc.object):
                raise UserError(f"{self.path}: ends in the middle of a character at byte offset {base + exc.start:,} "
                                f"(a truncated file?); {SAVE_AS}") from None
            raise _undecodable(self.path, self.codec, base + exc.start, exc.object[exc.start:exc.end]) from None
        if "\0" in text:
            i = text.index("\0")
            raise _nul(self.path, base + len(text[:i].encode(self.codec)))
        return text


def read_text(path: Path, *, max_bytes: int, what: str = "file") -> tuple[str, str | None]:
    """The whole file as text and its encoding note; for files that must be read whole (JSON, YAML)."""
    with open_binary(path, what) as f:
        raw = f.read(max_bytes + 1)
    if not raw:
        raise UserError(f"{path}: is empty; it should hold a {what}")
    if len(raw) > max_bytes:
        raise UserError(f"{path}: is larger than {max_bytes:,} bytes, the most read whole for a {what}"
                        + ("; use JSON Lines (.jsonl), which is read row by row" if what == "JSON data file" else ""))
    codec, skip, note = sniff(raw[:4], path)
    return Decoder(path, codec, skip).decode(raw[skip:], final=True), note


def iter_lines(path: Path, what: str = "data file", notes: list | None = None) -> Iterator[str | LineTooLong]:
    """Lines with their endings, streamed; a line over MAX_LINE_CHARS comes as a LineTooLong.

    The encoding note (UTF-16 and the like) is appended to `notes` when given. An empty file is an error."""
    with open_binary(path, what) as raw_file:
        if path.name.endswith(".gz"):  # a gzipped file (the HH-RLHF release is .jsonl.gz): read through gzip
            yield from _gzip_lines(raw_file, path, what, notes)
            return
        yield from _lines(raw_file, path, what, notes)


def _gzip_lines(raw_file, path: Path, what: str, notes: list | None) -> Iterator[str | LineTooLong]:
    import gzip
    import zlib

    try:
        yield from _lines(gzip.GzipFile(fileobj=raw_file), path, what, notes)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: not a readable gzip file ({exc}); it may be truncated: download it again") from None


def _lines(f, path: Path, what: str, notes: list | None) -> Iterator[str | LineTooLong]:
    """The lines of an open binary file (see iter_lines)."""
    head = f.read(4)
    if not head:
        raise UserError(f"{path}: is empty; it should hold a {what}")
    codec, skip, note = sniff(head, path)
    if note and notes is not None:
        notes.append(note)
    decoder = Decoder(path, codec, skip)
    pending: list[str] = []
    size, line, over = 0, 0, False
    raw = head[skip:]
    while True:
        final = not raw
        text = decoder.decode(raw, final)
        start = 0
        while True:
            nl = text.find("\n", start)
            piece = text[start:] if nl < 0 else text[start:nl + 1]
            size += len(piece)
            if not over and size > MAX_LINE_CHARS:
                over, pending = True, []
            if not over:
                pending.append(piece)
            if nl < 0:
                break
            line += 1
            yield LineTooLong(line, size) if over else "".join(pending)
            pending, size, over = [], 0, False
            start = nl + 1
        if final:
            break
        raw = f.read(CHUNK)
    if size:
        line += 1
        yield LineTooLong(line, size) if over else "".join(pending)
