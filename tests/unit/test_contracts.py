"""The published JSON Schemas match the pydantic models they are generated from."""

from __future__ import annotations

import json
from pathlib import Path

from streams.schemas import CONTRACTS, SCHEMA_DIR, out_of_date, schema_of, write_all


def test_every_checked_in_schema_matches_its_model() -> None:
    assert out_of_date() == [], "a model changed: run `python -m streams.schemas` and commit"


def test_a_stale_or_missing_schema_is_reported(tmp_path: Path) -> None:
    write_all(tmp_path)
    edited = tmp_path / "chunk-outcome.schema.json"
    edited.write_text(edited.read_text().replace('"index"', '"position"'))
    (tmp_path / "domain-event.schema.json").unlink()

    assert out_of_date(tmp_path) == ["chunk-outcome.schema.json", "domain-event.schema.json"]


def test_schemas_describe_the_wire_names() -> None:
    schemas = {c.file_name: schema_of(c) for c in CONTRACTS}

    chunk = schemas["ingest-chunk.schema.json"]
    assert {"entity", "records"} <= set(chunk["required"])
    assert chunk["additionalProperties"] is False
    headers = schemas["dead-letter-headers.schema.json"]["properties"]
    assert {
        "batchline.error.class",
        "batchline.error.message",
        "batchline.source.topic",
        "batchline.source.partition",
        "batchline.source.offset",
        "batchline.stage",
        "batchline.attempts",
        "batchline.first_failed_at",
        "batchline.replay.count",
    } == set(headers)
    assert set(schemas["domain-event.schema.json"]["required"]) == {"eventId", "eventTs", "type"}
    for contract in CONTRACTS:
        on_disk = json.loads((SCHEMA_DIR / contract.file_name).read_text())
        assert on_disk["$schema"].startswith("https://json-schema.org/")
