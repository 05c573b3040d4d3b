"""Activity domain events: after commit, at least once, with a stable eventId, only when asked."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import orjson

from batchline.settings import Settings
from consumers.app import WorkerResources
from tests.integration.activities import BASE, activity
from tests.integration.kafka import completed_batch, produce, read_all, wait_for_records

EVENTS = "batchline.events.activity"
SCHEMA = Path(__file__).parents[2] / "streams" / "schemas" / "domain-event.schema.json"


async def test_a_batch_that_asks_for_events_gets_one_per_stored_record(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    records = [activity(tag, 0), activity(tag, 1, duration_minutes=0), activity(tag, 2)]
    async with http.post(
        BASE, params={"publish_events": "true"}, json={"activities": records}
    ) as response:
        assert response.status == 201
        body = await response.json()
    ids = {r["activity_id"].encode() for r in body["results"] if r["status"] == "success"}
    assert settings.kafka_bootstrap_servers is not None

    events = await wait_for_records(
        settings.kafka_bootstrap_servers, EVENTS, lambda r: r.key in ids, count=2
    )

    documents = [orjson.loads(e.value or b"") for e in events]
    assert {d["new"]["id"].encode() for d in documents} == ids
    assert {d["type"] for d in documents} == {"CREATE"}
    assert {d["entity"] for d in documents} == {"activity"}
    assert all(d["new"]["coordinator_id"] == f"coord-{tag}" for d in documents)
    for document in documents:
        assert uuid.UUID(document["eventId"])
        _assert_matches_published_schema(document)
    # Sent and confirmed: nothing of this batch waits in the outbox.
    assert (
        await pg.fetchval("SELECT count(*) FROM event_outbox WHERE batch_id = $1", body["id"]) == 0
    )


async def test_no_events_unless_asked(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    quiet = await _post(http, [activity(tag, 1)], publish_events=False)
    asked = await _post(http, [activity(tag, 0)], publish_events=True)
    assert settings.kafka_bootstrap_servers is not None

    # The inserter finishes a chunk, events sent and acknowledged, before it takes the next:
    # once the later batch's event is on the topic, an event of the earlier one would be too.
    await wait_for_records(settings.kafka_bootstrap_servers, EVENTS, lambda r: r.key == asked)
    events = await asyncio.to_thread(read_all, settings.kafka_bootstrap_servers, EVENTS)

    assert quiet not in {e.key for e in events}


async def test_a_redelivered_chunk_republishes_with_the_same_event_id(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    batch_id = f"events-twice-{tag}"
    envelope = orjson.dumps(
        {
            "entity": "activity",
            "batch_id": batch_id,
            "records": [activity(tag, 0)],
            "options": {"publish_events": True},
        }
    )
    assert settings.kafka_bootstrap_servers is not None

    produce(
        settings.kafka_bootstrap_servers,
        "batchline.ingest",
        [(batch_id.encode(), envelope), (batch_id.encode(), envelope)],
    )

    body = await completed_batch(http, batch_id)
    key = body["results"][0]["activity_id"].encode()
    events = await wait_for_records(
        settings.kafka_bootstrap_servers, EVENTS, lambda r: r.key == key
    )
    assert len({orjson.loads(e.value or b"")["eventId"] for e in events}) == 1


async def test_a_batch_id_used_again_after_a_delete_gets_new_event_ids(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    # Consumers de-duplicate on eventId: the second batch's events must not look like the
    # first one's.
    batch_id = f"events-reused-{tag}"
    assert settings.kafka_bootstrap_servers is not None
    keys = []
    for number in (0, 1):
        envelope = {
            "entity": "activity",
            "batch_id": batch_id,
            "records": [activity(tag, number)],
            "options": {"publish_events": True},
        }
        produce(
            settings.kafka_bootstrap_servers,
            "batchline.ingest",
            [(batch_id.encode(), orjson.dumps(envelope))],
        )
        body = await completed_batch(http, batch_id)
        keys.append(body["results"][0]["activity_id"].encode())
        if number == 0:
            async with http.delete(f"{BASE}/{batch_id}") as response:
                assert response.status == 200

    events = await wait_for_records(
        settings.kafka_bootstrap_servers, EVENTS, lambda r: r.key in keys, count=2
    )
    assert len({orjson.loads(e.value or b"")["eventId"] for e in events}) == 2


async def _post(
    http: aiohttp.ClientSession, records: list[dict[str, object]], *, publish_events: bool
) -> bytes:
    params = {"publish_events": str(publish_events).lower()}
    async with http.post(BASE, params=params, json={"activities": records}) as response:
        assert response.status == 201
        body = await response.json()
    activity_id: str = body["results"][0]["activity_id"]
    return activity_id.encode()


def _assert_matches_published_schema(document: dict[str, object]) -> None:
    """The properties, required fields and closed shape the JSON Schema file publishes."""
    schema = json.loads(SCHEMA.read_text())
    assert set(schema["required"]) <= set(document)
    assert set(document) <= set(schema["properties"])
    assert document["type"] in schema["properties"]["type"]["enum"]
