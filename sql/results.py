"""The projection: one row per chunk outcome, batch counts moved once per chunk, and the
per-record results that GET answers, assembled a page at a time.

A row keeps the outcome message as the inserter sent it. When a later attempt (a retry)
gives an index a new result, the index is added to the earlier row's ``superseded`` and
that row's counts drop; so each index has exactly one current result, and a page of
results reads only the rows that hold it.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypedDict

import asyncpg
import orjson
from asyncpg import Range

from batchline.vocabulary import BatchStatus, RecordError, RecordStatus, ResultFilter
from sql import ledger
from sql.indexranges import contains, index_ranges, multirange_text
from streams.events import ChunkOutcome, encode_outcome

# Rows of records that never arrived have this attempt: any real outcome replaces them.
LOST_ATTEMPT = -1


_Reader: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One record's current result, as the front doors show it."""

    index: int
    status: RecordStatus
    entity_id: str | None
    error: RecordError | None
    details: Any
    # The (attempt, first_index) of the chunk that gave it: its ledger row has the payload.
    chunk: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Projected:
    # Batches this completed: the caller tells waiting API instances (batches.notify_done).
    completed: list[str]
    # Outcomes past their batch (an index beyond its record count, an attempt not started):
    # not counted; the caller dead-letters them.
    refused: list[tuple[ChunkOutcome, str]]


# --- Projecting outcome messages ---------------------------------------------------------

_LOCK_BATCHES = """
SELECT id, record_count, attempt FROM batch
WHERE id = ANY($1::text[])
ORDER BY id
FOR NO KEY UPDATE
"""

# Rows already holding some of the incoming chunks' records: none for first outcomes that
# arrive in index order (the index on (batch_id, last_index) finds no row reaching them).
_OVERLAPPING = """
SELECT r.batch_id, r.attempt, r.first_index, r.last_index, r.covers, r.superseded,
       r.inserted_count, r.updated_count, r.failed_count, r.lost_reason IS NOT NULL AS lost,
       -- Of a row an incoming chunk may be a copy of, its message (to compare); of rows
       -- whose results it may replace, their failures (retries replace failed results).
       CASE WHEN bool_or(r.attempt = i.attempt AND r.first_index = i.first_index)
            THEN r.outcome END AS outcome,
       CASE WHEN bool_or(r.covers && i.covers) THEN r.failed END AS failed
FROM unnest($1::text[], $2::int[], $3::int[], $4::text[]::int4multirange[], $5::int[])
     AS i(batch_id, first_index, last_index, covers, attempt)
JOIN chunk_result r
  ON r.batch_id = i.batch_id AND r.last_index >= i.first_index
 AND r.first_index <= i.last_index
GROUP BY r.batch_id, r.attempt, r.first_index
"""

_OUTCOMES = """
SELECT r.batch_id, r.attempt, r.first_index, r.outcome
FROM unnest($1::text[], $2::int[], $3::int[]) AS k(batch_id, attempt, first_index)
JOIN chunk_result r USING (batch_id, attempt, first_index)
"""

_REPLACE_ROWS = """
UPDATE chunk_result r
SET last_index = s.last_index, covers = s.covers, superseded = s.superseded,
    inserted_count = s.inserted, updated_count = s.updated, failed_count = s.failed,
    outcome = s.outcome, failed = s.failed_entries
FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::text[]::int4multirange[],
            $6::text[]::int4multirange[], $7::int[], $8::int[], $9::int[], $10::bytea[],
            $11::bytea[])
     AS s(batch_id, attempt, first_index, last_index, covers, superseded, inserted, updated,
          failed, outcome, failed_entries)
WHERE (r.batch_id, r.attempt, r.first_index) = (s.batch_id, s.attempt, s.first_index)
"""

_SUPERSEDE = """
UPDATE chunk_result r
SET superseded = s.superseded, inserted_count = s.inserted, updated_count = s.updated,
    failed_count = s.failed
FROM unnest($1::text[], $2::int[], $3::int[], $4::text[]::int4multirange[], $5::int[], $6::int[],
            $7::int[]) AS s(batch_id, attempt, first_index, superseded, inserted, updated, failed)
WHERE (r.batch_id, r.attempt, r.first_index) = (s.batch_id, s.attempt, s.first_index)
"""

