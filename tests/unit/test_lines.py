"""Splitting NDJSON streams into lines and copying chosen lines, whatever the chunking."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

from batchline.storage import InvalidKey, Line, LineReader, copy_lines, object_key


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _numbers(numbers: Iterable[int]) -> AsyncIterator[int]:
    for number in numbers:
        yield number


async def _lines(data: bytes, size: int, max_line_bytes: int = 100) -> list[Line]:
    return [line async for line in LineReader(max_line_bytes).lines(_chunks(data, size))]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
async def test_lines_come_out_whole_whatever_the_chunk_size(size: int) -> None:
    data = b'{"a": 1}\n\n[2]\n{"b": "x y"}'

    lines = await _lines(data, size)

    assert lines == [Line(1, b'{"a": 1}'), Line(2, b""), Line(3, b"[2]"), Line(4, b'{"b": "x y"}')]


@pytest.mark.parametrize("size", [1, 4, 1000])
async def test_a_line_over_the_limit_is_reported_without_its_bytes(size: int) -> None:
    data = b"short\n" + b"x" * 50 + b"\nafter\n" + b"y" * 11

    lines = await _lines(data, size, max_line_bytes=10)

    assert lines == [Line(1, b"short"), Line(2, None), Line(3, b"after"), Line(4, None)]


async def test_the_reader_is_lazy_and_holds_one_chunk_and_one_partial_line() -> None:
    data = b"".join(b'{"n": %d}\n' % n for n in range(20_000))
    reader = LineReader(max_line_bytes=64)
    lines = reader.lines(_chunks(data, 4096))

    first = await anext(lines)
    read_for_first = reader.bytes_read
    rest = [line async for line in lines]

    assert first == Line(1, b'{"n": 0}')
    assert read_for_first == 4096
    assert len(rest) == 19_999
    assert reader.bytes_read == len(data)
    assert reader.peak_buffered_bytes <= 4096 + 64


@pytest.mark.parametrize("size", [1, 3, 5, 1000])
async def test_copy_lines_copies_the_chosen_lines_byte_for_byte(size: int) -> None:
    data = b"one\r\ntwo\n\nfour \nfive"

    copied = b"".join(
        [piece async for piece in copy_lines(_chunks(data, size), _numbers([1, 3, 5]))]
    )

    assert copied == b"one\r\n\nfive\n"


async def test_copy_lines_with_nothing_chosen_copies_nothing() -> None:
    pieces = [piece async for piece in copy_lines(_chunks(b"a\nb\n", 1), _numbers([]))]
    assert pieces == []


def test_object_keys_drop_leading_slashes_and_refuse_escapes() -> None:
    assert object_key("/folder/file.ndjson") == "folder/file.ndjson"
    for bad in ("", "/", "dir/", "../x", "a/../b", "a//b", "./a", "a" * 256, "é" * 128):
        with pytest.raises(InvalidKey):
            object_key(bad)
    longest_name = "a" * 255
    assert object_key(f"d/{longest_name}") == f"d/{longest_name}"
    with pytest.raises(InvalidKey):
        object_key("/".join([longest_name] * 5))  # every part fits, the whole key does not
