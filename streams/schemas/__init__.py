"""JSON Schemas of the Kafka contracts, generated from the pydantic models.

``python -m streams.schemas`` rewrites the checked-in ``*.schema.json`` files next to this
module; ``python -m streams.schemas --check`` (and a unit test) fails when a model changed
and its schema file did not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from streams.deadletter import DeadLetterHeaders
from streams.envelopes import IngestChunk
from streams.events import ChunkOutcome, DomainEvent

SCHEMA_DIR = Path(__file__).parent
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Contract:
    file_name: str
    model: type[BaseModel]
    # What a producer may send (validation) or what a consumer receives (serialization).
    mode: Literal["validation", "serialization"]


CONTRACTS = (
    Contract("ingest-chunk.schema.json", IngestChunk, "validation"),
    Contract("chunk-outcome.schema.json", ChunkOutcome, "serialization"),
    Contract("domain-event.schema.json", DomainEvent, "serialization"),
    Contract("dead-letter-headers.schema.json", DeadLetterHeaders, "serialization"),
)


def schema_of(contract: Contract) -> dict[str, Any]:
    generated = contract.model.model_json_schema(mode=contract.mode, by_alias=True)
    return {"$schema": _DIALECT, **generated}


def render(contract: Contract) -> str:
    return json.dumps(schema_of(contract), indent=2, ensure_ascii=False) + "\n"


def write_all(folder: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for contract in CONTRACTS:
        path = folder / contract.file_name
        path.write_text(render(contract), encoding="utf-8")
        written.append(path)
    return written


def out_of_date(folder: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files missing or different from what the models generate."""
    stale = []
    for contract in CONTRACTS:
        path = folder / contract.file_name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != render(contract):
            stale.append(contract.file_name)
    return stale
