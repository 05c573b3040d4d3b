"""A consumer-group member that hands batches to asyncio and commits only after them.

For topics with one small message per record (outcomes), where a per-message framework
costs more than the work itself: confluent-kafka parses fetches in C, a dedicated thread
blocks in ``poll`` with the GIL released, and each batch runs through an async handler on
the caller's event loop. Offsets are committed once the handler returned; if it raises,
the batch's partitions are rewound and the batch is read again after a pause. At least
once, in order per partition.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams.messages import ConsumedMessage

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[ConsumedMessage]], Coroutine[Any, Any, None]]

_IDLE_POLL_SECONDS = 0.1


def consumed(message: Any) -> ConsumedMessage:
    """A confluent-kafka message (its stubs type headers as strings) as a ConsumedMessage."""
    timestamp_type, timestamp_ms = message.timestamp()
    headers = message.headers()
    return ConsumedMessage(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        # Outcomes carry none; skipping the conversion matters at one message per record.
        tuple(headers) if headers else (),
        timestamp_ms if timestamp_type else None,
    )


def _next_offsets(batch: Sequence[ConsumedMessage]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for message in batch:
        last[message.topic, message.partition] = message.offset
    return [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]


def _first_offsets(batch: Sequence[ConsumedMessage]) -> list[TopicPartition]:
    first: dict[tuple[str, int], int] = {}
    for message in batch:
        first.setdefault((message.topic, message.partition), message.offset)
    return [TopicPartition(t, p, offset) for (t, p), offset in first.items()]


class BatchConsumer:
    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        max_batch: int,
        retry_seconds: float,
        name: str,
    ) -> None:
        self._config = {**config, "enable.auto.commit": False}
        self._topics = list(topics)
        self._handler = handler
        self._max_batch = max_batch
        self._retry = retry_seconds
        self._name = name
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: concurrent.futures.Future[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        consumer = Consumer(self._config)
        consumer.subscribe(self._topics)
        self._running.set()
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name=self._name, daemon=True
        )
        self._thread.start()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Finish the batch in hand, commit it, leave the group.

        A handler still busy after ``grace_seconds`` (waiting out a database outage, say) is
        cancelled: its batch stays uncommitted and is read again by whoever runs next.
        """
        self._running.clear()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        await asyncio.to_thread(thread.join, grace_seconds)
        in_flight = self._in_flight
        if thread.is_alive() and in_flight is not None:
            log.warning(
                "%s: cancelling a batch still in hand after %.0f s", self._name, grace_seconds
            )
            in_flight.cancel()
        await asyncio.to_thread(thread.join)

    def _run(self, consumer: Consumer) -> None:
        try:
            while self._running.is_set():
                try:
                    batch = self._next_batch(consumer)
                    handled = not batch or self._handled(consumer, batch)
                except KafkaException as exc:
                    log.warning("%s: %s", self._name, exc)
                    handled = False
                if not handled:
                    time.sleep(self._retry)
        finally:
            consumer.close()

    def _next_batch(self, consumer: Consumer) -> list[ConsumedMessage]:
        # poll() returns as soon as one message is there; consume() without a timeout then
        # takes what librdkafka has already fetched behind it. A lone message waits for
        # nothing, and under load the queue fills while the previous batch is handled.
        first = consumer.poll(_IDLE_POLL_SECONDS)
        if first is None:
            return []
        messages = [first]
        if self._max_batch > 1:
            messages += consumer.consume(self._max_batch - 1, 0)
        batch = []
        for message in messages:
            error = message.error()
            if error is None:
                batch.append(consumed(message))
            else:
                log.warning("%s: %s", self._name, error)
        return batch

    def _handled(self, consumer: Consumer, batch: list[ConsumedMessage]) -> bool:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._handler(batch), self._loop)
        self._in_flight = future
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - the batch is read again, not lost
            log.warning("%s: %d messages failed (%s); rewinding", self._name, len(batch), exc)
            for position in _first_offsets(batch):
                try:
                    consumer.seek(position)
                except KafkaException as seek_error:
                    # Not ours any more after a rebalance: its new owner starts from the
                    # last commit, which precedes this batch.
                    log.info("%s: not rewinding %s: %s", self._name, position, seek_error)
            return False
        try:
            consumer.commit(offsets=_next_offsets(batch), asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance took the partitions: their new owner handles the batch
            # again from the last commit, which the handler must (and does) tolerate.
            log.info("%s: commit after %d messages failed: %s", self._name, len(batch), exc)
        return True
