"""Consumer lag: how far a consumer group's committed offsets are behind each partition's end.

Read the way Kafka's own tools read it: the group's committed offsets (an OffsetFetch, no
joining the group) against the partitions' watermarks. Blocking librdkafka calls run in a
thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition


class LagUnavailable(RuntimeError):
    """The broker did not answer for offsets or watermarks."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    # None: the group has committed nothing on this partition yet.
    committed: int | None
    end: int
    lag: int


def _group_lag(
    consumer_config: Mapping[str, Any], topic: str, timeout: float
) -> list[PartitionLag]:
    group = str(consumer_config["group.id"])
    consumer = Consumer({**consumer_config, "enable.auto.commit": False})
    try:
        described = consumer.list_topics(topic, timeout).topics.get(topic)
        if described is None or described.error is not None:
            raise LagUnavailable(f"cannot describe {topic}: {described and described.error}")
        partitions = [TopicPartition(topic, p) for p in sorted(described.partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout)}
        lags = []
        for tp in partitions:
            start, listed_end = consumer.get_watermark_offsets(tp, timeout)
            offset = committed.get(tp.partition, -1)
            known = offset if offset >= 0 else None
            # Kafka's end is never behind a committed offset; Tansu 0.6 answers the start
            # of the partition's last record batch (+1) instead, which can be.
            end = max(listed_end, offset)
            lags.append(
                PartitionLag(group, topic, tp.partition, known, end, end - max(offset, start))
            )
        return lags
    except KafkaException as exc:
        raise LagUnavailable(f"offsets of {group} on {topic}: {exc}") from exc
    finally:
        consumer.close()


async def consumer_lag(
    groups: Sequence[tuple[Mapping[str, Any], str]], request_seconds: float = 5.0
) -> list[PartitionLag]:
    """Lag per partition for each ``(consumer config with its group.id, topic)``."""
    found = await asyncio.gather(
        *(asyncio.to_thread(_group_lag, config, topic, request_seconds) for config, topic in groups)
    )
    return [lag for lags in found for lag in lags]
