"""A lone surrogate (JSON ``"\\ud800"``) in one record fails that record alone, on every
front door, as a NUL character does: PostgreSQL cannot store either, but the rest of the
batch (chunk, file) is the client's good data. A /data list is one transaction, so the list is
refused, naming the record and field.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import orjson

from batchline.settings import Settings
from consumers.app import WorkerResources
from streams import topics
from tests.integration.activities import BASE, JSON, activity, stored_activities
from tests.integration.instances import instance, post_bulk, read_file, write_file
from tests.integration.kafka import completed_batch, produce, read_all

SURROGATE_PROBLEM = "lone surrogates (\\ud800-\\udfff, which are no Unicode characters)"


def _with_lone_surrogate(document: dict[str, Any], marker: str) -> bytes:
    """``document`` as JSON, with the string ``marker`` spelled as a lone surrogate."""
    return orjson.dumps(document).replace(f'"{marker}"'.encode(), b'"x\\ud800y"')


async def test_a_lone_surrogate_fails_its_record_alone_over_rest(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    records = [activity(tag, 0), activity(tag, 1, mentor_id="MARK"), activity(tag, 2)]
    body = _with_lone_surrogate({"activities": records}, "MARK")

    async with http.post(BASE, data=body, headers=JSON) as response:
        assert response.status == 201
        answer = await response.json()

    assert (answer["status"], answer["inserted_count"], answer["failed_count"]) == (
        "completed",
        2,
        1,
    )
    failed = answer["results"][1]
    assert (failed["status"], failed["error"]) == ("failed", "validation_error")
    assert failed["details"][0]["type"] == "lone_surrogate"
    assert await stored_activities(pg, tag) == 2


async def test_a_lone_surrogate_fails_its_record_alone_in_a_kafka_chunk(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    batch_id = f"surrogate-{tag}"
    chunk = {
        "entity": "activity",
        "batch_id": batch_id,
        "records": [activity(tag, 0), activity(tag, 1, activity_type="MARK"), activity(tag, 2)],
    }
    bootstrap = settings.require_bootstrap_servers()
    letters_before = len(read_all(bootstrap, topics.DLQ))

    produce(bootstrap, topics.INGEST, [(batch_id.encode(), _with_lone_surrogate(chunk, "MARK"))])
    body = await completed_batch(http, batch_id)

    assert (body["inserted_count"], body["failed_count"]) == (2, 1)
    assert body["results"][1]["details"] == [
        {
            "field": None,
            "message": f"Text must not contain {SURROGATE_PROBLEM}",
            "type": "lone_surrogate",
        }
    ]
    assert await stored_activities(pg, tag) == 2
    assert len(read_all(bootstrap, topics.DLQ)) == letters_before


async def test_a_lone_surrogate_in_a_data_list_is_a_400_naming_record_and_field(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    records = [{"id": f"{tag}-a", "description": "fine"}, {"id": f"{tag}-b", "description": "MARK"}]
    body = _with_lone_surrogate({"data": records}, "MARK")

    async with http.post("/data/category", data=body, headers=JSON) as response:
        status, answer = response.status, await response.json()

    reason = (
        "Unable to convert field description - STRING - for value x\\ud800y:"
        f" text must not contain {SURROGATE_PROBLEM}"
    )
    assert status == 400
    assert answer["error"]["reason"] == reason
    assert answer["error"]["errors"][0]["record"] == 1
    assert (
        await pg.fetchval("SELECT count(*) FROM entity_category WHERE id LIKE $1", f"{tag}%") == 0
    )


async def test_a_lone_surrogate_fails_its_line_alone_in_a_bulk_file(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    marked = orjson.dumps(instance(tag, 1, title="MARK")).replace(b'"MARK"', b'"x\\ud800y"')
    write_file(settings, f"{tag}/surrogate", [instance(tag, 0), marked, instance(tag, 2)])

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/surrogate"})

    assert (status, body["errorsNumber"]) == (201, 1)
    assert read_file(settings, f"{tag}/surrogate_errors").decode().splitlines() == [
        f"2, Text must not contain {SURROGATE_PROBLEM}"
    ]
    assert read_file(settings, f"{tag}/surrogate_failedEntities") == marked + b"\n"
