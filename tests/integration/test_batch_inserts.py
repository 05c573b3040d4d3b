"""Front door 1 over real HTTP, Kafka and PostgreSQL: the seed's five endpoints."""

from __future__ import annotations

import asyncio
import io
import re

import aiohttp
import asyncpg
import orjson

from batchline.cli.embedded import free_port
from batchline.cli.runtime import serving_api
from batchline.settings import Settings
from tests.integration.activities import BASE, JSON, activity, post_batch, stored_activities
from tests.integration.kafka import completed_batch, produce

ACTIVITY_ID = re.compile(r"^pa-\d{3,}$")
BATCH_ID = re.compile(r"^batch-\d{3,}$")


async def test_seed_post_answers_201_with_the_seed_shape(
    http: aiohttp.ClientSession, tag: str
) -> None:
    status, body = await post_batch(http, [activity(tag, 17), activity(tag, 18)])

    assert status == 201
    assert set(body) == {
        "id",
        "record_count",
        "status",
        "inserted_count",
        "updated_count",
        "failed_count",
        "results",
        "results_total",
    }
    assert BATCH_ID.match(body["id"])
    assert body["record_count"] == 2
    assert body["status"] == "completed"
    assert (body["inserted_count"], body["failed_count"]) == (2, 0)
    assert [set(r) for r in body["results"]] == [{"index", "activity_id", "status", "result"}] * 2
    assert [r["index"] for r in body["results"]] == [0, 1]
    assert all(
        r["status"] == "success" and ACTIVITY_ID.match(r["activity_id"]) for r in body["results"]
    )


