"""A thin asyncio wrapper around the confluent-kafka producer.

librdkafka does the batching; a poll thread serves delivery callbacks, and callers await
deliveries through ``asyncio.wrap_future``. Nothing is considered sent until the broker
acknowledged it (``acks=all``, idempotent).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers = field(default_factory=tuple)


class DeliveryError(RuntimeError):
    """The broker did not accept a message."""


class _BatchDelivery:
    """Resolves one future when every message of a batch is acknowledged, or the first fails."""

    def __init__(self, count: int) -> None:
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._remaining = count
        self._lock = threading.Lock()
        if count == 0:
            self.future.set_result(None)

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            if self.future.done():
                return
            if err is not None:
                self.future.set_exception(DeliveryError(str(err)))
                return
            self._remaining -= 1
            if self._remaining == 0:
                self.future.set_result(None)


class AsyncProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._running = True
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-producer", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        await self.send_many([OutgoingMessage(topic, value, key, headers)])

    async def send_many(self, messages: Iterable[OutgoingMessage]) -> None:
        """Produce every message and return once all are acknowledged."""
        batch = list(messages)
        delivery = _BatchDelivery(len(batch))
        for message in batch:
            while not self._produce(message, delivery):  # noqa: ASYNC110
                # The local queue is full: give the poll thread time to drain deliveries.
                await asyncio.sleep(0.01)
        await asyncio.wrap_future(delivery.future)

    def _produce(self, message: OutgoingMessage, delivery: _BatchDelivery) -> bool:
        try:
            self._producer.produce(
                message.topic,
                value=message.value,
                key=message.key,
                headers=list(message.headers) or None,
                on_delivery=delivery,
            )
        except BufferError:
            return False
        except KafkaException as exc:
            raise DeliveryError(str(exc)) from exc
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
