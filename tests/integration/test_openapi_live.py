"""The API description against the live stack: the offline docs page, a client that knows
only /openapi.json calling every operation, and schemathesis fuzzing it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import asyncpg
from openapi_spec_validator import validate

from batchline.settings import Settings
from tests.integration.activities import activity
from tests.integration.instances import instance, write_file
from tests.integration.openapi_client import OpenApiClient

SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
# Fixed, so a failure found in CI is found again by running the same test.
FUZZ_SEED = "20261129"
FUZZ_TIMEOUT_SECONDS = 600


async def test_the_docs_page_loads_everything_from_batchline_itself_and_links_the_description(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get("/docs") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()

    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/openapi.json" in references
    assert '<a href="/openapi.json">' in page
    assert not [r for r in references if not r.startswith("/")], "nothing from elsewhere"
    types = {}
    for reference in references:
        async with http.get(reference) as response:
            assert response.status == 200, reference
            types[reference.rsplit("/", 1)[-1]] = response.content_type
            assert len(await response.read()) > 0
    assert types["swagger-ui-bundle.js"] in ("application/javascript", "text/javascript")
    assert types["swagger-ui.css"] == "text/css"
    assert types["openapi.json"] == "application/json"


async def test_the_served_description_is_valid_openapi(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi.json") as response:
        validate(await response.json())


async def test_a_client_that_knows_only_the_description_calls_every_operation(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    async with http.get("/openapi.json") as response:
        client = OpenApiClient(http, await response.json())

    assert (await client.call("health")).status == 200
    assert (await client.call("ready")).status == 200
    assert "batchline_" in (await client.call("metrics")).body

    # Front door 1: a duplicate inside the batch fails, is retried over the first one.
    records = [activity(tag, 0), activity(tag, 1), activity(tag, 0, duration_minutes=30)]
    created = await client.call(
        "createBatchInsert", body={"activities": records}, Idempotency_Key=f"key-{tag}"
    )
    assert created.status == 201
    batch_id = created.body["id"]
    assert [r["status"] for r in created.body["results"]] == ["success", "success", "failed"]
    again = await client.call(
        "createBatchInsert", body={"activities": records}, Idempotency_Key=f"key-{tag}"
    )
    assert (again.status, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert (await client.call("getBatchInsert", batch_id=batch_id)).body["failed_count"] == 1
    failed = await client.call("listBatchInsertFailures", batch_id=batch_id, limit=5)
    assert failed.body["pagination"]["total"] == 1
    download = await client.call("downloadBatchInsertFailures", batch_id=batch_id)
    assert download.status == 200
    page = await client.call("listBatchInserts", page=1, limit=5, status="completed")
    assert page.body["pagination"]["limit"] == 5
    retried = await client.call(
        "retryBatchInsert",
        batch_id=batch_id,
        body={"retry_indices": [2], "ignore_constraints": True},
    )
    assert (retried.status, retried.body["failed_count"]) == (200, 0)
    assert (await client.call("deleteBatchInsert", batch_id=batch_id)).status == 200
    assert (await client.call("getBatchInsert", batch_id=batch_id)).status == 404

    # Front door 2: a file of two instances, one of them invalid.
    write_file(settings, f"{tag}/client.ndjson", [instance(tag, 0), {"title": "no source"}])
    bulk = await client.call(
        "upsertInstancesBulk",
        body={"recordsFileName": f"{tag}/client.ndjson"},
        X_Okapi_Tenant="diku",
    )
    assert (bulk.status, bulk.body["errorsNumber"]) == (201, 1)
    refused = await client.call("upsertInstancesBulk", body={"recordsFileName": f"{tag}/none"})
    assert refused.status == 500

    # Front door 3: every operation of one entity, and the Gemini failure bodies.
    key = f"c-{tag}"
    inserted = await client.call("insertCategory", body={"data": {"id": key}})
    assert inserted.body["data"] == {"id": key, "description": None}
    listed = await client.call("insertCategory", body={"data": [{"id": f"{key}-a"}]})
    assert listed.status == 200
    orphan = {"id": f"p-{tag}", "name": "n", "category": f"none-{tag}"}
    refused = await client.call("insertProduct", body={"data": [orphan]})
    assert refused.status == 400
    assert refused.body["error"]["reason"].startswith("Field category references CATEGORY")
    found = await client.call("listCategory", id_STARTS_WITH=key, orderBy="-id", limit=10)
    assert [r["id"] for r in found.body["data"]] == [f"{key}-a", key]
    assert (await client.call("getCategory", lk=key)).status == 200
    replaced = await client.call("replaceCategory", lk=key, body={"data": {"description": "r"}})
    assert replaced.body["data"]["description"] == "r"
    patched = await client.call("patchCategory", lk=key, body={"data": {"description": "p"}})
    assert patched.body["data"]["description"] == "p"
    assert (await client.call("deleteCategory", lk=key)).status == 200
    assert (await client.call("getCategory", lk=key)).status == 404
    for entity in ("Product", "Price"):
        assert (await client.call(f"list{entity}", limit=1)).status == 200
    product_key = f"p-{tag}"
    await client.call(
        "insertProduct", body={"data": {"id": product_key, "name": "n", "category": f"{key}-a"}}
    )
    for operation in ("getProduct", "getPrice"):
        assert (await client.call(operation, lk="nothing,EUR")).status in (400, 404)
    await client.call(
        "insertPrice", body={"data": {"product": product_key, "currency": "EUR", "amount": "1.5"}}
    )
    price_key = f"{product_key},EUR"
    assert (await client.call("getPrice", lk=price_key)).body["data"]["amount"] == "1.5"
    await client.call("patchPrice", lk=price_key, body={"data": {"amount": 2}})
    await client.call("replacePrice", lk=price_key, body={"data": {"amount": 3}})
    assert (await client.call("deletePrice", lk=price_key)).status == 200
    await client.call("patchProduct", lk=product_key, body={"data": {"name": "m"}})
    await client.call(
        "replaceProduct", lk=product_key, body={"data": {"name": "o", "category": f"{key}-a"}}
    )
    assert (await client.call("deleteProduct", lk=product_key)).status == 200
    assert (await client.call("listEntities")).body["data"]
    assert (await client.call("getEntity", entity="category")).body["data"]["name"] == "CATEGORY"

    # Operators: dead letters and a dry-run replay of nothing.
    letters = await client.call("listDeadLetters", limit=1)
    letter = letters.body["data"][0]["id"] if letters.body["data"] else "0:999999999"
    assert (await client.call("getDeadLetter", letter_id=letter)).status in (200, 404)
    started = await client.call(
        "startReplay", body={"dry_run": True, "filters": {"key": f"none-{tag}"}}
    )
    assert started.status == 202
    replay_id = started.body["id"]
    assert (await client.call("getReplay", replay_id=replay_id)).status == 200
    assert (await client.call("listReplays", limit=5)).status == 200
    assert (await client.call("cancelReplay", replay_id=replay_id)).status in (202, 409)
    assert "batches" in (await client.call("getOperationsOverview")).body

    assert client.called == client.operation_ids


async def test_schemathesis_finds_no_server_error_and_no_answer_unlike_the_description(
    api_url: str, tmp_path: Path
) -> None:
    """Bounded (examples per operation, a time limit) and seeded, against the live stack."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(SCHEMATHESIS_CONFIG),
        "run",
        f"{api_url}/openapi.json",
        "--seed",
        FUZZ_SEED,
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=os.environ | {"NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
    )
    output, _ = await asyncio.wait_for(process.communicate(), FUZZ_TIMEOUT_SECONDS)
    text = output.decode(errors="replace")

    assert process.returncode == 0, text[-20000:]
    assert re.search(r"\d+ passed", text), text[-5000:]
