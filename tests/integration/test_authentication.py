"""An API with tokens configured, on the shared pipeline: who may write, read and operate,
each front door's own error format, and the token never leaving the request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from batchline.cli.embedded import free_port
from batchline.cli.runtime import serving_api
from batchline.settings import Settings
from batchline.tokens import Role, create_token
from consumers.app import WorkerResources
from streams.topics import INGEST
from tests.integration.activities import BASE, activity, stored_activities
from tests.integration.instances import BULK, instance, new_id, write_file
from tests.integration.kafka import read_all
from tests.integration.processes import run_cli


@dataclass(frozen=True)
class Tokens:
    producer: str
    reader: str
    operator: str
    everything: str
    college: str  # producer and reader for the tenant "college" only

    def header(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def tokens() -> tuple[Tokens, str]:
    made = {
        name: create_token(roles, name)
        for name, roles in {
            "producer": frozenset({Role.PRODUCER}),
            "reader": frozenset({Role.READER}),
            "operator": frozenset({Role.OPERATOR}),
            "everything": frozenset(Role),
        }.items()
    }
    made["college"] = create_token(
        frozenset({Role.PRODUCER, Role.READER}), "college", frozenset({"college"})
    )
    configured = ",".join(entry.entry for _, entry in made.values())
    return Tokens(**{name: token for name, (token, _) in made.items()}), configured


@pytest.fixture
async def secured_url(
    settings: Settings,
    worker: WorkerResources,
    tokens: tuple[Tokens, str],
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[str]:
    """The API with tokens required, every log record of the run captured."""
    caplog.set_level(logging.DEBUG)
    configured = settings.model_copy(
        update={
            "api_tokens": Settings(api_tokens=tokens[1]).api_tokens,
            "http_port": free_port(),
            "metrics_public": False,
        }
    )
    async with serving_api(configured) as url:
        yield url


@pytest.fixture
async def secured(secured_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=secured_url) as http:
        yield http


async def _call(
    http: aiohttp.ClientSession, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, path, headers=headers, **kw) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, response


async def test_each_role_does_what_it_may_and_nothing_else(
    secured: aiohttp.ClientSession,
    tokens: tuple[Tokens, str],
    pg: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    tag: str,
) -> None:
    t = tokens[0]
    batch = {"activities": [activity(tag, 0)]}

    for status_path in ("/health", "/ready"):
        assert (await _call(secured, "GET", status_path))[0] == 200

    status, body, response = await _call(secured, "POST", BASE, json=batch)
    assert status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert body["error"]["code"] == "unauthorized"
    status, body, response = await _call(secured, "POST", BASE, "bl_not-a-token", json=batch)
    assert status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in (t.reader, t.operator):
        status, body, _ = await _call(secured, "POST", BASE, wrong, json=batch)
        assert status == 403
        assert body["error"] == {
            "code": "forbidden",
            "message": "This needs the producer role",
            "details": None,
        }
    assert await stored_activities(pg, tag) == 0

    status, created, _ = await _call(secured, "POST", BASE, t.producer, json=batch)
    assert status == 201
    path = f"{BASE}/{created['id']}"

    assert (await _call(secured, "GET", path, t.producer))[0] == 403
    status, read, _ = await _call(secured, "GET", path, t.reader)
    assert status == 200
    assert read["inserted_count"] == 1
    assert (await _call(secured, "GET", BASE, t.reader))[0] == 200

    retry = {"retry_indices": [0]}
    assert (await _call(secured, "PUT", path, t.reader, json=retry))[0] == 403
    assert (await _call(secured, "PUT", path, t.producer, json=retry))[0] == 422  # not failed

    for not_operator in (t.producer, t.reader):
        assert (await _call(secured, "DELETE", path, not_operator))[0] == 403
        assert (await _call(secured, "GET", "/ops/dlq/messages", not_operator))[0] == 403
    assert (await _call(secured, "GET", "/ops/dlq/replays", t.operator))[0] == 200
    assert (await _call(secured, "DELETE", path, t.operator))[0] == 200
    assert f"DELETE {path} by token operator: 200" in caplog.text

    # One token, several roles.
    assert (await _call(secured, "GET", BASE, t.everything))[0] == 200
    assert (await _call(secured, "GET", "/ops/dlq/replays", t.everything))[0] == 200


async def test_each_front_door_refuses_in_its_own_format(
    secured: aiohttp.ClientSession, settings: Settings, tokens: tuple[Tokens, str], tag: str
) -> None:
    t = tokens[0]
    write_file(settings, f"auth-{tag}.ndjson", [instance(tag, 0, id=new_id())])
    bulk = {"recordsFileName": f"auth-{tag}.ndjson"}

    status, body, response = await _call(secured, "POST", BULK, json=bulk)
    assert status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert body["errors"][0]["message"] == "An Authorization: Bearer token is required"
    status, body, _ = await _call(secured, "POST", BULK, t.reader, json=bulk)
    assert status == 403
    assert body["errors"][0]["message"] == "This needs the producer role"
    status, body, _ = await _call(secured, "POST", BULK, t.producer, json=bulk)
    assert status == 201
    assert body["errorsNumber"] == 0

    record = {"data": {"id": f"auth-{tag}", "description": "guarded"}}
    status, body, response = await _call(secured, "POST", "/data/category", json=record)
    assert status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert body == {
        "status": "error",
        "error": {"reason": "An Authorization: Bearer token is required"},
    }
    status, body, _ = await _call(secured, "POST", "/data/category", t.reader, json=record)
    assert (status, body["error"]["reason"]) == (403, "This needs the producer role")
    assert (await _call(secured, "POST", "/data/category", t.producer, json=record))[0] == 200
    assert (await _call(secured, "GET", f"/data/category/auth-{tag}", t.producer))[0] == 403
    status, body, _ = await _call(secured, "GET", f"/data/category/auth-{tag}", t.reader)
    assert (status, body["data"]["description"]) == (200, "guarded")
    assert (await _call(secured, "GET", "/entity", t.reader))[0] == 200


async def test_only_a_bearer_header_counts(
    secured: aiohttp.ClientSession, tokens: tuple[Tokens, str]
) -> None:
    t = tokens[0]
    for headers in (
        {"Cookie": f"token={t.reader}"},
        {"Authorization": f"Basic {t.reader}"},
        {"Authorization": t.reader},
        {"X-Okapi-Token": t.reader},
    ):
        assert (await _call(secured, "GET", BASE, headers=headers))[0] == 401, headers


async def test_metrics_and_openapi_follow_their_settings(
    secured: aiohttp.ClientSession, tokens: tuple[Tokens, str]
) -> None:
    t = tokens[0]
    assert (await _call(secured, "GET", "/metrics"))[0] == 401  # metrics_public=False here
    assert (await _call(secured, "GET", "/metrics", t.reader))[0] == 403
    async with secured.get("/metrics", headers=t.header(t.operator)) as response:
        assert response.status == 200
        assert "batchline" in await response.text()

    status, document, _ = await _call(secured, "GET", "/openapi.json")  # open by default
    assert status == 200
    scheme = document["components"]["securitySchemes"]["bearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    post = document["paths"]["/api/v1/batch-inserts"]["post"]
    assert post["security"] == [{"bearerToken": []}]
    assert "Needs a token with the producer role." in post["description"]
    assert document["paths"]["/health"]["get"]["security"] == []


async def test_the_token_never_reaches_logs_metrics_errors_or_kafka(
    secured: aiohttp.ClientSession,
    settings: Settings,
    tokens: tuple[Tokens, str],
    caplog: pytest.LogCaptureFixture,
    tag: str,
) -> None:
    t = tokens[0]
    seen: list[str] = []
    status, created, _ = await _call(
        secured, "POST", BASE, t.everything, json={"activities": [activity(tag, 0)]}
    )
    assert status == 201
    for method, path, token in (
        ("GET", BASE, t.producer),  # 403
        ("GET", BASE, t.everything + "x"),  # 401, close to a real one
        ("GET", f"{BASE}/no-such-batch", t.everything),  # 404
        ("POST", "/data/no-such-entity", t.everything),  # 404 in Gemini's format
        ("GET", "/ops/dlq/messages/not-an-id", t.everything),  # 4xx
    ):
        async with secured.request(method, path, headers=t.header(token), json={}) as response:
            seen.append(await response.text())
    async with secured.get("/metrics", headers=t.header(t.operator)) as response:
        seen.append(await response.text())
    ingested = await asyncio.to_thread(read_all, settings.require_bootstrap_servers(), INGEST)
    for record in ingested:
        if record.key == created["id"].encode():
            seen.append(repr(record.value) + repr(record.headers))

    assert caplog.records, "the run logged nothing: the check below would prove nothing"
    every_token = (t.producer, t.reader, t.operator, t.everything)
    for token in every_token:
        secret = token.removeprefix("bl_")
        assert secret not in caplog.text
        assert all(secret not in text for text in seen)


async def test_a_page_on_another_origin_cannot_write(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    # Authentication off (the shared API), as under `batchline dev`: what a form or a
    # no-cors fetch can send is refused, and no preflight is granted.
    body = '{"activities": [' + str(activity(tag, 0)).replace("'", '"') + "]}"
    origin = {"Origin": "https://evil.example"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        headers = origin | {"Content-Type": f"{content_type}; charset=utf-8"}
        async with http.post(BASE, data=body, headers=headers) as response:
            assert response.status == 415, content_type
            assert (await response.json())["error"]["code"] == "unsupported_media_type"
            assert "Access-Control-Allow-Origin" not in response.headers
    untyped = f'{{"data": {{"id": "cross-{tag}", "description": "x"}}}}'.encode()
    async with http.post(
        "/data/category", data=untyped, headers=origin, skip_auto_headers=["Content-Type"]
    ) as response:  # a no-cors fetch of a Blob without a type
        assert response.status == 415
        assert (await response.json())["status"] == "error"
    async with http.options(
        BASE,
        headers=origin
        | {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    ) as response:
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Methods" not in response.headers
    assert await stored_activities(pg, tag) == 0

    async with http.post(BASE, data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 201


async def test_batchline_load_sends_the_token_from_its_environment(
    secured_url: str,
    settings: Settings,
    tokens: tuple[Tokens, str],
    pg: asyncpg.Connection,
    tag: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "activities.ndjson"
    path.write_bytes(b"".join(orjson.dumps(activity(tag, n)) + b"\n" for n in range(3)))
    command = ("load", str(path), "--url", secured_url, "--max-attempts", "1")

    refused = await run_cli(settings, *command)
    assert refused.code == 1
    assert "401" in refused.out + refused.err
    assert await stored_activities(pg, tag) == 0

    loaded = await run_cli(settings, *command, token=tokens[0].producer)
    assert loaded.code == 0, loaded.err
    assert await stored_activities(pg, tag) == 3


async def test_a_token_for_one_tenant_acts_for_no_other(
    secured: aiohttp.ClientSession, settings: Settings, tokens: tuple[Tokens, str], tag: str
) -> None:
    t = tokens[0]
    write_file(settings, f"college/{tag}.ndjson", [instance(tag, 0)])
    bulk = {"recordsFileName": f"college/{tag}.ndjson"}

    for tenant in ("university", None):  # another tenant, or the default one
        headers = {"X-Okapi-Tenant": tenant} if tenant else {}
        status, body, _ = await _call(secured, "POST", BULK, t.college, json=bulk, headers=headers)
        assert status == 403
        assert body["errors"][0]["message"].startswith("This token may not act for tenant")
        assert (await _call(secured, "GET", BASE, t.college, headers=headers))[0] == 403

    college = {"X-Okapi-Tenant": "college"}
    status, body, _ = await _call(secured, "POST", BULK, t.college, json=bulk, headers=college)
    assert (status, body["errorsNumber"]) == (201, 0)
    assert (await _call(secured, "GET", BASE, t.college, headers=college))[0] == 200
