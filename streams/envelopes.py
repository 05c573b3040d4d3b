"""The ingest envelope: one Kafka message on ``batchline.ingest`` carries a chunk of records.

Any Kafka client may produce these directly; the JSON Schema in ``streams/schemas`` is
generated from this model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from batchline.tenants import TENANT_PATTERN

# Counts and indices are PostgreSQL integers.
MAX_INT32 = 2**31 - 1


def _json_integer(value: Any) -> Any:
    # As the published schema says: "1" is no count and true no index, while 1.0 is an
    # integer in JSON Schema. (pydantic's lax int takes all three, its strict one none.)
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


# Bounds first, so the generated schema states them as minimum and maximum.
_Position = Annotated[int, Field(ge=0, le=MAX_INT32), BeforeValidator(_json_integer)]
_Count = Annotated[int, Field(ge=1, le=MAX_INT32), BeforeValidator(_json_integer)]

ACTIVITY_ENTITY = "activity"
INSTANCE_ENTITY = "instance"
# Entities whose writer resolves a unique conflict by updating the existing row; the
# others upsert by design (instances) or have PUT/PATCH for it (generic entities).
IGNORE_CONSTRAINTS_ENTITIES = frozenset({ACTIVITY_ENTITY})


class ChunkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ignore_constraints: StrictBool = Field(
        default=False, description="Resolve a unique conflict by updating the existing row."
    )
    publish_events: StrictBool = Field(
        default=False, description="Publish domain events after commit."
    )
    tenant: str | None = Field(
        default=None,
        pattern=TENANT_PATTERN,
        description="Tenant for FOLIO-style domain events; part of a topic name.",
    )
    atomic: StrictBool = Field(
        default=False, description="All records in one transaction: every one succeeds or none."
    )


class IngestChunk(BaseModel):
    """A slice of one batch. Chunks of a batch share ``batch_id`` and the Kafka key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    operation: Literal["insert", "upsert", "update", "patch", "delete"] = Field(
        default="insert",
        description="insert: new records; upsert: insert or replace by key; update/patch/"
        "delete: change existing records by key. Which ones an entity takes is its writer's.",
    )
    entity: str = Field(min_length=1, description="`activity`, `instance` or a YAML entity name.")
    batch_id: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="Chunks of one batch share it; it is the id in /api/v1/batch-inserts/{id}. "
        "Omit to have one derived from the first chunk's position: "
        "kafka-<topic>-<partition>-<offset>.",
    )
    attempt: _Position = Field(default=0, description="0 for the first run, +1 per retry.")
    record_count: _Count | None = Field(
        default=None, description="Records in the whole batch; omit when this chunk is all."
    )
    first_index: _Position = Field(default=0, description="Batch index of records[0].")
    indices: list[_Position] | None = Field(
        default=None,
        description="Explicit, distinct batch indices (retries); default consecutive.",
    )
    records: list[Any] = Field(min_length=1, description="The records, validated per entity.")
    options: ChunkOptions = Field(default_factory=ChunkOptions)

    @model_validator(mode="after")
    def _indices_match_records(self) -> IngestChunk:
        if self.indices is not None and len(self.indices) != len(self.records):
            raise ValueError("indices must have one entry per record")
        if self.indices is not None and len(set(self.indices)) != len(self.indices):
            raise ValueError("indices must be distinct")
        total = self.total_records
        if max(self.record_indices()) >= total:
            raise ValueError("a record index is beyond record_count")
        return self

    @property
    def total_records(self) -> int:
        return self.record_count if self.record_count is not None else len(self.records)

    def record_indices(self) -> list[int]:
        if self.indices is not None:
            return self.indices
        return list(range(self.first_index, self.first_index + len(self.records)))
