"""Reading an NDJSON or CSV file as activity records, one line (or row) at a time.

Nothing here holds more than one batch: records are produced lazily from the open file and
each keeps its JSON text, which goes into the request body unchanged.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import orjson

_EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv"}
_UTF8_BOM = b"\xef\xbb\xbf"
# How much of the file's start tells what it holds; a whole file up to the second bound is
# read to tell one pretty-printed JSON document from NDJSON.
_SNIFF_BYTES = 64 * 1024
_WHOLE_DOCUMENT_BYTES = 64 * 1024 * 1024
# CSV cells are text; this field is an integer on the server, which does not coerce.
_INTEGER_FIELDS = frozenset({"duration_minutes"})


class FileFormat(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


class UnreadableFile(Exception):
    """The file as a whole cannot be read as records (for example a bad CSV header)."""


def format_for(path: Path) -> FileFormat:
    """The format its extension names; ``--format`` is needed for anything else."""
    known = _EXTENSIONS.get(path.suffix.lower())
    if known is None:
        raise UnreadableFile(
            f"cannot tell the format of {path.name} from its extension; "
            "pass --format ndjson or --format csv"
        )
    return FileFormat(known)


EXPECTED = {
    "ndjson": 'NDJSON: one activity per line, e.g. {"coordinator_id": "coord-42", "mentor_id":'
    ' "mentor-17", "activity_type": "group_workshop", "activity_date": "2026-03-28",'
    ' "duration_minutes": 120}',
    "csv": "CSV: a header row naming the fields (coordinator_id,mentor_id,activity_type,"
    "activity_date,duration_minutes), then one activity per row",
}


def not_as_expected(path: Path, file_format: FileFormat) -> str | None:
    """What the file looks like instead, when its start shows it is not ``file_format``
    (a JSON array, a POST body, a pretty-printed document, JSON named .csv); else None."""
    with path.open("rb") as binary:
        head = binary.read(_SNIFF_BYTES).removeprefix(_UTF8_BOM).lstrip()
    if not head:
        return None
    if file_format is FileFormat.CSV:
        if head[:1] in (b"[", b"{"):
            return "it holds JSON; for NDJSON (one activity per line) pass --format ndjson"
        return None
    if head[:1] == b"[":
        return (
            "it holds one JSON array (it starts with '['), not one activity per line;"
            f" convert it first, e.g. jq -c '.[]' {path.name} > activities.ndjson"
        )
    first_line = head.split(b"\n", 1)[0].strip()
    try:
        document = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        document = _whole_document(path) if first_line.startswith(b"{") else None
        if document is None:
            return None
        if not _is_post_body(document):
            return (
                "it holds one JSON document over several lines, not one activity per line;"
                f" convert it first, e.g. jq -c . {path.name} > activities.ndjson"
            )
    if _is_post_body(document):
        return (
            'it is a request body ({"activities": [...]}), not one activity per line;'
            f" convert it first, e.g. jq -c '.activities[]' {path.name} > activities.ndjson"
        )
    return None


def _is_post_body(document: object) -> bool:
    return isinstance(document, dict) and isinstance(document.get("activities"), list)


def _whole_document(path: Path) -> object:
    if path.stat().st_size > _WHOLE_DOCUMENT_BYTES:
        return None
    try:
        return orjson.loads(path.read_bytes().removeprefix(_UTF8_BOM))
    except orjson.JSONDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class SourceRecord:
    line: int
    json: bytes


@dataclass(frozen=True, slots=True)
class LineError:
    """A line (or CSV row) that is not a record; reported here, never sent."""

    line: int
    code: str
    message: str


ReadItem = SourceRecord | LineError


def ndjson_items(lines: Iterable[bytes]) -> Iterator[ReadItem]:
    """One record per non-blank line. Any JSON value is sent: the server validates records."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if number == 1:
            text = text.removeprefix(_UTF8_BOM)
        if not text:
            continue
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield LineError(number, "invalid_json", f"not valid JSON: {exc}")
            continue
        yield SourceRecord(number, text)


