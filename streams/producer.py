"""A thin asyncio wrapper around the confluent-kafka producer.

librdkafka does the batching; a poll thread serves delivery callbacks, and callers await
deliveries through ``asyncio.wrap_future``. Nothing is considered sent until the broker
acknowledged it (``acks=all``, idempotent).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

Headers = Sequence[tuple[str, bytes | None]]
_ProducerHeaders = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers = field(default_factory=tuple)


class DeliveryError(RuntimeError):
    """The broker did not accept a message."""

    def __init__(self, error: KafkaError | str) -> None:
        super().__init__(str(error))
        # Larger than the producer or the topic takes: sending it again cannot help.
        self.too_large = (
            isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
        )


class _BatchDelivery:
    """Resolves one future when every message of a batch is acknowledged, or the first fails.

    Called once per message, by the poll thread or by a thread in ``flush``, possibly both
    at once. Without a lock: ``next()`` on an ``itertools.count`` is one C call, which the
    GIL does not split (``threading`` numbers its threads the same way), and a late
    ``set_exception`` after the future is done is refused by the future itself.
    """

    def __init__(self, count: int) -> None:
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._count = count
        self._acknowledged = itertools.count(1)
        if count == 0:
            self.future.set_result(None)

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            # A failed message is never counted, so the count reaches the size of the
            # batch only when every message got through.
            if next(self._acknowledged) == self._count:
                self.future.set_result(None)
        elif not self.future.done():
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                self.future.set_exception(DeliveryError(err))


class AsyncProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._running = True
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-producer", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def send_many(self, messages: Iterable[OutgoingMessage]) -> None:
        """Produce every message and return once all are acknowledged."""
        batch = list(messages)
        delivery = _BatchDelivery(len(batch))
        for message in batch:
            headers: _ProducerHeaders | None = list(message.headers) if message.headers else None
            while not self._produce(message.topic, message.value, message.key, headers, delivery):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.wrap_future(delivery.future)

    async def send_values(self, topic: str, key: bytes | None, values: Sequence[bytes]) -> None:
        """``send_many`` of messages that differ only in their value, without building an
        OutgoingMessage for each: the inserter sends one outcome per record."""
        delivery = _BatchDelivery(len(values))
        for value in values:
            while not self._produce(topic, value, key, None, delivery):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.wrap_future(delivery.future)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: _ProducerHeaders | None,
        delivery: _BatchDelivery,
    ) -> bool:
        """False when the local queue is full: the caller gives the poll thread time to
        drain deliveries and tries again."""
        try:
            self._producer.produce(topic, value, key, headers=headers, on_delivery=delivery)
        except BufferError:
            return False
        except KafkaException as exc:
            raise DeliveryError(exc.args[0] if exc.args else str(exc)) from exc
        return True

    async def close(self, flush_seconds: float = 10.0) -> None:
        remaining = await asyncio.to_thread(self._producer.flush, flush_seconds)
        self._running = False
        await asyncio.to_thread(self._poller.join, 1.0)
        # Without it librdkafka keeps reconnecting until the object is collected.
        self._producer.close()
        if remaining:
            raise DeliveryError(f"{remaining} messages were not delivered before close")

    async def ping(self, wait_seconds: float = 3.0) -> None:
        """Raises unless the cluster answers a metadata request."""
        await asyncio.to_thread(self._producer.list_topics, timeout=wait_seconds)
