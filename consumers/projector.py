"""The projector agent: decodes chunk outcome messages and projects them (``sql.results``),
a window of messages per transaction, waiting out database outages and dead-lettering
outcomes that cannot be projected."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
from pydantic import ValidationError

from batchline.retry import RetryPolicy
from sql import batches, results
from sql.db import is_transient
from streams.deadletter import DeadLetterPolicy, InvalidMessage, Stage
from streams.events import ChunkOutcome
from streams.messages import ConsumedMessage

log = logging.getLogger(__name__)


class Projector:
    def __init__(
        self, pool: asyncpg.Pool, retry: RetryPolicy, dead_letters: DeadLetterPolicy
    ) -> None:
        self._pool = pool
        self._retry = retry
        self._dead_letters = dead_letters

    async def handle_many(self, messages: Sequence[ConsumedMessage]) -> None:
        decoded: list[tuple[ConsumedMessage, ChunkOutcome]] = []
        for message in messages:
            try:
                decoded.append((message, ChunkOutcome.model_validate_json(message.value or b"")))
            except ValidationError as exc:
                not_json = any(error["type"] == "json_invalid" for error in exc.errors())
                stage = Stage.DECODE if not_json else Stage.VALIDATE
                await self._dead_letters.send(InvalidMessage(stage, exc).letter(message))
        if not decoded:
            return
        try:
            await self._project_until_reachable(decoded)
        except Exception as exc:  # noqa: BLE001 - permanent: find the outcome(s) to blame
            log.warning("projecting %d outcomes failed (%s); one by one", len(decoded), exc)
            for single in decoded:
                try:
                    await self._project_until_reachable([single])
                except Exception as failure:  # noqa: BLE001 - one poison outcome, not all
                    await self._dead_letters.send(
                        InvalidMessage(Stage.PROCESS, failure).letter(single[0])
                    )

    async def _project_until_reachable(
        self, decoded: Sequence[tuple[ConsumedMessage, ChunkOutcome]]
    ) -> None:
        """Project; waits out an unavailable database, raises a permanent error. Outcomes
        past their batch are dead-lettered, not counted."""

        async def project_all() -> results.Projected:
            chunks = [(outcome, message.value or b"") for message, outcome in decoded]
            async with self._pool.acquire() as conn, conn.transaction():
                projected = await results.project(conn, chunks)
                if projected.completed:  # told at commit
                    await batches.notify_done(conn, projected.completed)
            return projected

        projected = await self._retry.until_reachable(
            project_all, is_transient, "database unavailable, projector pausing"
        )
        refused = {id(outcome): problem for outcome, problem in projected.refused}
        for message, outcome in decoded:
            if id(outcome) in refused:
                problem = OutcomeBeyondBatch(refused[id(outcome)])
                await self._dead_letters.send(
                    InvalidMessage(Stage.VALIDATE, problem).letter(message)
                )


class OutcomeBeyondBatch(Exception):
    """An outcome naming a record or attempt its batch does not have: counting it would make
    the batch report more records than it has, or hide the real attempt's outcome."""
