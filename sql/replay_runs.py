"""Dead-letter replay runs (``dlq_replay``) and the dead letters they put back
(``dlq_replayed``): the ``RunBook`` that ``streams.dlq`` replays through."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from streams.dlq import ReplayCounts, ReplayMark, ReplayMarks, ReplayRun, RunStatus
from streams.messages import ConsumedMessage

# A run whose heartbeat is older than this is reported interrupted: its process died.
_STALE_AFTER = "30 seconds"

_RUN_COLUMNS = f"""id, requested_by, filters, dry_run, rate_per_second,
    CASE WHEN status = 'running' AND heartbeat_at < now() - interval '{_STALE_AFTER}'
         THEN 'interrupted' ELSE status END AS status,
    cancel_requested, scanned, matched, selected, replayed, parked, already_replayed, error,
    created_at, heartbeat_at, finished_at"""

_COUNT_FIELDS = ("scanned", "matched", "selected", "replayed", "parked", "already_replayed")

_REPLAY_LOCK = 0x62_6C_64_6C_71  # "bldlq": one advisory lock for every replay run


def _run(row: asyncpg.Record) -> ReplayRun:
    return ReplayRun(
        id=row["id"],
        requested_by=row["requested_by"],
        filters=row["filters"],
        dry_run=row["dry_run"],
        rate_per_second=row["rate_per_second"],
        status=RunStatus(row["status"]),
        cancel_requested=row["cancel_requested"],
        counts=ReplayCounts(**{name: row[name] for name in _COUNT_FIELDS}),
        error=row["error"],
        created_at=row["created_at"],
        heartbeat_at=row["heartbeat_at"],
        finished_at=row["finished_at"],
    )


class ReplayRuns:
    """Replay runs from the CLI and the operator API alike, in one table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        requested_by: str,
        filters: dict[str, Any],
        dry_run: bool,
        rate_per_second: float | None,
    ) -> ReplayRun:
        row = await self._pool.fetchrow(
            f"""INSERT INTO dlq_replay (requested_by, filters, dry_run, rate_per_second)
                VALUES ($1, $2, $3, $4) RETURNING {_RUN_COLUMNS}""",
            requested_by,
            filters,
            dry_run,
            rate_per_second,
        )
        assert row is not None
        return _run(row)

    async def get(self, run_id: str) -> ReplayRun | None:
        row = await self._pool.fetchrow(
            f"SELECT {_RUN_COLUMNS} FROM dlq_replay WHERE id = $1", run_id
        )
        return _run(row) if row else None

    async def newest(self, limit: int) -> list[ReplayRun]:
        rows = await self._pool.fetch(
            f"SELECT {_RUN_COLUMNS} FROM dlq_replay ORDER BY created_at DESC, id DESC LIMIT $1",
            limit,
        )
        return [_run(row) for row in rows]

    async def request_cancel(self, run_id: str) -> ReplayRun | None:
        """Ask a running replay to stop; it does at its next checkpoint (well under a second)."""
        await self._pool.execute(
            "UPDATE dlq_replay SET cancel_requested = true WHERE id = $1 AND status = 'running'",
            run_id,
        )
        return await self.get(run_id)

    async def marks(self, topic: str) -> ReplayMarks:
        rows = await self._pool.fetch(
            "SELECT dlq_partition, dlq_offset, dlq_timestamp_ms, replay_id FROM dlq_replayed"
            " WHERE dlq_topic = $1",
            topic,
        )
        return ReplayMarks(
            {
                (row["dlq_partition"], row["dlq_offset"]): ReplayMark(
                    row["dlq_timestamp_ms"], row["replay_id"]
                )
                for row in rows
            }
        )

    async def heartbeat(self, run_id: str, counts: ReplayCounts) -> bool:
        cancel = await self._pool.fetchval(
            """UPDATE dlq_replay SET heartbeat_at = now(), scanned = $2, matched = $3,
                   selected = $4, replayed = $5, parked = $6, already_replayed = $7
               WHERE id = $1 RETURNING cancel_requested""",
            run_id,
            *(getattr(counts, name) for name in _COUNT_FIELDS),
        )
        return bool(cancel)

    async def mark_replayed(
        self, run_id: str, topic: str, messages: Sequence[ConsumedMessage]
    ) -> None:
        await self._pool.execute(
            """INSERT INTO dlq_replayed
                   (dlq_topic, dlq_partition, dlq_offset, dlq_timestamp_ms, replay_id)
               SELECT $1, p, o, t, $2 FROM unnest($3::int[], $4::bigint[], $5::bigint[])
                    AS m(p, o, t)
               ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO UPDATE
               SET dlq_timestamp_ms = EXCLUDED.dlq_timestamp_ms,
                   replay_id = EXCLUDED.replay_id, replayed_at = now()""",
            topic,
            run_id,
            [m.partition for m in messages],
            [m.offset for m in messages],
            [m.timestamp_ms for m in messages],
        )

    async def issue_tokens(self, tokens: Sequence[str], replay_counts: Sequence[int]) -> None:
        await self._pool.execute(
            """INSERT INTO dlq_replay_token (token, replay_count)
               SELECT * FROM unnest($1::uuid[], $2::int[])""",
            [uuid.UUID(token) for token in tokens],
            replay_counts,
        )

    async def replay_count(self, token: str) -> int:
        """The replay count kept for ``token``; 0 for one no replay issued."""
        try:
            known = uuid.UUID(token)
        except ValueError:
            return 0
        count = await self._pool.fetchval(
            "SELECT replay_count FROM dlq_replay_token WHERE token = $1", known
        )
        return int(count or 0)

    async def finish(
        self, run_id: str, status: RunStatus, counts: ReplayCounts, error: str | None = None
    ) -> None:
        await self._pool.execute(
            """UPDATE dlq_replay SET status = $2, error = $3, finished_at = now(),
                   heartbeat_at = now(), scanned = $4, matched = $5, selected = $6,
                   replayed = $7, parked = $8, already_replayed = $9
               WHERE id = $1""",
            run_id,
            status.value,
            error,
            *(getattr(counts, name) for name in _COUNT_FIELDS),
        )

    @contextlib.asynccontextmanager
    async def alone(self, *, needed: bool) -> AsyncIterator[bool]:
        """The lock is PostgreSQL's, so runs of the CLI and of every API process count; it
        goes with the connection if the process dies."""
        if not needed:
            yield True
            return
        async with self._pool.acquire() as conn:
            try:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _REPLAY_LOCK):
                    yield False
                    return
                try:
                    yield True
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _REPLAY_LOCK)
            except BaseException:
                # The pool may not undo session state on release (sql.db, session_state_free):
                # a lock this may still hold (a cancelled call, a failed unlock) goes with the
                # connection instead of staying with the pool.
                conn.terminate()
                raise