async def test_conflicts_in_batch_duplicates_and_invalid_records_fail_per_record(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    _, first = await post_batch(http, [activity(tag, 1)])
    existing_id = first["results"][0]["activity_id"]
    records = [
        activity(tag, 0),
        activity(tag, 1),  # exists from the first batch
        activity(tag, 0, duration_minutes=30),  # same natural key as index 0
        activity(tag, 3, duration_minutes=0, mentor_id=7),
        activity(tag, 4),
        activity(tag, 5, activity_date=86400, activity_type="   "),
    ]

    status, body = await post_batch(http, records)

    assert status == 201
    assert (body["inserted_count"], body["failed_count"]) == (2, 4)
    results = body["results"]
    assert results[0]["status"] == "success"
    key = {
        "coordinator_id": f"coord-{tag}",
        "activity_type": "group_workshop",
        "activity_date": "2026-03-28",
    }
    # Which key, and which stored record (its id) or earlier record of the batch, it hit.
    assert results[1] == {
        "index": 1,
        "activity_id": None,
        "status": "failed",
        "error": "unique_constraint_violation",
        "details": {"key": key | {"mentor_id": "mentor-1"}, "existing_id": existing_id},
    }
    assert results[2] == {
        "index": 2,
        "activity_id": None,
        "status": "failed",
        "error": "unique_constraint_violation",
        "details": {"key": key | {"mentor_id": "mentor-0"}, "first_index": 0},
    }
    assert results[3]["error"] == "validation_error"
    assert {d["field"] for d in results[3]["details"]} == {"duration_minutes", "mentor_id"}
    assert results[4]["status"] == "success"
    assert {d["field"] for d in results[5]["details"]} == {"activity_date", "activity_type"}
    stored = await stored_activities(pg, tag)
    assert stored == 3


async def test_get_returns_the_operation_with_results_and_times(
    http: aiohttp.ClientSession, tag: str
) -> None:
    _, created = await post_batch(http, [activity(tag, 1), activity(tag, 1)])

    async with http.get(f"{BASE}/{created['id']}") as response:
        assert response.status == 200
        body = await response.json()

    assert body["id"] == created["id"]
    assert body["results"] == created["results"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", body["created_at"])
    assert body["completed_at"] >= body["created_at"]
    assert "updated_at" not in body


async def test_list_is_newest_first_paginated_and_filterable(
    http: aiohttp.ClientSession, tag: str
) -> None:
    ids = [(await post_batch(http, [activity(tag, n)]))[1]["id"] for n in range(3)]

    async with http.get(BASE, params={"page": "1", "limit": "2"}) as response:
        assert response.status == 200
        page_one = await response.json()
    async with http.get(BASE, params={"page": "2", "limit": "2"}) as response:
        page_two = await response.json()
    async with http.get(BASE, params={"limit": "100000", "status": "completed"}) as response:
        capped = await response.json()

    assert [b["id"] for b in page_one["data"]] == [ids[2], ids[1]]
    assert page_two["data"][0]["id"] == ids[0]
    assert page_one["pagination"]["limit"] == 2
    assert page_one["pagination"]["total"] >= 3
    assert set(page_one["data"][0]) == {
        "id",
        "record_count",
        "status",
        "inserted_count",
        "updated_count",
        "failed_count",
        "created_at",
    }
    assert capped["pagination"]["limit"] == 100
    assert all(b["status"] == "completed" for b in capped["data"])


async def test_bad_list_parameters_are_422(http: aiohttp.ClientSession) -> None:
    for params in ({"page": "0"}, {"page": "x"}, {"limit": "-1"}, {"status": "done"}):
        async with http.get(BASE, params=params) as response:
            assert response.status == 422, params
            body = await response.json()
            assert body["error"]["code"] == "validation_failed"


async def test_request_level_errors_have_json_bodies(http: aiohttp.ClientSession) -> None:
    cases = [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[]", 422, "validation_failed"),
        (b'{"activities": []}', 422, "validation_failed"),
        (b'{"activities": {"a": 1}}', 422, "validation_failed"),
        (b'{"records": [{}]}', 422, "validation_failed"),
        (b'{"activities": [{}], "extra": 1}', 422, "validation_failed"),
    ]
    for payload, status, code in cases:
        async with http.post(
            BASE, data=payload, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == status, payload
            body = await response.json()
            assert body["error"]["code"] == code
            assert body["error"]["message"]
            assert "details" in body["error"]


async def test_too_many_records_or_bytes_is_413(http: aiohttp.ClientSession, tag: str) -> None:
    status, body = await post_batch(http, [activity(tag, n) for n in range(6001)])
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"

    huge = b'{"activities": [' + b'"' + b"x" * (3 * 1024 * 1024) + b'"]}'
    async with http.post(BASE, data=io.BytesIO(huge), headers=JSON) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "payload_too_large"


async def test_a_batch_whose_chunk_the_broker_cannot_take_is_413_not_a_retryable_503(
    settings: Settings, pg: asyncpg.Connection, tag: str
) -> None:
    roomy = settings.model_copy(update={"max_body_bytes": 40 << 20, "http_port": free_port()})
    record = activity(tag, 0, mentor_id="m" * (17 << 20))
    payload = io.BytesIO(orjson.dumps({"activities": [record]}))
    async with (
        serving_api(roomy) as url,
        aiohttp.ClientSession(base_url=url) as http,
        http.post(BASE, data=payload, headers=JSON) as response,
    ):
        status, body = response.status, await response.json()

    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"]["limit_bytes"] == 16 << 20
    failed = await pg.fetchval(
        "SELECT count(*) FROM batch WHERE status = 'failed' AND failure_reason LIKE 'a chunk%'"
        " AND created_at > now() - interval '1 minute'"
    )
    assert failed >= 1


async def test_unknown_ids_are_404(http: aiohttp.ClientSession) -> None:
    for method, body in (("GET", None), ("PUT", {"retry_indices": [0]}), ("DELETE", None)):
        async with http.request(method, f"{BASE}/batch-999999999", json=body) as response:
            assert response.status == 404, method
            assert (await response.json())["error"]["code"] == "not_found"


async def test_retry_without_ignore_constraints_fails_again(
    http: aiohttp.ClientSession, tag: str
) -> None:
    await post_batch(http, [activity(tag, 1)])
    _, created = await post_batch(http, [activity(tag, 0), activity(tag, 1)])

    async with http.put(
        f"{BASE}/{created['id']}", json={"retry_indices": [1], "ignore_constraints": False}
    ) as response:
        assert response.status == 200
        body = await response.json()

    assert body["id"] == created["id"]
    assert body["status"] == "completed"
    assert (body["inserted_count"], body["failed_count"]) == (1, 1)
    assert set(body) == {
        "id",
        "status",
        "inserted_count",
        "updated_count",
        "failed_count",
        "updated_at",
    }


async def test_retry_with_ignore_constraints_takes_over_the_existing_row(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    _, first = await post_batch(http, [activity(tag, 1, duration_minutes=60)])
    existing_id = first["results"][0]["activity_id"]
    _, created = await post_batch(
        http, [activity(tag, 0), activity(tag, 1, duration_minutes=90), activity(tag, 2)]
    )
    assert created["results"][1]["error"] == "unique_constraint_violation"

    async with http.put(
        f"{BASE}/{created['id']}", json={"retry_indices": [1], "ignore_constraints": True}
    ) as response:
        assert response.status == 200
        body = await response.json()
    async with http.get(f"{BASE}/{created['id']}") as response:
        detail = await response.json()

    # The retried record updated a row: a success, counted as an update (not an insert).
    assert (body["inserted_count"], body["updated_count"], body["failed_count"]) == (2, 1, 0)
    assert body["updated_at"]
    assert detail["results"][1] == {
        "index": 1,
        "activity_id": existing_id,
        "status": "success",
        "result": "updated",
    }
    assert [r["result"] for r in detail["results"]] == ["created", "updated", "created"]
    assert "updated_at" in detail
    duration = await pg.fetchval("SELECT duration_minutes FROM activity WHERE id = $1", existing_id)
    assert duration == 90


async def test_retry_of_indices_that_did_not_fail_or_do_not_exist_is_422(
    http: aiohttp.ClientSession, tag: str
) -> None:
    _, created = await post_batch(http, [activity(tag, 0)])
    for request in (
        {"retry_indices": [0]},
        {"retry_indices": [5]},
        {"retry_indices": []},
        {"retry_indices": ["0"]},
        {"retry_indices": [0], "ignore_constraints": 1},
    ):
        async with http.put(f"{BASE}/{created['id']}", json=request) as response:
            assert response.status == 422, request
            assert (await response.json())["error"]["code"] == "validation_failed"

    for indices, details in (
        ([0], {"out_of_range": [], "not_failed": [0], "without_payload": []}),
        ([5, 3_000_000_000], {"out_of_range": [5, 3_000_000_000], "not_failed": []}),
    ):
        async with http.put(f"{BASE}/{created['id']}", json={"retry_indices": indices}) as response:
            assert response.status == 422, indices
            assert (await response.json())["error"]["details"] == {
                "without_payload": [],
                **details,
            }


async def test_retry_of_a_failed_record_whose_payload_was_not_kept_says_so(
    http: aiohttp.ClientSession, pg: asyncpg.Connection
) -> None:
    # As a record the broker lost before the inserter saw it: a failed result, no ledger row.
    batch_id = await pg.fetchval(
        "INSERT INTO batch (entity, source, record_count, pending_count, status, failed_count)"
        " VALUES ('activity', 'rest', 1, 0, 'failed', 1) RETURNING id"
    )
    await pg.execute(
        "INSERT INTO chunk_result (batch_id, attempt, first_index, last_index, covers,"
        " inserted_count, updated_count, failed_count, lost_reason)"
        " VALUES ($1, -1, 0, 0, '{[0,1)}', 0, 0, 1, 'lost by the broker')",
        batch_id,
    )

    async with http.put(f"{BASE}/{batch_id}", json={"retry_indices": [0]}) as response:
        assert response.status == 422
        error = (await response.json())["error"]
    assert error["details"] == {"out_of_range": [], "not_failed": [], "without_payload": [0]}
    assert "send those again" in error["message"]


async def test_retry_and_delete_of_a_processing_batch_are_409(
    http: aiohttp.ClientSession, pg: asyncpg.Connection
) -> None:
    batch_id = await pg.fetchval(
        "INSERT INTO batch (entity, source, record_count, pending_count)"
        " VALUES ('activity', 'rest', 1, 1) RETURNING id"
    )
    async with http.put(f"{BASE}/{batch_id}", json={"retry_indices": [0]}) as response:
        assert response.status == 409
        assert (await response.json())["error"]["code"] == "batch_processing"
    async with http.delete(f"{BASE}/{batch_id}") as response:
        assert response.status == 409
    await pg.execute("DELETE FROM batch WHERE id = $1", batch_id)


async def test_delete_removes_the_operation_but_not_the_activities(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    _, created = await post_batch(http, [activity(tag, 0)])

    async with http.delete(f"{BASE}/{created['id']}") as response:
        assert response.status == 200
        assert await response.json() == {
            "message": f"Batch insert record {created['id']} deleted successfully"
        }
    async with http.get(f"{BASE}/{created['id']}") as response:
        assert response.status == 404
    assert await stored_activities(pg, tag) == 1
    for table in ("chunk_result", "chunk_ledger"):
        left = await pg.fetchval(f"SELECT count(*) FROM {table} WHERE batch_id = $1", created["id"])
        assert left == 0, table


async def test_two_batches_in_parallel_both_complete(http: aiohttp.ClientSession, tag: str) -> None:
    (s1, b1), (s2, b2) = await asyncio.gather(
        post_batch(http, [activity(tag, n) for n in range(50)]),
        post_batch(http, [activity(tag, n) for n in range(50, 100)]),
    )
    assert (s1, s2) == (201, 201)
    assert b1["inserted_count"] == b2["inserted_count"] == 50
    ids = {r["activity_id"] for r in b1["results"] + b2["results"]}
    assert len(ids) == 100


async def test_batch_larger_than_one_chunk_comes_back_complete_and_ordered(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    records = [activity(tag, n) for n in range(5000)]

    status, body = await post_batch(http, records)

    assert status == 201
    assert body["inserted_count"] == 5000
    assert [r["index"] for r in body["results"]] == list(range(5000))
    assert await stored_activities(pg, tag) == 5000


async def test_a_nul_character_fails_its_record_alone(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    status, body = await post_batch(
        http,
        [activity(tag, 0), activity(tag, 1, activity_type="bad\u0000type"), activity(tag, 2)],
    )

    assert status == 201
    assert [r["status"] for r in body["results"]] == ["success", "failed", "success"]
    assert body["results"][1]["error"] == "validation_error"
    assert body["results"][1]["details"][0]["type"] == "nul_character"
    assert await stored_activities(pg, tag) == 2


async def test_a_rest_batch_never_takes_an_id_a_kafka_producer_already_used(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    taken = await pg.fetchval("SELECT batchline_id('batch-', last_value + 1) FROM batch_seq")
    assert settings.kafka_bootstrap_servers is not None
    produce(
        settings.kafka_bootstrap_servers,
        "batchline.ingest",
        [
            (
                taken.encode(),
                orjson.dumps(
                    {"entity": "activity", "batch_id": taken, "records": [activity(tag, 0)]}
                ),
            )
        ],
    )
    await completed_batch(http, taken)

    status, body = await post_batch(http, [activity(tag, 1)])

    assert status == 201
    assert body["id"] != taken
    assert body["inserted_count"] == 1


async def test_numbers_past_any_page_and_nul_characters_in_urls_are_client_errors(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get(BASE, params={"page": "99999999999999999999"}) as response:
        assert response.status == 422
    for path in (f"{BASE}/a%00b", f"{BASE}?status=a%00"):
        async with http.get(path) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "invalid_request"


async def test_a_body_that_does_not_match_its_content_encoding_is_a_clear_400(
    http: aiohttp.ClientSession,
) -> None:
    async with http.post(
        BASE, data=b'{"activities": [1]}', headers=JSON | {"Content-Encoding": "gzip"}
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["code"] == "invalid_request"
    assert (
        error["message"] == "Request body could not be read: Can not decode content-encoding: gzip"
    )


async def test_an_activity_date_is_an_iso_date_and_nothing_else(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    # pydantic alone reads "0" as 1970-01-01 and a datetime at midnight as its date.
    dates = ["0", "1774656000", "2026-03-28T00:00:00+05:00", "2026-03-28 00:00", "2026-3-28"]
    records = [activity(tag, n, activity_date=d) for n, d in enumerate(dates)]

    status, body = await post_batch(http, [*records, activity(tag, 9)])

    assert status == 201
    assert (body["inserted_count"], body["failed_count"]) == (1, len(dates))
    for result in body["results"][: len(dates)]:
        assert result["error"] == "validation_error"
        assert result["details"][0]["field"] == "activity_date"
        assert "YYYY-MM-DD" in result["details"][0]["message"]
    stored = await stored_activities(pg, tag)
    assert stored == 1
