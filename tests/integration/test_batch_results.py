"""A batch's results filtered and paged (?results=, results_offset, results_limit), and
batches whose size a message merely states."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import orjson

from batchline.settings import Settings
from consumers.app import WorkerResources
from sql.stale_batches import settle_stale_batches
from tests.integration.activities import BASE, activity, post_batch
from tests.integration.kafka import completed_batch, produce, wait_for_records

INGEST = "batchline.ingest"


async def _get(http: aiohttp.ClientSession, batch_id: str, **query: Any) -> dict[str, Any]:
    async with http.get(f"{BASE}/{batch_id}", params=query) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def test_results_are_filtered_and_paged_and_a_retried_record_shows_its_newer_result(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    # 2,500 records: three chunks, so pages cross chunk boundaries. Index 1 repeats index
    # 0's key (fails, then is retried with ignore_constraints); 1,500 has no duration.
    records = [activity(tag, n) for n in range(2500)]
    records[1] = activity(tag, 0, duration_minutes=45)
    records[1500] = {k: v for k, v in activity(tag, 1500).items() if k != "duration_minutes"}
    status, created = await post_batch(http, records)
    assert status == 201
    batch_id = created["id"]
    assert (created["inserted_count"], created["failed_count"]) == (2498, 2)

    # 1,500 fails again (its payload has no duration): the newer failure is its result.
    async with http.put(
        f"{BASE}/{batch_id}", json={"retry_indices": [1, 1500], "ignore_constraints": True}
    ) as response:
        assert response.status == 200
        retried = await response.json()
    assert (retried["inserted_count"], retried["updated_count"], retried["failed_count"]) == (
        2498,
        1,
        1,
    )

    # The retry's results sit beside the rows they replace, not in one row spanning both.
    retry_rows = await pg.fetch(
        "SELECT first_index, last_index FROM chunk_result WHERE batch_id = $1 AND attempt = 1"
        " ORDER BY first_index",
        batch_id,
    )
    assert [tuple(r) for r in retry_rows] == [(1, 1), (1500, 1500)]

    failed = await _get(http, batch_id, results="failed")
    assert failed["results_total"] == 1
    assert [(r["index"], r["error"]) for r in failed["results"]] == [(1500, "validation_error")]

    succeeded = await _get(http, batch_id, results="succeeded", results_limit=3)
    assert succeeded["results_total"] == 2499
    assert [(r["index"], r["result"]) for r in succeeded["results"]] == [
        (0, "created"),
        (1, "updated"),  # the retry's result, not the first attempt's failure
        (2, "created"),
    ]
    assert succeeded["results"][1]["activity_id"] == succeeded["results"][0]["activity_id"]

    across = await _get(http, batch_id, results_offset=998, results_limit=4)
    assert across["results_total"] == 2500
    assert [r["index"] for r in across["results"]] == [998, 999, 1000, 1001]
    past_failure = await _get(http, batch_id, results="succeeded", results_offset=1498)
    assert [r["index"] for r in past_failure["results"][:3]] == [1498, 1499, 1501]
    assert len(past_failure["results"]) == 2499 - 1498

    whole = await _get(http, batch_id)
    assert [r["index"] for r in whole["results"]] == list(range(2500))
    assert whole["results"][1]["status"] == "success"

    beyond = await _get(http, batch_id, results_offset=5000)
    assert (beyond["results"], beyond["results_total"]) == ([], 2500)
    none = await _get(http, batch_id, results="none")
    assert "results" not in none
    assert none["record_count"] == 2500


async def test_bad_results_parameters_are_422(http: aiohttp.ClientSession, tag: str) -> None:
    _, created = await post_batch(http, [activity(tag, 0)])
    for query in (
        {"results": "some"},
        {"results_offset": "-1"},
        {"results_limit": "0"},
        {"results_limit": "x"},
    ):
        async with http.get(f"{BASE}/{created['id']}", params=query) as response:
            assert response.status == 422, query
            assert (await response.json())["error"]["code"] == "validation_failed"
    capped = await _get(http, created["id"], results_limit=10**9)
    assert len(capped["results"]) == 1


async def test_a_chunk_stating_more_records_than_a_batch_may_have_is_dead_lettered(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    batch_id = f"huge-{tag}"
    chunk = {
        "entity": "activity",
        "batch_id": batch_id,
        "record_count": 2**31 - 1,
        "records": [activity(tag, 0)],
    }
    bootstrap = settings.kafka_bootstrap_servers or ""

    produce(bootstrap, INGEST, [(batch_id.encode(), orjson.dumps(chunk))])

    [letter] = await wait_for_records(
        bootstrap, "batchline.dlq", lambda r: r.key == batch_id.encode()
    )
    assert letter.headers["batchline.stage"] == b"validate"
    assert letter.headers["batchline.error.class"] == b"BatchTooLarge"
    assert b"BATCHLINE_MAX_RECORDS_PER_BATCH" in letter.headers["batchline.error.message"]
    async with http.get(f"{BASE}/{batch_id}") as response:
        assert response.status == 404  # nothing of it was written


async def test_a_batch_whose_other_records_never_arrive_is_settled_as_one_range(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    # One record of a batch that says it has a million (as many as a batch may have).
    batch_id = f"mostly-lost-{tag}"
    count = settings.max_records_per_batch
    chunk = {
        "entity": "activity",
        "batch_id": batch_id,
        "record_count": count,
        "first_index": 5,
        "records": [activity(tag, 0)],
    }
    produce(
        settings.kafka_bootstrap_servers or "", INGEST, [(batch_id.encode(), orjson.dumps(chunk))]
    )
    for _ in range(300):
        if await pg.fetchval("SELECT inserted_count FROM batch WHERE id = $1", batch_id) == 1:
            break
        await asyncio.sleep(0.1)
    await pg.execute(
        "UPDATE batch SET progressed_at = now() - interval '1 hour' WHERE id = $1", batch_id
    )

    assert batch_id in await settle_stale_batches(worker.pool, 60)

    body = await completed_batch(http, batch_id)
    assert (body["status"], body["inserted_count"], body["failed_count"]) == (
        "failed",
        1,
        count - 1,
    )
    # Two ranges of records that never arrived, not a row per record.
    rows = await pg.fetch(
        "SELECT first_index, last_index FROM chunk_result WHERE batch_id = $1"
        " AND lost_reason IS NOT NULL ORDER BY first_index",
        batch_id,
    )
    assert [tuple(r) for r in rows] == [(0, 4), (6, count - 1)]
    assert body["results_total"] == count
    assert len(body["results"]) == settings.results_limit_max
    page = await _get(http, batch_id, results="failed", results_offset=count - 3)
    assert [(r["index"], r["error"]) for r in page["results"]] == [
        (count - 2, "never_delivered"),
        (count - 1, "never_delivered"),
    ]
    around = await _get(http, batch_id, results_offset=4, results_limit=3)
    assert [(r["index"], r["status"]) for r in around["results"]] == [
        (4, "failed"),
        (5, "success"),
        (6, "failed"),
    ]