# New rows, and the batch counts moved once for the whole window (one round trip). A batch
# is complete when no record of its attempt awaits an outcome and none is lost.
_INSERT_AND_COUNT = """
WITH written AS (
    INSERT INTO chunk_result
        (batch_id, attempt, first_index, last_index, covers, superseded,
         inserted_count, updated_count, failed_count, outcome, failed)
    SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int[],
                         $5::text[]::int4multirange[], $6::text[]::int4multirange[],
                         $7::int[], $8::int[], $9::int[], $10::bytea[], $11::bytea[])
)
UPDATE batch b
SET inserted_count = b.inserted_count + d.inserted,
    updated_count = b.updated_count + d.updated,
    failed_count = b.failed_count + d.failed,
    lost_count = b.lost_count + d.lost,
    pending_count = greatest(b.pending_count - d.finished, 0),
    status = CASE WHEN b.pending_count - d.finished <= 0 AND b.lost_count + d.lost <= 0
                  THEN 'completed' ELSE b.status END,
    completed_at = CASE WHEN b.pending_count - d.finished <= 0 AND b.lost_count + d.lost <= 0
                         AND b.status <> 'completed'
                        THEN now() ELSE b.completed_at END,
    failure_reason = CASE WHEN b.pending_count - d.finished <= 0 AND b.lost_count + d.lost <= 0
                          THEN NULL ELSE b.failure_reason END,
    progressed_at = now()
FROM unnest($12::text[], $13::int[], $14::int[], $15::int[], $16::int[], $17::int[])
     AS d(batch_id, inserted, updated, failed, lost, finished)
WHERE b.id = d.batch_id
RETURNING b.id, b.status
"""


@dataclass
class _Row:
    """A projection row as this window sees it."""

    batch_id: str
    attempt: int
    first_index: int
    covers: list[Range]
    superseded: set[int]
    counts: Counter[str]
    # The outcome message, when this window needs it (None for a range that never arrived).
    outcome: bytes | None
    # The message's failed outcomes (JSON), when an incoming chunk shares records with it.
    failed: bytes | None = None
    lost: bool = False
    new: bool = False
    replaced: bool = False
    changed: bool = False
    _statuses: dict[int, str] | None = field(default=None, repr=False)
    _failures: set[int] | None = field(default=None, repr=False)

    def holds(self, index: int) -> bool:
        return index not in self.superseded and contains(self.covers, index)

    def known_status(self, index: int) -> str | None:
        """``inserted``, ``updated``, ``deleted``, ``failed``, or ``lost``; None when only
        the whole message can tell (it was not read)."""
        if self.lost:
            return "lost"
        if self._statuses is None and self.outcome is not None:
            self._statuses = {
                o["index"]: o["status"] for o in orjson.loads(self.outcome)["outcomes"]
            }
        if self._statuses is not None:
            return self._statuses[index]
        if self._failures is None:
            self._failures = {o["index"] for o in orjson.loads(self.failed or b"[]")}
        return RecordStatus.FAILED if index in self._failures else None

    def status_of(self, index: int) -> str:
        status = self.known_status(index)
        if status is None:
            raise LookupError(f"no status of record {index} of batch {self.batch_id} read")
        return status

    def supersede(self, index: int) -> str:
        status = self.status_of(index)
        self.superseded.add(index)
        self.counts[status] -= 1
        self.changed = True
        return status


def _tally_key(status: str) -> str:
    # Deletions count with inserts, as they always have: what the seed calls success.
    return "inserted" if status == RecordStatus.DELETED else status


