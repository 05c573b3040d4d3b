"""Faust, tuned for a table-less pipeline with low per-hop latency.

- faust-streaming 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. A broker
  that holds a parked fetch for its whole wait (Tansu does, ignoring new data) then adds up
  to 1.5 s per hop, twice per batch (ingest, outcomes). We set aiokafka's value before the
  consumer starts; aiokafka reads it once, when it builds its fetcher.
- Faust reads committed transactions only when it runs its own (exactly-once); batchline
  always does, so a transactional producer's aborted chunks are never written.
- Faust's TableManager sleeps a fixed second before starting; batchline has no tables.
- When the fetch loop dies (a record batch aiokafka cannot read, say), Faust logs it and
  the worker lives on consuming nothing; we tell the worker, which then stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        consumer._isolation_level = "read_committed"
        return consumer


class TablelessTableManager(TableManager):
    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def app_class(
    fetch_max_wait_ms: int, on_fetch_failure: Callable[[Exception], None]
) -> type[faust.App]:
    """A Faust App class whose worker consumers wait at most ``fetch_max_wait_ms``, and
    call ``on_fetch_failure`` when their fetch loop dies."""

    class ConsumerThread(_ConsumerThread):
        pass

    ConsumerThread.fetch_max_wait_ms = fetch_max_wait_ms

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def _drain_messages(self, fetcher: Any) -> None:
            try:
                await super()._drain_messages(fetcher)
            except Exception as exc:
                # Faust logs this and carries on without fetching anything, for good.
                on_fetch_failure(exc)
                raise

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer

    class App(faust.App):
        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

    return App
