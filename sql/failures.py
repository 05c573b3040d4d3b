"""A batch's failed records with the payloads they were sent with: counted by error code,
paged, or streamed whole (a batch of a million failures never has to fit in memory).

Read from the projection's per-chunk rows (``sql.results``) and the payloads the inserter's
ledger kept for retries (``sql.ledger``); records that never reached the inserter
(``never_delivered``) have no payload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from batchline.vocabulary import RecordError, ResultFilter
from sql import ledger, results

# Failed entries of each chunk's row (the current ones: not superseded by a retry), and
# the records of ranges that never arrived, which the row counts without listing them.
_COUNTS = """
SELECT e ->> 'error' AS error, count(*) AS n
FROM chunk_result c
CROSS JOIN LATERAL jsonb_array_elements(convert_from(c.failed, 'UTF8')::jsonb) e
WHERE c.batch_id = $1 AND c.failed_count > 0 AND c.lost_reason IS NULL
  AND NOT c.superseded @> (e ->> 'index')::int
GROUP BY 1
UNION ALL
SELECT $2, sum(failed_count) FROM chunk_result
WHERE batch_id = $1 AND lost_reason IS NOT NULL
HAVING sum(failed_count) > 0
"""


@dataclass(frozen=True, slots=True)
class Failure:
    index: int
    error: str | None
    details: Any
    # As it was sent; None when nothing was kept (never_delivered).
    payload: Any

    def view(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "error": self.error,
            "details": self.details,
            "payload": self.payload,
        }


async def counts_by_error(pool: asyncpg.Pool, batch_id: str) -> list[tuple[str, int]]:
    """How many records failed with each error code, the most frequent first."""
    rows = await pool.fetch(_COUNTS, batch_id, RecordError.NEVER_DELIVERED.value)
    counted: dict[str, int] = {}
    for row in rows:
        if row["error"] is not None:
            counted[row["error"]] = counted.get(row["error"], 0) + int(row["n"])
    return sorted(counted.items(), key=lambda item: (-item[1], item[0]))


async def page(
    pool: asyncpg.Pool, batch_id: str, error: str | None, offset: int, limit: int
) -> list[Failure]:
    """Failures in index order, ``limit`` from the ``offset``-th."""
    async with pool.acquire() as conn:
        if error is None:
            # Every failure: the projection finds the page without reading the rest.
            found = await results.results_page(conn, batch_id, ResultFilter.FAILED, offset, limit)
            chunks = await results.failed_among(conn, batch_id, [r["index"] for r in found.results])
            entries = [
                (r["index"], r["error"], r["details"], chunks.get(r["index"]))
                for r in found.results
            ]
            return await _with_payloads(conn, batch_id, entries)
        # One code: the failures before the page are read to be skipped.
        chosen: list[tuple[int, str | None, Any, tuple[int, int] | None]] = []
        skip = offset
        async for r in results.iter_results(conn, batch_id, ResultFilter.FAILED):
            if r.error != error:
                continue
            if skip:
                skip -= 1
                continue
            chosen.append((r.index, r.error, r.details, r.chunk))
            if len(chosen) >= limit:
                break
        return await _with_payloads(conn, batch_id, chosen)


async def stream(
    pool: asyncpg.Pool, batch_id: str, error: str | None, per_read: int = 1000
) -> AsyncIterator[Failure]:
    """Every failure (of one code, if given) in index order."""
    async with pool.acquire() as conn:
        waiting: list[tuple[int, str | None, Any, tuple[int, int] | None]] = []
        async for r in results.iter_results(conn, batch_id, ResultFilter.FAILED):
            if error is not None and r.error != error:
                continue
            waiting.append((r.index, r.error, r.details, r.chunk))
            if len(waiting) >= per_read:
                for failure in await _with_payloads(conn, batch_id, waiting):
                    yield failure
                waiting = []
        for failure in await _with_payloads(conn, batch_id, waiting):
            yield failure


async def _with_payloads(
    conn: asyncpg.Connection,
    batch_id: str,
    entries: Sequence[tuple[int, str | None, Any, tuple[int, int] | None]],
) -> list[Failure]:
    chunks = sorted({chunk for *_, chunk in entries if chunk is not None})
    documents = await ledger.failed_payloads(conn, batch_id, chunks) if chunks else {}
    payloads = {chunk: orjson.loads(document) for chunk, document in documents.items()}
    return [
        Failure(index, error, details, payloads.get(chunk, {}).get(str(index)) if chunk else None)
        for index, error, details, chunk in entries
    ]
