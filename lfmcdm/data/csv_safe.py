"""Reading a CSV file that may be hostile: bytes -> text -> rows, with true line numbers.

Why not ``pandas.read_csv``: one extra field aborts the whole file (ParserError), one non-UTF-8
byte aborts it too (UnicodeDecodeError), and its row index is not a line number once a blank line
or a quoted multi-line field appears. Here every problem is tied to the line it starts on, and a
bad row is reported instead of costing the others:

- the file is ``stat``-ed first: a regular file no larger than the caller's bound (a FIFO would
  block ``open`` forever, a huge file would exhaust memory);
- a UTF-8 byte-order mark is accepted; bytes that are not UTF-8 are kept as surrogate escapes so
  that only the row holding them is refused, with the byte offset of the first bad byte;
- a row with the wrong number of fields is refused with the line it starts on.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" turns a bad byte into


class CsvFormatError(ValueError):
    """The file as a whole is unusable (not a regular file, too large, no header, broken quoting)."""


@dataclass(frozen=True)
class BadRow:
    """A row that could not be split into the header's fields, with why."""

    line: int
    reason: str
    first_field: str = ""


@dataclass
class CsvTable:
    """The header, the well-formed rows (``{column: text}`` plus the line each starts on) and the bad ones."""

    path: Path
    header: list[str]
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)


def check_regular_file(path: Path, max_bytes: int) -> os.stat_result:
    """``stat`` before ``open``: a regular file of bounded size, or a :class:`CsvFormatError` saying why not."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise CsvFormatError(f"{path}: cannot stat ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise CsvFormatError(f"{path}: not a regular file ({_kind(info.st_mode)})")
    if info.st_size > max_bytes:
        raise CsvFormatError(f"{path}: {info.st_size} bytes, more than the limit of {max_bytes} bytes")
    return info


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a plain file"


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, after the stat checks; opened non-blocking so a FIFO swapped in later cannot hang us."""
    check_regular_file(path, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise CsvFormatError(f"{path}: not a regular file")
            return f.read(max_bytes + 1)
    except OSError as err:
        raise CsvFormatError(f"{path}: cannot read ({err.strerror or err})") from None


def decode(data: bytes) -> str:
    """UTF-8 (a leading BOM dropped); undecodable bytes become surrogate escapes, refused per row later."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    return data.decode("utf-8", errors="surrogateescape")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogateescape"))


class _LineTracker:
    """Feeds ``csv.reader`` line by line and remembers where each line starts, in the text and in the file.

    Byte offsets are accumulated line by line (linear in the file) so that reporting a bad byte in
    each of 10^5 rows stays cheap.
    """

    def __init__(self, text: str, bom: bool) -> None:
        self.text = text
        self.starts: list[int] = []  # character index of each line's start
        self.byte_starts: list[int] = []  # file offset of each line's start
        self._lines = io.StringIO(text, newline="")
        self._pos, self._byte = 0, len(codecs.BOM_UTF8) if bom else 0

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.starts.append(self._pos)
            self.byte_starts.append(self._byte)
            self._pos += len(line)
            self._byte += _utf8_len(line)
            yield line

    def first_bad_byte(self, line: int) -> int:
        """File offset of the first undecodable byte at or after the start of ``line`` (1-based)."""
        start = self.starts[line - 1]
        at = _UNDECODABLE.search(self.text, start)
        return self.byte_starts[line - 1] + _utf8_len(self.text[start:at.start()]) if at else -1


def parse(path: Path, data: bytes, expected: list[str]) -> CsvTable:
    """Split ``data`` (the bytes of ``path``) into rows; the header must hold every ``expected`` column."""
    lines = _LineTracker(decode(data), bom=data.startswith(codecs.BOM_UTF8))
    reader = csv.reader(lines, strict=False)
    table: CsvTable | None = None
    previous = 0
    try:
        for fields in reader:
            start, previous = previous + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue  # blank line (it still counts for the line numbers that follow)
            if table is None:
                table = CsvTable(path, _header(path, start, fields, expected, lines))
                continue
            _add_row(table, start, previous, fields, lines)
    except csv.Error as err:
        raise CsvFormatError(f"{path}:{previous + 1}: unreadable CSV ({err})") from None
    if table is None:
        raise CsvFormatError(f"{path}:1: empty file; expected a header with columns {', '.join(expected)}")
    return table


def _header(path: Path, line: int, fields: list[str], expected: list[str], lines: _LineTracker) -> list[str]:
    if any(_UNDECODABLE.search(f) for f in fields):
        raise CsvFormatError(f"{path}:{line}: header is not UTF-8 text "
                             f"(first bad byte at offset {lines.first_bad_byte(line)})")
    header = [h.strip() for h in fields]
    missing = [c for c in expected if c not in header]
    if missing:
        raise CsvFormatError(f"{path}:{line}: malformed header {header}; missing column(s) {', '.join(missing)}; "
                             f"expected columns: {', '.join(expected)}")
    return header


def _add_row(table: CsvTable, line: int, last: int, fields: list[str], lines: _LineTracker) -> None:
    first = fields[0].strip() if fields else ""
    if any(_UNDECODABLE.search(f) for f in fields):
        table.bad.append(BadRow(line, f"not UTF-8 text (first bad byte at offset {lines.first_bad_byte(line)})",
                                _UNDECODABLE.sub("?", first)))
        return
    if len(fields) != len(table.header):
        spans = f"; the row spans lines {line}-{last} (an unclosed quote?)" if last > line else ""
        table.bad.append(BadRow(line, f"{len(fields)} fields, expected {len(table.header)} "
                                      f"({', '.join(table.header)}){spans}", first))
        return
    table.rows.append((line, {name: value.strip() for name, value in zip(table.header, fields)}))
