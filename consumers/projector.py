"""The projector agent: decodes outcome events and projects them (``sql.results``),
waiting out database outages and dead-lettering outcomes that cannot be projected."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
from pydantic import ValidationError

from batchline.retry import RetryPolicy
from sql.db import is_transient
from sql.results import project
from streams.deadletter import DeadLetterPolicy, InvalidMessage, Stage
from streams.events import RecordOutcome
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
        decoded: list[tuple[ConsumedMessage, RecordOutcome]] = []
        for message in messages:
            try:
                decoded.append((message, RecordOutcome.model_validate_json(message.value or b"")))
            except ValidationError as exc:
                not_json = any(error["type"] == "json_invalid" for error in exc.errors())
                stage = Stage.DECODE if not_json else Stage.VALIDATE
                await self._dead_letters.send(InvalidMessage(stage, exc).letter(message))
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
                    await self._dead_letters.send(
                        InvalidMessage(Stage.PROCESS, single).letter(message)
                    )

    async def _project_until_reachable(self, outcomes: Sequence[RecordOutcome]) -> None:
        """Project; waits out an unavailable database, raises a permanent error."""

        async def project_all() -> None:
            async with self._pool.acquire() as conn:
                await project(conn, outcomes)

        await self._retry.until_reachable(
            project_all, is_transient, "database unavailable, projector pausing"
        )
