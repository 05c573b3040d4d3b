"""Sets of record indices as PostgreSQL ``int4multirange`` values: a chunk of a thousand
consecutive records is one range, and records that never arrived are ranges, whatever
count a message stated."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from asyncpg import Range


def index_ranges(indices: Sequence[int]) -> list[Range]:
    """``indices`` (ascending, distinct) as half-open ranges; one for consecutive ones."""
    if not indices:
        return []
    if indices[-1] - indices[0] + 1 == len(indices):
        return [Range(indices[0], indices[-1] + 1)]
    ranges = []
    start = previous = indices[0]
    for index in indices[1:]:
        if index != previous + 1:
            ranges.append(Range(start, previous + 1))
            start = index
        previous = index
    ranges.append(Range(start, previous + 1))
    return ranges


def contains(ranges: Iterable[Range], index: int) -> bool:
    return any(r.lower <= index < r.upper for r in ranges)


def size(ranges: Iterable[Range]) -> int:
    return sum(r.upper - r.lower for r in ranges)


def multirange_text(ranges: Iterable[Range]) -> str:
    """PostgreSQL's text form, for arrays of multiranges (asyncpg encodes one, not arrays)."""
    return "{" + ",".join(f"[{r.lower},{r.upper})" for r in ranges) + "}"