async def project(
    conn: asyncpg.Connection, chunks: Sequence[tuple[ChunkOutcome, bytes]]
) -> Projected:
    """Apply chunk outcomes (model and the bytes it came in), inside the caller's transaction
    (which also tells waiting API instances of ``completed`` batches, at its commit).

    Applying one twice changes nothing; a later attempt's result replaces an earlier one's,
    never the reverse; the batch counts move by the difference.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("project() runs inside the caller's transaction")
    batch_ids = sorted({chunk.batch_id for chunk, _ in chunks})
    batches = {row["id"]: row for row in await conn.fetch(_LOCK_BATCHES, batch_ids)}
    refused: list[tuple[ChunkOutcome, str]] = []
    accepted: list[tuple[ChunkOutcome, bytes, list[int]]] = []
    for chunk, raw in chunks:
        batch = batches.get(chunk.batch_id)
        if batch is None:
            continue  # deleted meanwhile: nothing to count it in
        problem = _beyond(chunk, batch["record_count"], batch["attempt"])
        if problem is not None:
            refused.append((chunk, problem))
            continue
        accepted.append((chunk, raw, [o["index"] for o in chunk.outcomes]))
    if not accepted:
        return Projected([], refused)
    rows = await _overlapping_rows(conn, accepted)
    parts = [
        part
        for chunk, raw, indices in accepted
        for part in _local_parts(chunk, raw, indices, rows.values())
    ]
    if rows:
        await _read_needed_outcomes(conn, parts, rows)
    deltas: dict[str, Counter[str]] = {}
    for part, raw, indices in parts:
        _apply(part, raw, indices, rows, deltas.setdefault(part.batch_id, Counter()))
    completed = await _write_rows(conn, rows.values(), deltas)
    return Projected(completed, refused)


def _beyond(chunk: ChunkOutcome, record_count: int, batch_attempt: int) -> str | None:
    if chunk.last_index >= record_count:
        return (
            f"outcome for record {chunk.last_index} of batch {chunk.batch_id},"
            f" which has {record_count} records"
        )
    if chunk.attempt > batch_attempt:
        return (
            f"outcome of attempt {chunk.attempt} of batch {chunk.batch_id},"
            f" which is at attempt {batch_attempt}"
        )
    return None


async def _overlapping_rows(
    conn: asyncpg.Connection, chunks: Sequence[tuple[ChunkOutcome, bytes, list[int]]]
) -> dict[tuple[str, int, int], _Row]:
    found = await conn.fetch(
        _OVERLAPPING,
        [c.batch_id for c, _, _ in chunks],
        [indices[0] for _, _, indices in chunks],
        [indices[-1] for _, _, indices in chunks],
        [multirange_text(index_ranges(indices)) for _, _, indices in chunks],
        [c.attempt for c, _, _ in chunks],
    )
    return {
        (row["batch_id"], row["attempt"], row["first_index"]): _Row(
            row["batch_id"],
            row["attempt"],
            row["first_index"],
            row["covers"],
            {i for r in row["superseded"] for i in range(r.lower, r.upper)},
            Counter(
                inserted=row["inserted_count"],
                updated=row["updated_count"],
                failed=row["failed_count"],
            ),
            row["outcome"],
            failed=row["failed"],
            lost=row["lost"],
        )
        for row in found
    }


async def _read_needed_outcomes(
    conn: asyncpg.Connection,
    parts: Sequence[tuple[ChunkOutcome, bytes, list[int]]],
    rows: dict[tuple[str, int, int], _Row],
) -> None:
    """Read the messages of rows an incoming part may be a copy of, or whose successful
    results it replaces: rare (a retry replaces failed results, which the rows' failures
    tell), and a retry over a large batch must not read every message it touches."""
    needed = set()
    for part, _, indices in parts:
        for row in _near(rows.values(), part, indices):
            if row.lost or row.attempt > part.attempt or row.outcome is not None:
                continue
            same_key = (row.attempt, row.first_index) == (part.attempt, indices[0])
            if same_key or any(row.holds(i) and row.known_status(i) is None for i in indices):
                needed.add((row.batch_id, row.attempt, row.first_index))
    if not needed:
        return
    keys = sorted(needed)
    for found in await conn.fetch(
        _OUTCOMES, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]
    ):
        key = (found["batch_id"], found["attempt"], found["first_index"])
        rows[key].outcome = found["outcome"]


def _near(rows: Iterable[_Row], chunk: ChunkOutcome, indices: list[int]) -> list[_Row]:
    """Rows of the chunk's batch whose index ranges overlap the chunk's."""
    return [
        row
        for row in rows
        if row.batch_id == chunk.batch_id
        and any(r.lower <= indices[-1] and r.upper > indices[0] for r in row.covers)
    ]


def _local_parts(
    chunk: ChunkOutcome, raw: bytes, indices: list[int], rows: Iterable[_Row]
) -> list[tuple[ChunkOutcome, bytes, list[int]]]:
    """A retry's outcome as one part per earlier row it gives new results in.

    A retry chunk holds failed records from all over the batch; as one row its index range
    would overlap every row between them, and a page of results would have to read them all.
    Split along the earlier attempts' rows (which stay as they are), each part's range lies
    within one of them, or between them. The split is the same whenever the message comes.
    """
    if chunk.attempt == 0 or len(index_ranges(indices)) == 1:
        return [(chunk, raw, indices)]
    earlier = _merged(
        (r.first_index, r.covers[-1].upper - 1)
        for r in rows
        if r.batch_id == chunk.batch_id and r.attempt < chunk.attempt and r.covers
    )
    firsts = [first for first, _ in earlier]

    def place(index: int) -> tuple[int, bool]:
        at = bisect.bisect_right(firsts, index) - 1
        return at, at >= 0 and earlier[at][1] >= index

    groups = [
        list(group)
        for _, group in itertools.groupby(chunk.outcomes, key=lambda o: place(o["index"]))
    ]
    if len(groups) == 1:
        return [(chunk, raw, indices)]
    parts = []
    for group in groups:
        part_raw = encode_outcome(
            chunk.batch_id,
            chunk.entity,
            chunk.attempt,
            chunk.record_count,
            [(o["index"], o["status"], o["id"], o["error"], o["details"]) for o in group],
        )
        parts.append(
            (ChunkOutcome.model_validate_json(part_raw), part_raw, [o["index"] for o in group])
        )
    return parts


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive index ranges, overlapping ones joined, in order."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _apply(
    chunk: ChunkOutcome,
    raw: bytes,
    indices: list[int],
    rows: dict[tuple[str, int, int], _Row],
    delta: Counter[str],
) -> None:
    key = (chunk.batch_id, chunk.attempt, indices[0])
    previous = rows.get(key)
    if previous is not None and previous.outcome == raw:
        return  # projected before: a re-sent outcome
    row = _Row(
        chunk.batch_id,
        chunk.attempt,
        indices[0],
        index_ranges(indices),
        set(),
        Counter(),
        raw,
        # A dead-lettered chunk's outcome (processing_failed) is replaced by its replay's.
        new=previous is None or previous.new,
        replaced=previous is not None and not previous.new,
        _statuses={o["index"]: o["status"] for o in chunk.outcomes},
    )
    others = _near(rows.values(), chunk, indices)
    rows[key] = row
    if not others:  # first outcomes of these records: the usual case
        row.counts.update(_tally_key(o["status"]) for o in chunk.outcomes)
        delta.update(row.counts)
        delta["finished"] += len(indices)
        return
    for outcome in chunk.outcomes:
        index = outcome["index"]
        holder = next((other for other in others if other.holds(index)), None)
        if holder is not None and holder.attempt > chunk.attempt:
            row.superseded.add(index)  # a later attempt's result stands
            continue
        if holder is not None:
            delta[_tally_key(holder.supersede(index))] -= 1
        if holder is None or holder.attempt < chunk.attempt:
            delta["finished"] += 1  # of the same attempt, it was counted then
        status = _tally_key(outcome["status"])
        row.counts[status] += 1
        delta[status] += 1


async def _write_rows(
    conn: asyncpg.Connection, rows: Iterable[_Row], deltas: dict[str, Counter[str]]
) -> list[str]:
    """Write the window's new and changed rows and move the batch counts; returns the
    batches now completed."""
    new = [row for row in rows if row.new]
    replaced = [row for row in rows if row.replaced]
    changed = [row for row in rows if row.changed and not row.new and not row.replaced]
    if replaced:
        await conn.execute(_REPLACE_ROWS, *_row_columns(replaced))
    if changed:
        await conn.execute(
            _SUPERSEDE,
            [r.batch_id for r in changed],
            [r.attempt for r in changed],
            [r.first_index for r in changed],
            [multirange_text(index_ranges(sorted(r.superseded))) for r in changed],
            [r.counts["inserted"] for r in changed],
            [r.counts["updated"] for r in changed],
            [r.counts["failed"] + r.counts["lost"] for r in changed],
        )
    ids = sorted(deltas)
    counted = await conn.fetch(
        _INSERT_AND_COUNT,
        *_row_columns(new),
        ids,
        [deltas[i]["inserted"] for i in ids],
        [deltas[i]["updated"] for i in ids],
        [deltas[i]["failed"] + deltas[i]["lost"] for i in ids],
        [deltas[i]["lost"] for i in ids],
        [deltas[i]["finished"] for i in ids],
    )
    return [row["id"] for row in counted if row["status"] == BatchStatus.COMPLETED]


def _row_columns(rows: Sequence[_Row]) -> tuple[list[Any], ...]:
    return (
        [r.batch_id for r in rows],
        [r.attempt for r in rows],
        [r.first_index for r in rows],
        [r.covers[-1].upper - 1 for r in rows],
        [multirange_text(r.covers) for r in rows],
        [multirange_text(index_ranges(sorted(r.superseded))) for r in rows],
        [r.counts["inserted"] for r in rows],
        [r.counts["updated"] for r in rows],
        [r.counts["failed"] for r in rows],
        [r.outcome for r in rows],
        [_failed_entries(r) for r in rows],
    )


def _failed_entries(row: _Row) -> bytes | None:
    """The message's failed outcomes alone, for pages of failures."""
    if not row.counts["failed"] or row.outcome is None:
        return None  # and never will: a row's counts only go down
    outcomes = orjson.loads(row.outcome)["outcomes"]
    return orjson.dumps([o for o in outcomes if o["status"] == RecordStatus.FAILED])


