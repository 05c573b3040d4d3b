"""Every topic batchline reads or writes, named once."""

from __future__ import annotations

from dataclasses import dataclass

INGEST = "batchline.ingest"
OUTCOMES = "batchline.outcomes"
DLQ = "batchline.dlq"
ACTIVITY_EVENTS = "batchline.events.activity"
ENTITY_EVENTS_PREFIX = "batchline.events.entity."


def entity_events_topic(entity_name: str) -> str:
    """Domain events of a generic (YAML-declared) entity."""
    return f"{ENTITY_EVENTS_PREFIX}{entity_name.lower()}"


def instance_events_topic(env: str, tenant: str) -> str:
    """FOLIO's inventory topic naming: ``{env}.{tenant}.inventory.instance``."""
    return f"{env}.{tenant}.inventory.instance"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def core_topics(ingest_partitions: int, outcome_partitions: int) -> list[TopicSpec]:
    """Topics the pipeline needs before it can accept work."""
    return [
        TopicSpec(INGEST, ingest_partitions),
        TopicSpec(OUTCOMES, outcome_partitions),
        TopicSpec(DLQ, 1),
        TopicSpec(ACTIVITY_EVENTS, ingest_partitions),
    ]
