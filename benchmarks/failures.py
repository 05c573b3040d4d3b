"""How fast a batch's failures are read when it has a great many: the console's batch page.

Makes a scratch database beside the one given, fills one batch with N failed records
(projection and ledger rows of 1,000-record chunks with payloads, as the pipeline writes
them), then times what
``GET /api/v1/batch-inserts/{id}/failures`` runs: the counts by error code, pages at the
start, the middle and the end (all failures, and one code), and the whole list as NDJSON.
Prints the figures; asserts nothing.

    .venv/bin/python -m benchmarks.failures --records 1000000 \\
        --database-url postgresql://root@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from sql import db, failures
from sql.migrator import migrate

_BATCH = "failures-benchmark"
_PAGE = 20


# One projection row and one ledger row per chunk of 1,000, as the pipeline writes them:
# every record failed, a third as unique_constraint_violation, with its payload kept.
_FILL = """
WITH chunk AS (
    SELECT c * 1000 AS first, least(c * 1000 + 999, $2 - 1) AS last
    FROM generate_series(0, ($2 - 1) / 1000) c
), entries AS (
    SELECT first, last,
           json_agg(json_build_object(
               'index', i, 'status', 'failed', 'id', NULL,
               'error', CASE WHEN i % 3 = 0 THEN 'unique_constraint_violation'
                             ELSE 'validation_error' END,
               'details', json_build_array(json_build_object(
                   'field', 'duration_minutes', 'message', 'at least 1')))
               ORDER BY i) AS failed,
           json_object_agg(i, json_build_object(
               'coordinator_id', 'c', 'mentor_id', 'm' || i, 'activity_type', 'call',
               'activity_date', '2026-03-28', 'duration_minutes', 0)) AS payloads
    FROM chunk, generate_series(first, last) i
    GROUP BY first, last
), outcome AS (
    SELECT first, last, failed, payloads,
           convert_to(json_build_object(
               'schema_version', 2, 'batch_id', $1::text, 'entity', 'activity',
               'attempt', 0, 'record_count', $2::int, 'outcomes', failed)::text, 'UTF8') AS message
    FROM entries
), ledger AS (
    INSERT INTO chunk_ledger (batch_id, attempt, first_index, last_index, covers, written,
                              outcome, payloads)
    SELECT $1, 0, first, last, int4multirange(int4range(first, last + 1)), true, message,
           convert_to(payloads::text, 'UTF8')
    FROM outcome
)
INSERT INTO chunk_result (batch_id, attempt, first_index, last_index, covers, inserted_count,
                          updated_count, failed_count, outcome, failed)
SELECT $1, 0, first, last, int4multirange(int4range(first, last + 1)), 0, 0,
       last - first + 1, message, convert_to(failed::text, 'UTF8')
FROM outcome
"""


async def _fill(conn: asyncpg.Connection, records: int) -> None:
    await conn.execute(
        """INSERT INTO batch (id, entity, source, record_count, pending_count, status,
                              failed_count)
           VALUES ($1, 'activity', 'rest', $2, 0, 'completed', $2)""",
        _BATCH,
        records,
    )
    await conn.execute(_FILL, _BATCH, records)
    await conn.execute("ANALYZE chunk_result; ANALYZE chunk_ledger")


async def _timed(name: str, work: Callable[[], Awaitable[Any]]) -> None:
    started = time.perf_counter()
    result = await work()
    elapsed = time.perf_counter() - started
    size = len(result) if isinstance(result, list) else result
    print(f"  {name:<44} {elapsed * 1000:>9.1f} ms  ({size})")


async def _stream_all(pool: asyncpg.Pool) -> int:
    lines = 0
    async for _ in failures.stream(pool, _BATCH, None):
        lines += 1
    return lines


async def run(database_url: str, records: int) -> None:
    scratch = f"batchline_failures_{uuid.uuid4().hex[:8]}"
    admin = await db.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{scratch}"')
    url = database_url.rsplit("/", 1)[0] + f"/{scratch}"
    try:
        conn = await db.connect(url)
        try:
            await migrate(conn)
            started = time.perf_counter()
            await _fill(conn, records)
            print(f"{records} failed records written in {time.perf_counter() - started:.1f} s")
        finally:
            await conn.close()
        pool = await db.create_pool(url, max_size=2)
        try:
            await _timed("counts by error code", lambda: failures.counts_by_error(pool, _BATCH))
            for offset in (0, records // 2, max(records - _PAGE, 0)):
                await _timed(
                    f"page of {_PAGE} at offset {offset}",
                    functools.partial(failures.page, pool, _BATCH, None, offset, _PAGE),
                )
            await _timed(
                f"page of one code at offset {records // 4}",
                lambda: failures.page(
                    pool, _BATCH, "unique_constraint_violation", records // 4, _PAGE
                ),
            )
            await _timed("every failure as NDJSON lines", lambda: _stream_all(pool))
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url", default="postgresql://root@127.0.0.1:5432/postgres", help="a server"
    )
    args = parser.parse_args()
    asyncio.run(run(args.database_url, args.records))


if __name__ == "__main__":
    main()