# --- Records that never arrived ----------------------------------------------------------

# The ranges of the batch no row covers, computed from the rows' ranges alone: the work is
# in proportion to the chunks that arrived, never to the record count a message stated.
_RECORD_LOST = """
WITH lost AS (
    SELECT unnest(int4multirange(int4range(0, b.record_count))
                  - coalesce((SELECT range_agg(r.covers) FROM chunk_result r
                              WHERE r.batch_id = b.id), '{}'::int4multirange)) AS r
    FROM batch b WHERE b.id = $1
), kept AS (
    INSERT INTO chunk_result
        (batch_id, attempt, first_index, last_index, covers, inserted_count, updated_count,
         failed_count, lost_reason)
    SELECT $1, $2, lower(r), upper(r) - 1, int4multirange(r), 0, 0, upper(r) - lower(r), $3
    FROM lost
    RETURNING failed_count
)
UPDATE batch b SET failed_count = b.failed_count + k.lost, lost_count = b.lost_count + k.lost
FROM (SELECT coalesce(sum(failed_count), 0)::int AS lost FROM kept) AS k
WHERE b.id = $1
RETURNING k.lost
"""


async def record_lost(conn: asyncpg.Connection, batch_id: str, reason: str) -> int:
    """Give every record of the batch without any result a failed one, as index ranges.

    Returns how many records that is. Call with the batch locked.
    """
    lost: int | None = await conn.fetchval(_RECORD_LOST, batch_id, LOST_ATTEMPT, reason)
    return lost or 0


