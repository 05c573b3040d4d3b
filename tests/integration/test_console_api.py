"""What the console reads, through the public API: batch list filters and search, a batch's
failures with payloads (by error code, paged, as NDJSON), /ops/overview, and the console's own
files."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from batchline.settings import Settings
from consumers.app import WorkerResources
from tests.integration.activities import BASE, activity, post_batch
from tests.integration.kafka import completed_batch, produce


async def _listed(http: aiohttp.ClientSession, **params: Any) -> dict[str, Any]:
    query = {"limit": 100, "include": "entity,source", **params}
    async with http.get(BASE, params=query) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
    return body


async def test_batches_are_filtered_by_entity_and_source_and_found_by_id_or_key(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    key = f"list-{tag}"
    status, rest = await post_batch(http, [activity(tag, 0)], headers={"Idempotency-Key": key})
    assert status == 201
    async with http.post("/data/category", json={"data": {"id": f"list-{tag}"}}) as response:
        assert response.status == 200
    kafka_id = f"list-kafka-{tag}"
    chunk = {"entity": "activity", "batch_id": kafka_id, "record_count": 1, "first_index": 0}
    chunk["records"] = [activity(f"{tag}-k", 0)]
    assert settings.kafka_bootstrap_servers is not None
    produce(
        settings.kafka_bootstrap_servers,
        "batchline.ingest",
        [(kafka_id.encode(), orjson.dumps(chunk))],
    )
    await completed_batch(http, kafka_id)

    [found] = (await _listed(http, q=key))["data"]
    assert found["id"] == rest["id"]
    assert (found["entity"], found["source"], found["status"]) == ("activity", "rest", "completed")
    assert found["created_at"].endswith("Z")
    assert [b["id"] for b in (await _listed(http, q=rest["id"]))["data"]] == [rest["id"]]
    nothing = await _listed(http, q=f"no-such-{tag}")
    assert (nothing["data"], nothing["pagination"]["total"]) == ([], 0)

    by_kafka = await _listed(http, source="kafka")
    assert kafka_id in {b["id"] for b in by_kafka["data"]}
    assert {b["source"] for b in by_kafka["data"]} == {"kafka"}
    categories = await _listed(http, entity="CATEGORY", status="completed")
    assert categories["data"], categories
    assert {b["entity"] for b in categories["data"]} == {"category"}
    assert rest["id"] not in {b["id"] for b in categories["data"]}
    # Filters combine: this key's batch is no Kafka batch.
    assert (await _listed(http, q=key, source="kafka"))["pagination"]["total"] == 0

    # Without include, items keep the contract's fields.
    async with http.get(BASE, params={"q": key}) as response:
        [plain] = (await response.json())["data"]
    assert {"entity", "source"}.isdisjoint(plain)
    assert {"id", "record_count", "status", "inserted_count", "failed_count"} <= set(plain)
    async with http.get(BASE, params={"q": key, "include": "source"}) as response:
        [sourced] = (await response.json())["data"]
    assert set(sourced) - set(plain) == {"source"}

    for bad in ({"source": "ftp"}, {"status": "done"}, {"include": "entity,secrets"}):
        async with http.get(BASE, params=bad) as response:
            assert response.status == 422
            assert (await response.json())["error"]["code"] == "validation_failed"


async def test_failures_come_grouped_by_error_paged_and_as_ndjson(
    worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    records = [activity(tag, n, duration_minutes=0) for n in range(5)]
    records[0] = activity(tag, 0)
    records[1] = activity(tag, 0)  # duplicate of record 0
    status, batch = await post_batch(http, records)
    assert status == 201
    failures = f"{BASE}/{batch['id']}/failures"

    async with http.get(failures, params={"limit": 2}) as response:
        assert response.status == 200
        first = await response.json()
    assert first["batch_id"] == batch["id"]
    assert first["failed_count"] == 4
    assert first["errors"] == [
        {"error": "validation_error", "count": 3},
        {"error": "unique_constraint_violation", "count": 1},
    ]
    assert first["pagination"] == {"offset": 0, "limit": 2, "total": 4}
    assert [(f["index"], f["error"]) for f in first["data"]] == [
        (1, "unique_constraint_violation"),
        (2, "validation_error"),
    ]
    assert first["data"][0]["payload"] == records[1]
    assert first["data"][1]["details"][0]["field"] == "duration_minutes"

    params = {"error": "validation_error", "offset": 2, "limit": 2}
    async with http.get(failures, params=params) as response:
        page = await response.json()
    assert [f["index"] for f in page["data"]] == [4]
    assert page["pagination"] == {"offset": 2, "limit": 2, "total": 3}

    async with http.get(f"{failures}.ndjson") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        assert (
            f'filename="{batch["id"]}-failures.ndjson"' in response.headers["Content-Disposition"]
        )
        lines = (await response.text()).splitlines()
    assert [orjson.loads(line)["index"] for line in lines] == [1, 2, 3, 4]
    assert orjson.loads(lines[2])["payload"] == records[3]
    params = {"error": "unique_constraint_violation"}
    async with http.get(f"{failures}.ndjson", params=params) as response:
        assert [orjson.loads(line)["index"] for line in (await response.text()).splitlines()] == [1]

    async with http.get(f"{BASE}/no-such-{tag}/failures") as response:
        assert response.status == 404
    for bad in (
        {"offset": "-1"},
        {"limit": "0"},
        {"error": 'x"\r\nSet-Cookie: a=b'},
    ):
        async with http.get(failures, params=bad) as response:
            assert response.status == 422, bad


async def test_a_batch_without_failures_has_an_empty_list(
    worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    status, batch = await post_batch(http, [activity(tag, 0)])
    assert status == 201
    async with http.get(f"{BASE}/{batch['id']}/failures") as response:
        body = await response.json()
    assert (body["errors"], body["data"], body["pagination"]["total"]) == ([], [], 0)
    async with http.get(f"{BASE}/{batch['id']}/failures.ndjson") as response:
        assert await response.text() == ""


async def _overview(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/ops/overview") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return body


async def test_the_overview_counts_batches_lag_and_dead_letters(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    before = await _overview(http)
    status, _ = await post_batch(http, [activity(tag, n) for n in range(1500)])
    assert status == 201
    assert settings.kafka_bootstrap_servers is not None
    produce(settings.kafka_bootstrap_servers, "batchline.ingest", [(tag.encode(), b"\xffpoison")])

    for _ in range(200):
        after = await _overview(http)
        if after["dead_letters"]["pending"] > before["dead_letters"]["pending"]:
            break
        await asyncio.sleep(0.1)
    assert after["dead_letters"]["pending"] == before["dead_letters"]["pending"] + 1
    assert set(after["dead_letters"]) == {"pending", "replayed", "parked"}
    assert after["batches"]["completed"] >= before["batches"]["completed"] + 1
    assert set(after["batches"]) == {"processing", "completed", "failed"}
    assert after["unavailable"] == {}

    lags = after["consumer_lag"]
    by_topic = {
        topic: sorted(lag["partition"] for lag in lags if lag["topic"] == topic)
        for topic in ("batchline.ingest", "batchline.outcomes")
    }
    assert by_topic == {"batchline.ingest": [0, 1, 2, 3], "batchline.outcomes": [0, 1, 2, 3]}
    groups = {lag["topic"]: lag["group"] for lag in lags}
    assert groups == {
        "batchline.ingest": settings.consumer_group,
        "batchline.outcomes": settings.projector_group,
    }
    # The batch's outcomes were projected: the projector's offsets are committed.
    projected = [lag["committed"] for lag in lags if lag["topic"] == "batchline.outcomes"]
    assert any(committed for committed in projected)
    for lag in lags:
        assert lag["lag"] >= 0
        if lag["committed"] is not None:
            assert lag["lag"] == lag["end"] - lag["committed"]


async def test_the_console_files_are_served_with_a_strict_policy(
    api_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get("/console", allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == "/console/"
    async with http.get("/console/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert '<script type="module" src="app.js"></script>' in page
    # Nothing is loaded from another origin.
    assert "http://" not in page
    assert "https://" not in page
    async with http.get("/console/app.js") as response:
        assert response.status == 200
        assert response.content_type == "text/javascript"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for missing in ("/console/nope.js", "/console/..%2Fconsole.py", "/console/console.py"):
        async with http.get(missing) as response:
            assert response.status == 404, missing
