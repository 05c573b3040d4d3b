"""Waiting between attempts: one policy for everything in the worker that retries.

Two waits, both doubling from ``BATCHLINE_RETRY_BACKOFF_SECONDS``: after a failed attempt
(a chunk that failed, a send the broker refused) up to 30 s; while the database is away up
to 5 s, so a restarted database is noticed quickly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_BACKOFF_SECONDS = 30.0
_MAX_OUTAGE_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_seconds: float
    # Attempts a chunk gets before it is dead-lettered (failures that are not outages).
    max_attempts: int = 1

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (from 1): doubling, capped."""
        return _doubling(self.first_seconds, attempt, _MAX_BACKOFF_SECONDS)

    def outage_backoff(self, waits: int) -> float:
        """The wait before look number ``waits + 1`` at an unavailable database."""
        return _doubling(self.first_seconds, waits, _MAX_OUTAGE_BACKOFF_SECONDS)

    async def until_done(
        self,
        action: Callable[[], Awaitable[T]],
        what: str,
        final: type[Exception] | tuple[type[Exception], ...] = (),
    ) -> T:
        """Run ``action`` until it succeeds, whatever fails meanwhile (the broker or the
        database away), except the ``final`` failures no retry can fix: those are raised."""
        attempt = 0
        while True:
            try:
                return await action()
            except final:
                raise
            except Exception as exc:  # noqa: BLE001 - broker or database away: wait, retry
                attempt += 1
                log.warning("%s failed (attempt %d): %s", what, attempt, exc)
                await asyncio.sleep(self.backoff(attempt))

    async def until_reachable(
        self,
        action: Callable[[], Awaitable[T]],
        transient: Callable[[BaseException], bool],
        waiting: str,
    ) -> T:
        """Run ``action``, waiting out the ``transient`` failures (an outage) however long it
        takes, each logged as ``waiting``; any other failure is raised at once."""
        waits = 0
        while True:
            try:
                return await action()
            except Exception as exc:
                if not transient(exc):
                    raise
                waits += 1
                log.warning("%s: %s", waiting, exc)
                await asyncio.sleep(self.outage_backoff(waits))


def _doubling(first_seconds: float, attempt: int, cap: float) -> float:
    return float(min(first_seconds * 2 ** (attempt - 1), cap))