# --- Reading results ---------------------------------------------------------------------

_ROW_COUNTS = """
SELECT attempt, first_index, last_index, inserted_count, updated_count, failed_count
FROM chunk_result WHERE batch_id = $1
ORDER BY first_index, attempt
"""

_ROWS = """
SELECT attempt, first_index, covers, superseded, lost_reason,
       CASE WHEN $4 THEN failed ELSE outcome END AS entries
FROM chunk_result
WHERE batch_id = $1 AND (attempt, first_index) IN (SELECT * FROM unnest($2::int[], $3::int[]))
"""


_FAILED_AMONG = """
SELECT attempt, first_index, covers, superseded, failed, lost_reason FROM chunk_result
WHERE batch_id = $1 AND failed_count > 0 AND covers && $2::int4multirange
"""


async def failed_among(
    conn: _Reader, batch_id: str, indices: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """Of ``indices``, those whose current result is failed, with the ``(attempt,
    first_index)`` of the row holding that result (the ledger row that kept its payload)."""
    wanted = set(indices)
    if not wanted:
        return {}
    found: dict[int, tuple[int, int]] = {}
    for row in await conn.fetch(_FAILED_AMONG, batch_id, index_ranges(sorted(wanted))):
        key = (row["attempt"], row["first_index"])
        if row["lost_reason"] is not None:
            held = (i for i in wanted if contains(row["covers"], i))
        else:
            held = (o["index"] for o in orjson.loads(row["failed"]) if o["index"] in wanted)
        for index in held:
            if not contains(row["superseded"], index):
                found[index] = key
    return found


class ResultEntry(TypedDict):
    """One record's result as its outcome message holds it (``streams.events.RecordOutcome``
    read back without validation: status and error are their vocabularies' values)."""

    index: int
    status: str
    id: str | None
    error: str | None
    details: Any


@dataclass(frozen=True, slots=True)
class ResultsPage:
    results: list[ResultEntry]
    # How many results match the filter in the whole batch.
    total: int


@dataclass(frozen=True, slots=True)
class _Span:
    """Rows whose index ranges overlap, so their results interleave; others never do."""

    keys: list[tuple[int, int]]
    matching: int


def _matching(which: ResultFilter, row: asyncpg.Record) -> int:
    if which is ResultFilter.FAILED:
        return int(row["failed_count"])
    succeeded = int(row["inserted_count"] + row["updated_count"])
    if which is ResultFilter.SUCCEEDED:
        return succeeded
    return succeeded + int(row["failed_count"])


async def _spans(conn: _Reader, batch_id: str, which: ResultFilter) -> list[_Span]:
    spans: list[_Span] = []
    reach = -1
    for row in await conn.fetch(_ROW_COUNTS, batch_id):
        matching = _matching(which, row)
        if spans and row["first_index"] <= reach:
            last = spans[-1]
            spans[-1] = _Span(
                [*last.keys, (row["attempt"], row["first_index"])], last.matching + matching
            )
        else:
            spans.append(_Span([(row["attempt"], row["first_index"])], matching))
        reach = max(reach, row["last_index"])
    return [span for span in spans if span.matching]


async def results_page(
    conn: _Reader, batch_id: str, which: ResultFilter, offset: int, limit: int
) -> ResultsPage:
    """Results ``offset`` to ``offset + limit`` in index order among those ``which`` takes.

    Reads the counts of every row of the batch (one per chunk) and the results of the rows
    the page falls in, nothing else: a page of a million-record batch costs what a page of
    a small one does.
    """
    spans = await _spans(conn, batch_id, which)
    total = sum(span.matching for span in spans)
    wanted: list[tuple[_Span, int, int]] = []  # span, results to skip, results to take
    skip, left = offset, limit
    for span in spans:
        if left <= 0:
            break
        if skip >= span.matching:
            skip -= span.matching
            continue
        take = min(span.matching - skip, left)
        wanted.append((span, skip, take))
        left -= take
        skip = 0
    results: list[ResultEntry] = []
    if wanted:
        rows = await _rows(conn, batch_id, which, [k for span, _, _ in wanted for k in span.keys])
        for span, skip, take in wanted:
            results.extend(_span_results([rows[k] for k in span.keys], which, skip, take))
    return ResultsPage(results, total)


async def iter_results(
    conn: _Reader, batch_id: str, which: ResultFilter, rows_per_read: int = 100
) -> AsyncIterator[StoredResult]:
    """Every result ``which`` takes, in index order, reading ``rows_per_read`` rows at a time."""
    spans = await _spans(conn, batch_id, which)
    for start in range(0, len(spans), rows_per_read):
        group = spans[start : start + rows_per_read]
        rows = await _rows(conn, batch_id, which, [k for span in group for k in span.keys])
        for span in group:
            tagged = [
                (entry, key)
                for key in span.keys
                for entry in _row_results(rows[key], which, 0, None)
            ]
            if len(span.keys) > 1:
                tagged.sort(key=lambda pair: pair[0]["index"])
            for entry, key in tagged:
                yield StoredResult(
                    entry["index"],
                    RecordStatus(entry["status"]),
                    entry["id"],
                    RecordError(entry["error"]) if entry["error"] else None,
                    entry["details"],
                    key,
                )


async def _rows(
    conn: _Reader, batch_id: str, which: ResultFilter, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], asyncpg.Record]:
    return {
        (row["attempt"], row["first_index"]): row
        for row in await conn.fetch(
            _ROWS,
            batch_id,
            [a for a, _ in keys],
            [f for _, f in keys],
            which is ResultFilter.FAILED,
        )
    }


