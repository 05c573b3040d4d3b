"""The projector agent: decodes outcome events and projects them (``sql.results``),
waiting out database outages and dead-lettering outcomes that cannot be projected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
from pydantic import ValidationError

from sql.db import is_transient, outage_backoff
from sql.results import project
from streams.deadletter import DeadLetter, Stage
from streams.events import RecordOutcome
from streams.messages import ConsumedMessage
from streams.producer import AsyncProducer

log = logging.getLogger(__name__)


class Projector:
    def __init__(self, pool: asyncpg.Pool, producer: AsyncProducer, backoff_seconds: float) -> None:
        self._pool = pool
        self._producer = producer
        self._backoff = backoff_seconds

    async def handle_many(self, messages: Sequence[ConsumedMessage]) -> None:
        decoded: list[tuple[ConsumedMessage, RecordOutcome]] = []
        for message in messages:
            try:
                decoded.append((message, RecordOutcome.model_validate_json(message.value or b"")))
            except ValidationError as exc:
                await self._dead_letter(DeadLetter.for_failure(message, exc, Stage.VALIDATE, 1))
        if not decoded:
            return
        try:
            await self._project_until_reachable([outcome for _, outcome in decoded])
        except Exception as exc:  # noqa: BLE001 - permanent: find the outcome(s) to blame
            log.warning("projecting %d outcomes failed (%s); one by one", len(decoded), exc)
            for message, outcome in decoded:
                try:
                    await self._project_until_reachable([outcome])
                except Exception as single:  # noqa: BLE001 - one poison outcome, not all
                    letter = DeadLetter.for_failure(message, single, Stage.PROCESS, 1)
                    await self._dead_letter(letter)

    async def _project_until_reachable(self, outcomes: Sequence[RecordOutcome]) -> None:
        """Project; waits out an unavailable database, raises a permanent error."""
        waits = 0
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await project(conn, outcomes)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                waits += 1
                log.warning("database unavailable, projector pausing: %s", exc)
                await asyncio.sleep(outage_backoff(self._backoff, waits))

    async def _dead_letter(self, letter: DeadLetter) -> None:
        waits = 0
        while True:
            try:
                await self._producer.send_many([letter.to_message()])
                return
            except Exception as exc:  # noqa: BLE001 - broker away: the offset must wait
                waits += 1
                log.warning("dead-lettering an outcome failed: %s", exc)
                await asyncio.sleep(outage_backoff(self._backoff, waits))
