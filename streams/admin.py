"""Creating topics: at start-up for the core set, on first use for per-tenant event topics."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


class TopicCreationError(RuntimeError):
    """The cluster refused to create a topic for good (an invalid name, say)."""


async def ensure_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    replication_factor: int = 1,
    *,
    request_timeout: float = 30.0,
) -> None:
    """Create the topics in ``{name: partitions}`` that don't exist yet.

    Existing topics are left alone (their partition count is not changed).
    """
    if not topics:
        return
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 3})
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
        for name, partitions in topics.items()
    ]
    futures = admin.create_topics(
        new, operation_timeout=request_timeout, request_timeout=request_timeout
    )
    for name, future in futures.items():
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), request_timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if isinstance(err, KafkaError) and err.retriable():
                raise
            raise TopicCreationError(f"creating topic {name!r} failed: {exc}") from exc


class TopicEnsurer:
    """Creates each topic once per process, the first time something is about to use it."""

    def __init__(self, bootstrap_servers: str, partitions: int, replication_factor: int) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._known: set[str] = set()

    async def ensure(self, topic: str) -> None:
        if topic in self._known:
            return
        await ensure_topics(
            self._bootstrap_servers, {topic: self._partitions}, self._replication_factor
        )
        self._known.add(topic)