def csv_items(lines: Iterable[str]) -> Iterator[ReadItem]:
    """A header row naming the fields, then one record per row (blank rows skipped).

    Cells stay text except an all-digits ``duration_minutes``, which becomes an integer;
    anything else wrong with a value is left for the server's per-record validation.
    """
    reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield LineError(first_line, "invalid_csv_row", f"not a valid CSV row: {exc}")
            continue
        if not row:
            continue
        if header is None:
            header = _header(row, first_line)
            continue
        if len(row) != len(header):
            yield LineError(
                first_line,
                "invalid_csv_row",
                f"{len(row)} columns where the header has {len(header)}",
            )
            continue
        if not _valid_utf8(row):
            yield LineError(first_line, "invalid_utf8", "not valid UTF-8")
            continue
        record = {name: _cell(name, value) for name, value in zip(header, row, strict=True)}
        yield SourceRecord(first_line, orjson.dumps(record))


def _valid_utf8(row: list[str]) -> bool:
    # The file is read with surrogateescape, which keeps a bad byte as a lone surrogate
    # instead of ending the whole file there; such text does not encode back.
    try:
        "".join(row).encode()
    except UnicodeEncodeError:
        return False
    return True


def _header(row: list[str], line: int) -> list[str]:
    names = [name.strip() for name in row]
    if any(not name for name in names):
        raise UnreadableFile(f"line {line}: the CSV header has an empty column name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UnreadableFile(
            f"line {line}: the CSV header names {', '.join(repeated)} more than once"
        )
    return names


def _cell(name: str, value: str) -> str | int:
    if name in _INTEGER_FIELDS and value.isascii() and value.isdigit():
        return int(value)
    return value


def read_items(path: Path, file_format: FileFormat) -> Iterator[ReadItem]:
    """The file's records and line errors, streamed; the file is closed when this ends."""
    if file_format is FileFormat.NDJSON:
        with path.open("rb") as binary:
            yield from ndjson_items(binary)
    else:
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as text:
            yield from csv_items(text)


@dataclass(frozen=True, slots=True)
class Batch:
    """Up to ``batch_size`` records, and the line errors met while reading them."""

    number: int
    records: list[SourceRecord]
    line_errors: list[LineError]

    @property
    def first_line(self) -> int:
        return self.records[0].line

    @property
    def last_line(self) -> int:
        return self.records[-1].line

    def body(self) -> bytes:
        """The POST body; the same bytes every run, as the server's idempotency check needs."""
        return b'{"activities":[' + b",".join(r.json for r in self.records) + b"]}"


def batches(items: Iterable[ReadItem], batch_size: int) -> Generator[Batch, None, None]:
    """Batches numbered from 1; the last may hold only line errors (and is not sent)."""
    records: list[SourceRecord] = []
    errors: list[LineError] = []
    number = 0
    for item in items:
        if isinstance(item, LineError):
            errors.append(item)
            continue
        records.append(item)
        if len(records) == batch_size:
            number += 1
            yield Batch(number, records, errors)
            records, errors = [], []
    if records or errors:
        yield Batch(number + 1, records, errors)


def idempotency_key_base(path: Path, file_format: FileFormat, batch_size: int, prefix: str) -> str:
    """Batch N of this file is sent as ``<base>N`` on every run.

    The same file (path and size), read the same way into batches of the same size, gives
    the same keys, so a re-run after a crash is answered from the earlier requests instead
    of inserting again.
    """
    identity = f"{path.resolve()}\0{path.stat().st_size}\0{file_format}\0{batch_size}"
    return f"{prefix}{hashlib.sha256(identity.encode()).hexdigest()[:32]}-"


def estimated_records(path: Path, file_format: FileFormat) -> int:
    """Lines in the file (less the CSV header): the progress bar's total, read fast in blocks."""
    lines = 0
    last = b"\n"
    with path.open("rb") as binary:
        while block := binary.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    if file_format is FileFormat.CSV:
        lines -= 1
    return max(lines, 0)