def _span_results(
    rows: Sequence[asyncpg.Record], which: ResultFilter, skip: int, take: int
) -> list[ResultEntry]:
    if len(rows) == 1:
        return _row_results(rows[0], which, skip, take)
    merged = sorted(
        (r for row in rows for r in _row_results(row, which, 0, None)), key=lambda r: r["index"]
    )
    return merged[skip : skip + take]


def _row_results(
    row: asyncpg.Record, which: ResultFilter, skip: int, take: int | None
) -> list[ResultEntry]:
    """The row's current results ``which`` takes, in index order: ``take`` (None: all) from
    the ``skip``-th on, as the outcome message holds them (nothing is built per record: a
    page of results is most of what GET costs)."""
    superseded: list[Range] = row["superseded"]
    if row["lost_reason"] is not None:
        if which is ResultFilter.SUCCEEDED:
            return []
        return list(itertools.islice(_lost_results(row, superseded, skip), take))
    entries = row["entries"]
    if entries is None:
        return []
    # The failed column holds the failed outcomes alone; the message holds them all.
    document: Any = orjson.loads(entries)
    outcomes: list[ResultEntry] = document if which is ResultFilter.FAILED else document["outcomes"]
    if which is ResultFilter.SUCCEEDED:
        outcomes = [o for o in outcomes if o["status"] != RecordStatus.FAILED]
    if superseded:
        outcomes = [o for o in outcomes if not contains(superseded, o["index"])]
    return outcomes[skip:] if take is None else outcomes[skip : skip + take]


