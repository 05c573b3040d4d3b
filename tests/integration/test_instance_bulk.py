"""Front door 2 over real HTTP, Kafka, PostgreSQL and a storage directory: FOLIO's bulk API."""

from __future__ import annotations

import re

import aiohttp
import asyncpg

from batchline.settings import Settings
from tests.integration.activities import JSON
from tests.integration.instances import (
    instance,
    new_id,
    post_bulk,
    read_file,
    storage_root,
    write_file,
)
from tests.integration.results import stored_results

HRID = re.compile(r"^in\d{11}$")


async def _stored(pg: asyncpg.Connection, instance_id: str) -> dict[str, object]:
    document = await pg.fetchval("SELECT jsonb FROM instance WHERE id = $1::uuid", instance_id)
    assert document is not None, instance_id
    return dict(document)


async def _statuses(pg: asyncpg.Connection, location: str) -> list[str]:
    batch_id = location.rsplit("/", 1)[1]
    return [r.status for r in await stored_results(pg, batch_id)]


async def test_new_instances_are_created_with_generated_ids_hrids_and_version_1(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    given_id = new_id()
    write_file(
        settings,
        f"{tag}/create.ndjson",
        [instance(tag, 0, id=given_id), instance(tag, 1), instance(tag, 2, hrid=f"own-{tag}")],
    )

    status, body, response = await post_bulk(http, {"recordsFileName": f"{tag}/create.ndjson"})

    assert status == 201
    assert body == {
        "errorRecordsFileName": f"{tag}/create.ndjson_failedEntities",
        "errorsFileName": f"{tag}/create.ndjson_errors",
        "errorsNumber": 0,
    }
    assert read_file(settings, f"{tag}/create.ndjson_failedEntities") == b""
    assert read_file(settings, f"{tag}/create.ndjson_errors") == b""
    assert await _statuses(pg, response.headers["Location"]) == ["inserted"] * 3
    rows = await pg.fetch(
        "SELECT id, jsonb FROM instance WHERE jsonb ->> 'title' LIKE $1 ORDER BY jsonb ->> 'title'",
        f"% of {tag}",
    )
    assert len(rows) == 3
    documents = [row["jsonb"] for row in rows]
    assert documents[0]["id"] == given_id == str(rows[0]["id"])
    assert all(d["id"] == str(row["id"]) for d, row in zip(documents, rows, strict=True))
    assert [d["_version"] for d in documents] == [1, 1, 1]
    assert HRID.match(documents[0]["hrid"])
    assert HRID.match(documents[1]["hrid"])
    assert documents[0]["hrid"] != documents[1]["hrid"]
    assert documents[2]["hrid"] == f"own-{tag}"
    assert documents[0]["source"] == "MARC"


async def test_an_update_replaces_the_document_and_counts_the_version_up(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    instance_id = new_id()
    write_file(settings, f"{tag}/v1", [instance(tag, 0, id=instance_id, subjects=["a"])])
    await post_bulk(http, {"recordsFileName": f"{tag}/v1"})
    hrid = (await _stored(pg, instance_id))["hrid"]
    updated = instance(tag, 0, id=instance_id, title=f"New title of {tag}", _version=1)
    write_file(settings, f"{tag}/v2", [updated])

    status, body, response = await post_bulk(http, {"recordsFileName": f"{tag}/v2"})

    assert status == 201
    assert body["errorsNumber"] == 0
    assert await _statuses(pg, response.headers["Location"]) == ["updated"]
    stored = await _stored(pg, instance_id)
    assert stored == {**updated, "id": instance_id, "hrid": hrid, "_version": 2}
    assert "subjects" not in stored  # an upsert replaces the whole document, as FOLIO's does


async def test_mixed_file_creates_and_updates_and_says_which(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    existing = new_id()
    write_file(settings, f"{tag}/first", [instance(tag, 0, id=existing)])
    await post_bulk(http, {"recordsFileName": f"{tag}/first"})
    created = new_id()
    write_file(
        settings,
        f"{tag}/mixed",
        [instance(tag, 1, id=created), instance(tag, 0, id=existing, _version=1)],
    )

    status, body, response = await post_bulk(http, {"recordsFileName": f"{tag}/mixed"})

    assert (status, body["errorsNumber"]) == (201, 0)
    assert await _statuses(pg, response.headers["Location"]) == ["inserted", "updated"]
    assert (await _stored(pg, created))["_version"] == 1
    assert (await _stored(pg, existing))["_version"] == 2


async def test_stale_or_missing_version_fails_with_folios_optimistic_locking_message(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    stale, unversioned = new_id(), new_id()
    write_file(
        settings, f"{tag}/base", [instance(tag, 0, id=stale), instance(tag, 1, id=unversioned)]
    )
    await post_bulk(http, {"recordsFileName": f"{tag}/base"})
    write_file(settings, f"{tag}/bump", [instance(tag, 0, id=stale, _version=1)])
    await post_bulk(http, {"recordsFileName": f"{tag}/bump"})
    lines = write_file(
        settings,
        f"{tag}/conflict",
        [
            instance(tag, 0, id=stale, _version=1, title="lost update"),
            instance(tag, 1, id=unversioned, title="no version"),
        ],
    )

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/conflict"})

    assert (status, body["errorsNumber"]) == (201, 2)
    assert read_file(settings, f"{tag}/conflict_errors").decode().splitlines() == [
        f"{stale}, Cannot update record {stale} because it has been changed (optimistic locking):"
        " Stored _version is 2, _version of request is 1",
        f"{unversioned}, Cannot update record {unversioned} because it has been changed"
        " (optimistic locking): Stored _version is 1, _version of request is <NULL>",
    ]
    assert read_file(settings, f"{tag}/conflict_failedEntities") == b"".join(
        line + b"\n" for line in lines
    )
    assert (await _stored(pg, stale))["title"] != "lost update"
    assert (await _stored(pg, stale))["_version"] == 2


async def test_an_update_cannot_change_the_hrid(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    instance_id = new_id()
    write_file(settings, f"{tag}/v1", [instance(tag, 0, id=instance_id, hrid=f"old-{tag}")])
    await post_bulk(http, {"recordsFileName": f"{tag}/v1"})
    write_file(settings, f"{tag}/v2", [instance(tag, 0, id=instance_id, hrid="new", _version=1)])

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/v2"})

    assert (status, body["errorsNumber"]) == (201, 1)
    assert read_file(settings, f"{tag}/v2_errors").decode() == (
        f"{instance_id}, The hrid field cannot be changed: new=new, old=old-{tag}\n"
    )
    assert (await _stored(pg, instance_id))["_version"] == 1


async def test_a_bad_json_line_in_the_middle_fails_alone_and_is_copied_unchanged(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    first, last = new_id(), new_id()
    broken = b'{"id": "x", "title": "unterminated   '
    write_file(
        settings,
        f"{tag}/broken",
        [instance(tag, 0, id=first), broken, b"[1, 2]", instance(tag, 3, id=last)],
    )

    status, body, response = await post_bulk(http, {"recordsFileName": f"{tag}/broken"})

    assert (status, body["errorsNumber"]) == (201, 2)
    assert read_file(settings, f"{tag}/broken_failedEntities") == broken + b"\n[1, 2]\n"
    errors = read_file(settings, f"{tag}/broken_errors").decode().splitlines()
    assert errors[0].startswith("2, Line 2 is not valid JSON: ")
    assert errors[1] == "3, Line 3 is not a JSON object"
    await _stored(pg, first)
    await _stored(pg, last)
    assert await _statuses(pg, response.headers["Location"]) == [
        "inserted",
        "failed",
        "failed",
        "inserted",
    ]


async def test_missing_or_malformed_required_fields_fail_per_record_with_readable_messages(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    with_id = new_id()
    lines = write_file(
        settings,
        f"{tag}/invalid",
        [
            {"id": with_id, "source": "MARC", "instanceTypeId": "not-a-uuid"},
            {"title": f"t {tag}", "source": "", "instanceTypeId": None},
            instance(tag, 2, id="42"),
            instance(tag, 3),
        ],
    )

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/invalid"})

    assert (status, body["errorsNumber"]) == (201, 3)
    assert read_file(settings, f"{tag}/invalid_errors").decode().splitlines() == [
        f"{with_id}, title must not be null; instanceTypeId must be a UUID",
        "2, source must not be empty; instanceTypeId must not be null",
        "42, id must be a UUID",
    ]
    assert read_file(settings, f"{tag}/invalid_failedEntities") == b"".join(
        line + b"\n" for line in lines[:3]
    )


async def test_a_nul_character_fails_its_record_with_the_reason_in_the_errors_file(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    write_file(settings, f"{tag}/nul", [instance(tag, 0), instance(tag, 1, title="a\u0000b")])

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/nul"})

    assert (status, body["errorsNumber"]) == (201, 1)
    assert read_file(settings, f"{tag}/nul_errors").decode().splitlines() == [
        "2, Text must not contain NUL (\\u0000) characters"
    ]


async def test_a_database_constraint_fails_the_record_that_breaks_it(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    first, second = new_id(), new_id()
    write_file(
        settings,
        f"{tag}/hrids",
        [instance(tag, 0, id=first, hrid=f"h-{tag}"), instance(tag, 1, id=second, hrid=f"h-{tag}")],
    )

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/hrids"})

    assert (status, body["errorsNumber"]) == (201, 1)
    [error] = read_file(settings, f"{tag}/hrids_errors").decode().splitlines()
    assert error.startswith(f"{second}, duplicate key value violates unique constraint")
    await _stored(pg, first)
    assert await pg.fetchval("SELECT count(*) FROM instance WHERE id = $1::uuid", second) == 0


async def test_the_bulk_operation_is_a_batch_operation_on_the_batch_inserts_endpoints(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    created = new_id()
    write_file(settings, f"{tag}/visible", [instance(tag, 0, id=created), b"nonsense"])

    _, _, response = await post_bulk(http, {"recordsFileName": f"/{tag}/visible"})
    location = response.headers["Location"]
    async with http.get(location) as answer:
        operation = await answer.json()

    assert answer.status == 200
    assert operation["record_count"] == 2
    assert (operation["status"], operation["inserted_count"], operation["failed_count"]) == (
        "completed",
        1,
        1,
    )
    assert operation["results"][0] == {
        "index": 0,
        "instance_id": created,
        "status": "success",
        "result": "created",
    }
    assert operation["results"][1]["status"] == "failed"
    assert operation["results"][1]["error"] == "validation_error"
    assert operation["results"][1]["details"]["line"] == 2
    source, entity = await pg.fetchrow(
        "SELECT source, entity FROM batch WHERE id = $1", operation["id"]
    )
    assert (source, entity) == ("bulk", "instance")


async def test_request_validation_answers_422_in_folios_errors_format(
    http: aiohttp.ClientSession,
) -> None:
    cases = [
        ({}, "recordsFileName", "null"),
        ({"recordsFileName": 5}, "recordsFileName", "5"),
        ({"recordsFileName": "f", "publishEvents": "yes"}, "publishEvents", "yes"),
        ({"recordsFileName": "f", "upsert": True}, "upsert", "true"),
        ({"recordsFileName": "../etc/passwd"}, "recordsFileName", "../etc/passwd"),
        ({"recordsFileName": "a" * 300}, "recordsFileName", "a" * 300),
    ]
    for payload, key, value in cases:
        status, body, response = await post_bulk(http, payload)

        assert status == 422, payload
        assert response.content_type == "application/json"
        assert body["total_records"] == len(body["errors"]) == 1
        [error] = body["errors"]
        assert set(error) == {"message", "type", "code", "parameters"}
        assert error["parameters"] == [{"key": key, "value": value}], payload

    status, body, _ = await post_bulk(http, {"recordsFileName": "f"}, tenant="no such/tenant")
    assert status == 422
    assert body["errors"][0]["parameters"] == [{"key": "X-Okapi-Tenant", "value": "no such/tenant"}]

    status, body, _ = await post_bulk(http, ["recordsFileName"])
    assert status == 422
    assert body["errors"][0]["message"] == "Request body must be a JSON object"

    async with http.post(
        "/instance-storage/instances/bulk",
        data=b'{"recordsFileName": "f"}',
        headers=JSON | {"Content-Encoding": "gzip"},
    ) as response:
        assert response.status == 422
        [error] = (await response.json())["errors"]
    assert error["message"] == (
        "Request body could not be read: Can not decode content-encoding: gzip"
    )


async def test_a_missing_file_is_500_text_with_nothing_written(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    batches_before = await pg.fetchval("SELECT count(*) FROM batch")

    status, body, response = await post_bulk(http, {"recordsFileName": f"{tag}/absent"})

    assert status == 500
    assert response.content_type == "text/plain"
    assert body == f"File {tag}/absent not found"
    assert not (storage_root(settings) / tag).exists()
    assert await pg.fetchval("SELECT count(*) FROM batch") == batches_before


async def test_an_empty_file_answers_no_errors(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    write_file(settings, f"{tag}/empty", [])

    status, body, _ = await post_bulk(http, {"recordsFileName": f"{tag}/empty"})

    assert (status, body["errorsNumber"]) == (201, 0)
    assert read_file(settings, f"{tag}/empty_errors") == b""


async def test_twenty_thousand_lines_are_upserted(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    write_file(settings, f"{tag}/large", [instance(tag, n) for n in range(20_000)])

    status, body, response = await post_bulk(
        http, {"recordsFileName": f"{tag}/large", "publishEvents": False}
    )

    assert (status, body["errorsNumber"]) == (201, 0)
    stored = await pg.fetchval(
        "SELECT count(*) FROM instance WHERE jsonb ->> 'title' LIKE $1", f"% of {tag}"
    )
    assert stored == 20_000
    async with http.get(response.headers["Location"]) as answer:
        operation = await answer.json()
    assert (operation["record_count"], operation["inserted_count"]) == (20_000, 20_000)


async def test_a_retry_of_a_bulk_record_runs_it_as_an_upsert_again(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    instance_id = new_id()
    write_file(settings, f"{tag}/base", [instance(tag, 0, id=instance_id)])
    await post_bulk(http, {"recordsFileName": f"{tag}/base"})
    write_file(settings, f"{tag}/stale", [instance(tag, 0, id=instance_id, _version=7)])
    _, _, response = await post_bulk(http, {"recordsFileName": f"{tag}/stale"})
    location = response.headers["Location"]

    async with http.put(location, json={"retry_indices": [0]}) as retried:
        assert retried.status == 200
        body = await retried.json()
    async with http.get(location) as detail:
        result = (await detail.json())["results"][0]

    assert (body["status"], body["inserted_count"], body["failed_count"]) == ("completed", 0, 1)
    assert result["error"] == "optimistic_locking"
    assert "Stored _version is 1, _version of request is 7" in result["details"]["message"]


async def test_ignore_constraints_is_refused_for_an_instance_batch(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    write_file(settings, f"{tag}/one", [instance(tag, 0, id=new_id(), _version=3)])
    _, _, response = await post_bulk(http, {"recordsFileName": f"{tag}/one"})

    retry = {"retry_indices": [0], "ignore_constraints": True}
    async with http.put(response.headers["Location"], json=retry) as refused:
        assert refused.status == 422
        assert "ignore_constraints" in (await refused.json())["error"]["details"]
