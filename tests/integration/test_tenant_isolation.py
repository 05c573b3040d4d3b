"""Two FOLIO tenants on one batchline: each one's instances, batches, results, error files
and events are invisible and unwritable to the other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import orjson

from batchline.cli.embedded import free_port
from batchline.cli.runtime import serving_api
from batchline.settings import Settings
from consumers.app import WorkerResources
from streams.topics import INGEST, instance_events_topic
from tests.integration.activities import BASE
from tests.integration.instances import instance, new_id, post_bulk, write_file
from tests.integration.kafka import produce, wait_for_records


def _tenants(tag: str) -> tuple[str, str]:
    return f"tenanta_{tag}", f"tenantb_{tag}"


async def _stored(pg: asyncpg.Connection, tenant: str, instance_id: str) -> dict[str, Any] | None:
    document = await pg.fetchval(
        "SELECT jsonb FROM instance WHERE tenant = $1 AND id = $2::uuid", tenant, instance_id
    )
    return None if document is None else dict(document)


def _batch_path(response: aiohttp.ClientResponse) -> str:
    location = response.headers["Location"]
    assert location.startswith(BASE)
    return location


async def test_the_same_instance_id_in_two_tenants_is_two_records(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    # The report: B's file with A's id and _version 1 overwrote A's record.
    a, b = _tenants(tag)
    shared_id = new_id()
    write_file(settings, f"{tag}/a.ndjson", [instance(tag, 0, id=shared_id, hrid=f"h-{tag}")])
    write_file(
        settings,
        f"{tag}/b.ndjson",
        [instance(tag, 1, id=shared_id, hrid=f"h-{tag}", _version=1)],
    )

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/a.ndjson"}, tenant=a)
    assert (status, body["errorsNumber"]) == (201, 0)
    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/b.ndjson"}, tenant=b)
    assert (status, body["errorsNumber"]) == (201, 0)

    stored_a, stored_b = await _stored(pg, a, shared_id), await _stored(pg, b, shared_id)
    assert stored_a is not None
    assert stored_b is not None
    assert (stored_a["title"], stored_a["_version"]) == (f"Title 0 of {tag}", 1)
    assert (stored_b["title"], stored_b["_version"]) == (f"Title 1 of {tag}", 1)
    assert stored_a["hrid"] == stored_b["hrid"] == f"h-{tag}"  # hrids are unique per tenant


async def test_a_tenants_update_changes_only_its_own_record(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    a, b = _tenants(tag)
    shared_id = new_id()
    write_file(settings, f"{tag}/v1", [instance(tag, 0, id=shared_id)])
    for tenant in (a, b):
        await post_bulk(http, {"recordsFileName": f"{tag}/v1"}, tenant=tenant)
    write_file(settings, f"{tag}/v2", [instance(tag, 1, id=shared_id, _version=1)])

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/v2"}, tenant=b)

    assert (status, body["errorsNumber"]) == (201, 0)
    stored_a, stored_b = await _stored(pg, a, shared_id), await _stored(pg, b, shared_id)
    assert stored_a is not None
    assert stored_b is not None
    assert (stored_a["title"], stored_a["_version"]) == (f"Title 0 of {tag}", 1)
    assert (stored_b["title"], stored_b["_version"]) == (f"Title 1 of {tag}", 2)


async def test_a_tenants_batch_and_results_are_invisible_to_another(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    a, b = _tenants(tag)
    write_file(settings, f"{tag}/a.ndjson", [instance(tag, 0), {"title": "no source"}])
    _, body, response = await post_bulk(http, {"recordsFileName": f"{tag}/a.ndjson"}, tenant=a)
    assert body["errorsNumber"] == 1
    path = _batch_path(response)
    batch_id = path.rsplit("/", 1)[1]

    as_a = {"X-Okapi-Tenant": a}
    as_b = {"X-Okapi-Tenant": b}
    async with http.get(path, headers=as_a) as response:
        assert response.status == 200
        assert len((await response.json())["results"]) == 2
    async with http.get(path, headers=as_b) as response:
        assert response.status == 404
    async with http.get(path) as response:  # no header: the default tenant, not A
        assert response.status == 404
    async with http.get(BASE, params={"limit": 100}, headers=as_b) as response:
        assert batch_id not in {batch["id"] for batch in (await response.json())["data"]}
    async with http.get(BASE, params={"limit": 100}, headers=as_a) as response:
        assert batch_id in {batch["id"] for batch in (await response.json())["data"]}
    async with http.put(path, json={"retry_indices": [1]}, headers=as_b) as response:
        assert response.status == 404
    async with http.delete(path, headers=as_b) as response:
        assert response.status == 404
    async with http.get(path, headers=as_a) as response:
        assert response.status == 200  # still there


async def test_events_of_each_tenant_go_to_its_own_topic_with_its_own_old_values(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    a, b = _tenants(tag)
    shared_id = new_id()
    write_file(settings, f"{tag}/v1", [instance(tag, 0, id=shared_id)])
    await post_bulk(http, {"recordsFileName": f"{tag}/v1"}, tenant=a)
    write_file(settings, f"{tag}/b", [instance(tag, 1, id=shared_id)])
    await post_bulk(http, {"recordsFileName": f"{tag}/b"}, tenant=b)

    bootstrap = settings.require_bootstrap_servers()
    key = shared_id.encode()
    [event_a] = await wait_for_records(
        bootstrap, instance_events_topic(settings.env, a), lambda r: r.key == key
    )
    [event_b] = await wait_for_records(
        bootstrap, instance_events_topic(settings.env, b), lambda r: r.key == key
    )
    value_a, value_b = orjson.loads(event_a.value or b""), orjson.loads(event_b.value or b"")
    assert (value_a["type"], value_a["tenant"]) == ("CREATE", a)
    assert (value_b["type"], value_b["tenant"]) == ("CREATE", b)  # not an UPDATE of A's
    assert value_b.get("old") is None
    assert value_b["new"]["title"] == f"Title 1 of {tag}"
    assert event_b.headers["folio.tenantId"] == b.encode()


async def test_a_chunk_produced_for_a_tenant_writes_into_that_tenant_only(
    worker: WorkerResources, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    a, b = _tenants(tag)
    shared_id = new_id()
    for tenant, n in ((a, 0), (b, 1)):
        batch_id = f"kafka-{tenant}"
        envelope = {
            "entity": "instance",
            "operation": "upsert",
            "batch_id": batch_id,
            "record_count": 1,
            "first_index": 0,
            "records": [instance(tag, n, id=shared_id)],
            "options": {"tenant": tenant, "publish_events": False},
        }
        produce(
            settings.require_bootstrap_servers(),
            INGEST,
            [(batch_id.encode(), orjson.dumps(envelope))],
        )
    for _ in range(300):
        if await _stored(pg, a, shared_id) and await _stored(pg, b, shared_id):
            break
        await asyncio.sleep(0.1)

    stored_a, stored_b = await _stored(pg, a, shared_id), await _stored(pg, b, shared_id)
    assert stored_a is not None
    assert stored_b is not None
    assert (stored_a["title"], stored_b["title"]) == (f"Title 0 of {tag}", f"Title 1 of {tag}")
    assert stored_a["_version"] == stored_b["_version"] == 1


@contextlib.asynccontextmanager
async def _api(settings: Settings, **update: Any) -> AsyncIterator[aiohttp.ClientSession]:
    configured = Settings(**(settings.model_dump() | update | {"http_port": free_port()}))
    async with serving_api(configured) as url, aiohttp.ClientSession(base_url=url) as http:
        yield http


async def test_with_prefixes_a_tenant_reads_and_writes_only_under_its_own(
    settings: Settings, worker: WorkerResources, tag: str
) -> None:
    a, b = _tenants(tag)
    write_file(settings, f"{a}/{tag}.ndjson", [instance(tag, 0)])
    async with _api(settings, storage_tenant_prefix="{tenant}/") as http:
        status, body, _ = await post_bulk(http, {"recordsFileName": f"{a}/{tag}.ndjson"}, tenant=b)
        assert status == 422
        assert body["errors"][0]["parameters"] == [
            {"key": "recordsFileName", "value": f"{a}/{tag}.ndjson"}
        ]
        assert f"must be under {b}/" in body["errors"][0]["message"]

        status, body, _ = await post_bulk(http, {"recordsFileName": f"{a}/{tag}.ndjson"}, tenant=a)
        assert (status, body["errorsFileName"]) == (201, f"{a}/{tag}.ndjson_errors")


async def test_only_configured_tenants_are_served(
    settings: Settings, worker: WorkerResources, tag: str
) -> None:
    a, b = _tenants(tag)
    write_file(settings, f"{tag}/x.ndjson", [instance(tag, 0)])
    async with _api(settings, tenants=f"{a},diku") as http:
        status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/x.ndjson"}, tenant=b)
        assert status == 422
        assert body["errors"][0]["parameters"] == [{"key": "X-Okapi-Tenant", "value": b}]
        async with http.get(BASE, headers={"X-Okapi-Tenant": b}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "unknown_tenant"

        status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/x.ndjson"}, tenant=a)
        assert (status, body["errorsNumber"]) == (201, 0)