def _lost_results(row: asyncpg.Record, superseded: list[Range], skip: int) -> Iterator[ResultEntry]:
    """A range that never arrived, without walking the part of it before the page."""
    details = {"message": row["lost_reason"]}
    for r in row["covers"]:
        start = r.lower
        if not superseded:
            if skip >= r.upper - r.lower:
                skip -= r.upper - r.lower
                continue
            start, skip = start + skip, 0
        for index in range(start, r.upper):
            if superseded and contains(superseded, index):
                continue
            if skip:
                skip -= 1
                continue
            yield ResultEntry(
                index=index,
                status=RecordStatus.FAILED,
                id=None,
                error=RecordError.NEVER_DELIVERED,
                details=details,
            )


# --- Failed records, for error files -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailedRecord:
    index: int
    error: RecordError | None
    details: Any
    # The ``id`` its payload named, if it had one (FOLIO's error file names records so).
    record_id: str | None


async def failed(
    pool: asyncpg.Pool, batch_id: str, page_size: int = 1000
) -> AsyncIterator[FailedRecord]:
    """The batch's failed results in index order, each with the id its payload named."""
    async with pool.acquire() as conn:
        page: list[StoredResult] = []
        async for result in iter_results(conn, batch_id, ResultFilter.FAILED):
            page.append(result)
            if len(page) >= page_size:
                for record in await _with_record_ids(conn, batch_id, page):
                    yield record
                page.clear()
        for record in await _with_record_ids(conn, batch_id, page):
            yield record


async def failed_indices(pool: asyncpg.Pool, batch_id: str) -> AsyncIterator[int]:
    async with pool.acquire() as conn:
        async for result in iter_results(conn, batch_id, ResultFilter.FAILED):
            yield result.index


async def _with_record_ids(
    conn: asyncpg.Connection, batch_id: str, failed: Sequence[StoredResult]
) -> list[FailedRecord]:
    documents = await ledger.failed_payloads(conn, batch_id, sorted({r.chunk for r in failed}))
    payloads = {chunk: orjson.loads(document) for chunk, document in documents.items()}
    records = []
    for r in failed:
        payload = payloads.get(r.chunk, {}).get(str(r.index))
        record_id = payload.get("id") if isinstance(payload, dict) else None
        records.append(
            FailedRecord(
                r.index, r.error, r.details, record_id if isinstance(record_id, str) else None
            )
        )
    return records
