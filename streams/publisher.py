"""Front-door side of ``batchline.ingest``: split a batch into chunk envelopes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from batchline.vocabulary import Operation
from streams import codec, topics
from streams.envelopes import ChunkOptions
from streams.producer import OutgoingMessage


def chunk_messages(
    batch_id: str,
    entity: str,
    records: Sequence[Any],
    chunk_size: int,
    options: ChunkOptions,
    *,
    record_count: int | None = None,
    attempt: int = 0,
    indices: Sequence[int] | None = None,
    operation: Operation = Operation.INSERT,
) -> Iterator[OutgoingMessage]:
    """Envelopes for ``records``: consecutive indices, or the explicit ``indices`` of a retry.

    Built as plain dicts (the envelope model's field names) because validating every record
    twice on the hot path buys nothing: the inserter validates what it consumes.
    """
    key = batch_id.encode()
    total = record_count if record_count is not None else len(records)
    option_fields = options.model_dump()
    for start in range(0, len(records), chunk_size):
        envelope: dict[str, Any] = {
            "schema_version": 1,
            "operation": operation,
            "entity": entity,
            "batch_id": batch_id,
            "attempt": attempt,
            "record_count": total,
            "first_index": start if indices is None else 0,
            "records": records[start : start + chunk_size],
            "options": option_fields,
        }
        if indices is not None:
            envelope["indices"] = list(indices[start : start + chunk_size])
        yield OutgoingMessage(topics.INGEST, codec.dumps(envelope), key)
