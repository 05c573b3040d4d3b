"""`batchline load` reading a file: records and line errors by line number, batches, keys."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from batchline.loader.reading import (
    FileFormat,
    LineError,
    SourceRecord,
    UnreadableFile,
    batches,
    csv_items,
    estimated_records,
    format_for,
    idempotency_key_base,
    ndjson_items,
    not_as_expected,
    read_items,
)


def test_ndjson_keeps_each_record_text_and_reports_bad_lines_by_number() -> None:
    data = b'\xef\xbb\xbf{"a": 1}\n\n  {"b": 2}  \r\n{"c": \n[3]\n'

    items = list(ndjson_items(io.BytesIO(data)))

    assert items[0] == SourceRecord(1, b'{"a": 1}')
    assert items[1] == SourceRecord(3, b'{"b": 2}')
    assert isinstance(items[2], LineError)
    assert (items[2].line, items[2].code) == (4, "invalid_json")
    assert items[2].message.startswith("not valid JSON")
    # Not an object, but JSON: the server's per-record validation answers for it.
    assert items[3] == SourceRecord(5, b"[3]")


def test_csv_rows_become_records_with_the_duration_as_an_integer() -> None:
    data = (
        "coordinator_id, mentor_id,activity_type,activity_date,duration_minutes\r\n"
        "c1,m1,call,2026-03-28,30\r\n"
        "\r\n"
        'c1,"m2, the second",call,2026-03-28,ninety\r\n'
        "c1,m3,call,2026-03-28\r\n"
        'c1,"m4\nwith a newline",call,2026-03-28,\r\n'
        'c1,"m5"x,call,2026-03-28,5\r\n'
        "c1,m6,call,2026-03-28,-5\r\n"
    )

    items = list(csv_items(io.StringIO(data, newline="")))

    records = {i.line: orjson.loads(i.json) for i in items if isinstance(i, SourceRecord)}
    errors = {i.line: i for i in items if isinstance(i, LineError)}
    assert records[2] == {
        "coordinator_id": "c1",
        "mentor_id": "m1",
        "activity_type": "call",
        "activity_date": "2026-03-28",
        "duration_minutes": 30,
    }
    assert records[4]["mentor_id"] == "m2, the second"
    assert records[4]["duration_minutes"] == "ninety"
    assert records[6]["mentor_id"] == "m4\nwith a newline"
    assert records[6]["duration_minutes"] == ""
    assert records[9]["duration_minutes"] == "-5"
    assert sorted(records) == [2, 4, 6, 9]
    assert errors[5].code == "invalid_csv_row"
    assert errors[5].message == "4 columns where the header has 5"
    assert errors[8].code == "invalid_csv_row"
    assert sorted(errors) == [5, 8]


@pytest.mark.parametrize(
    ("header", "problem"),
    [("a,,b", "empty column name"), ("a,b,a", "names a more than once")],
)
def test_a_csv_header_that_cannot_name_fields_is_refused(header: str, problem: str) -> None:
    with pytest.raises(UnreadableFile, match=problem):
        list(csv_items(io.StringIO(f"{header}\n1,2,3\n")))


def test_batches_carry_their_records_and_the_line_errors_met_on_the_way() -> None:
    items = [
        SourceRecord(1, b"1"),
        LineError(2, "invalid_json", "x"),
        SourceRecord(3, b"3"),
        SourceRecord(4, b"4"),
        LineError(5, "invalid_json", "y"),
    ]

    found = list(batches(items, 2))

    assert [(b.number, [r.line for r in b.records]) for b in found] == [(1, [1, 3]), (2, [4])]
    assert [[e.line for e in b.line_errors] for b in found] == [[2], [5]]
    assert found[0].body() == b'{"activities":[1,3]}'
    assert (found[0].first_line, found[0].last_line) == (1, 3)


def test_only_line_errors_after_the_last_full_batch_make_a_batch_with_no_records() -> None:
    items = [SourceRecord(1, b"1"), LineError(2, "invalid_json", "x")]

    found = list(batches(items, 1))

    assert [len(b.records) for b in found] == [1, 0]
    assert [e.line for e in found[1].line_errors] == [2]


def test_files_are_read_lazily_and_counted_by_lines(tmp_path: Path) -> None:
    ndjson = tmp_path / "a.ndjson"
    ndjson.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3}')
    csv_file = tmp_path / "a.CSV"
    csv_file.write_text("x,y\n1,2\n3,4\n")

    reading = read_items(ndjson, FileFormat.NDJSON)
    assert next(reading) == SourceRecord(1, b'{"a": 1}')
    reading.close()
    assert [i.line for i in read_items(csv_file, FileFormat.CSV)] == [2, 3]
    assert estimated_records(ndjson, FileFormat.NDJSON) == 3
    assert estimated_records(csv_file, FileFormat.CSV) == 2
    assert format_for(csv_file) is FileFormat.CSV
    assert format_for(tmp_path / "b.jsonl") is FileFormat.NDJSON
    with pytest.raises(UnreadableFile, match="--format"):
        format_for(tmp_path / "b.txt")


def test_a_csv_row_that_is_not_utf8_fails_alone(tmp_path: Path) -> None:
    csv_file = tmp_path / "latin1.csv"
    csv_file.write_bytes(b"x,y\n1,caf\xe9\n3,4\n")

    items = list(read_items(csv_file, FileFormat.CSV))

    assert items == [
        LineError(2, "invalid_utf8", "not valid UTF-8"),
        SourceRecord(3, b'{"x":"3","y":"4"}'),
    ]


def test_idempotency_keys_follow_the_file_and_the_batching(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"{}\n")
    base = idempotency_key_base(path, FileFormat.NDJSON, 1000, "load-")

    assert base.startswith("load-")
    assert idempotency_key_base(path, FileFormat.NDJSON, 1000, "load-") == base
    assert idempotency_key_base(path, FileFormat.NDJSON, 500, "load-") != base
    assert idempotency_key_base(path, FileFormat.NDJSON, 1000, "again-").startswith("again-")
    path.write_bytes(b"{}\n{}\n")
    assert idempotency_key_base(path, FileFormat.NDJSON, 1000, "load-") != base


@pytest.mark.parametrize(
    ("content", "file_format", "looks_like"),
    [
        (b'[\n  {"a": 1},\n  {"a": 2}\n]\n', FileFormat.NDJSON, "one JSON array"),
        (b'\xef\xbb\xbf  [{"a": 1}]', FileFormat.NDJSON, "one JSON array"),
        (b'{"activities": [{"a": 1}]}\n', FileFormat.NDJSON, "a request body"),
        (b'{\n  "activities": [\n    {"a": 1}\n  ]\n}\n', FileFormat.NDJSON, "a request body"),
        (b'{\n  "a": 1\n}\n', FileFormat.NDJSON, "one JSON document over several lines"),
        (b'{"a": 1}\n', FileFormat.CSV, "it holds JSON"),
    ],
)
def test_a_file_of_another_shape_is_named_for_what_it_looks_like(
    tmp_path: Path, content: bytes, file_format: FileFormat, looks_like: str
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)

    problem = not_as_expected(path, file_format)

    assert problem is not None
    assert looks_like in problem


@pytest.mark.parametrize(
    ("content", "file_format"),
    [
        (b'{"a": 1}\n{"a": 2}\n', FileFormat.NDJSON),
        (b"", FileFormat.NDJSON),
        (b"{not json\n", FileFormat.NDJSON),
        (b"a,b\n1,2\n", FileFormat.CSV),
    ],
)
def test_ndjson_and_csv_pass_as_they_are(
    tmp_path: Path, content: bytes, file_format: FileFormat
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)

    assert not_as_expected(path, file_format) is None
