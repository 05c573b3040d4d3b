"""The dead-letter replays running in this API process, so shutdown can stop them cleanly."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from batchline.settings import Settings
from sql.replay_runs import ReplayRuns
from streams import dlq
from streams.producer import AsyncProducer


class ReplayTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[dlq.ReplayResult]] = set()

    def start(
        self, settings: Settings, pool: asyncpg.Pool, producer: AsyncProducer, run: dlq.ReplayRun
    ) -> None:
        task = asyncio.create_task(
            dlq.replay(settings, ReplayRuns(pool), producer, run), name=f"replay {run.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop every running replay; each records itself as interrupted."""
        running = list(self._tasks)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
