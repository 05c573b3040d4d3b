"""Creating topics: at start-up for the core set, on first use for per-tenant event topics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any


class TopicCreationError(RuntimeError):
    """The cluster refused to create a topic for good (an invalid name, say)."""


async def ensure_topics(
    admin_config: Mapping[str, Any],
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

    admin = AdminClient(dict(admin_config))
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

    def __init__(
        self, admin_config: Mapping[str, Any], partitions: int, replication_factor: int
    ) -> None:
        self._admin_config = admin_config
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._known: set[str] = set()

    async def ensure(self, topic: str) -> None:
        if topic in self._known:
            return
        await ensure_topics(self._admin_config, {topic: self._partitions}, self._replication_factor)
        self._known.add(topic)


class BrokerUnreachableError(RuntimeError):
    """No broker answered at start-up: wrong address, TLS or SASL settings, or it is down."""


def check_connection(admin_config: Mapping[str, Any], timeout: float = 30.0) -> None:
    """Ask the cluster for its metadata, and fail with what librdkafka saw if it can't.

    Without this a wrong CA or password shows only as a producer retrying forever; here it
    is a start-up error naming the cause ("certificate verify failed", "Authentication
    failed"). Those fail at once; a broker that is not up yet gets ``timeout`` seconds.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    seen: list[str] = []
    fatal: list[str] = []
    fatal_codes = {KafkaError._SSL, KafkaError._AUTHENTICATION}  # retrying changes nothing

    def remember(error: KafkaError) -> None:
        (fatal if error.code() in fatal_codes else seen).append(error.str())

    config: dict[str, Any] = {**admin_config, "error_cb": remember}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(1.0, timeout))
            return
        except KafkaException as exc:
            admin.poll(0.1)  # serves error_cb
            if fatal or time.monotonic() >= deadline:
                causes = fatal[0] if fatal else "; ".join(dict.fromkeys(seen)) or str(exc)
                servers = admin_config.get("bootstrap.servers")
                protocol = admin_config.get("security.protocol", "PLAINTEXT")
                raise BrokerUnreachableError(
                    f"cannot reach Kafka at {servers} over {protocol}: {causes}"
                ) from None
