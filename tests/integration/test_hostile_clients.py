"""Slow, greedy or simply unusual clients: real sockets against a real API.

Bounded header and body read times and connections per process; bodies that are not JSON
or in an unknown encoding are 415 (a browser page on another site cannot start a replay);
405 says what is allowed; a header that is not UTF-8 is a 400, not a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from batchline.cli.embedded import free_port
from batchline.cli.runtime import serving_api
from batchline.settings import Settings
from tests.integration.activities import BASE, JSON, activity


@contextlib.asynccontextmanager
async def _api(settings: Settings, **changes: Any) -> AsyncIterator[int]:
    """An API of the test's own with ``changes`` to its settings; yields its port."""
    port = free_port()
    async with serving_api(settings.model_copy(update={"http_port": port} | changes)):
        yield port


async def _raw(
    port: int, request: bytes, wait_seconds: float = 10.0, *, head_only: bool = False
) -> bytes:
    """Send ``request`` as it is and read until the server closes the connection (or, with
    ``head_only``, until the end of the answer's headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        reading = reader.readuntil(b"\r\n\r\n") if head_only else reader.read()
        return await asyncio.wait_for(reading, wait_seconds)
    finally:
        writer.close()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def test_a_non_utf8_idempotency_key_is_400(api_url: str, tag: str) -> None:
    body = orjson.dumps({"activities": [activity(tag, 0)]})
    request = (
        b"POST " + BASE.encode() + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nIdempotency-Key: caf\xe9\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    port = int(api_url.rsplit(":", 1)[1])

    response = await _raw(port, request)

    assert _status(response) == 400, response
    error = orjson.loads(response.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "invalid_request"
    assert error["details"]["header"] == "Idempotency-Key"


async def test_a_body_that_is_not_json_by_its_type_or_encoding_is_415_on_every_front_door(
    http: aiohttp.ClientSession, tag: str
) -> None:
    async def replay_runs() -> int:
        async with http.get("/ops/dlq/replays", params={"limit": 100}) as response:
            return len((await response.json())["data"])

    runs_before = await replay_runs()
    doors: list[tuple[str, str, Any, str]] = [
        ("POST", BASE, {"activities": [activity(tag, 0)]}, "error"),
        ("PUT", f"{BASE}/batch-1", {"retry_indices": [0]}, "error"),
        ("POST", "/ops/dlq/replays", {}, "error"),
        ("POST", "/data/category", {"data": {"id": f"c-{tag}"}}, "gemini"),
        ("PATCH", f"/data/category/c-{tag}", {"data": {"description": "d"}}, "gemini"),
        ("POST", "/instance-storage/instances/bulk", {"recordsFileName": "x"}, "folio"),
    ]
    refused: list[dict[str, str]] = [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "application/xml"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/json; charset=latin-1"},
        {},  # no Content-Type at all
        JSON | {"Content-Encoding": "zzz"},
        JSON | {"Content-Encoding": "gzip, gzip"},
    ]
    for method, path, body, form in doors:
        for headers in refused:
            async with http.request(
                method,
                path,
                data=orjson.dumps(body),
                headers=headers,
                skip_auto_headers=["Content-Type"],
            ) as response:
                assert response.status == 415, (method, path, headers)
                if form == "error":
                    error = (await response.json())["error"]
                    assert error["code"] == "unsupported_media_type"
                elif form == "gemini":
                    assert (await response.json())["status"] == "error"
                else:
                    assert (await response.json())["errors"][0]["message"]
    assert await replay_runs() == runs_before


async def test_json_under_its_other_names_is_taken(http: aiohttp.ClientSession, tag: str) -> None:
    for n, content_type in enumerate(
        ("application/json; charset=utf-8", "application/vnd.batch+json", "Application/JSON")
    ):
        body = orjson.dumps({"activities": [activity(tag, n)]})
        async with http.post(BASE, data=body, headers={"Content-Type": content_type}) as response:
            assert response.status == 201, content_type


async def test_405_names_the_methods_allowed(http: aiohttp.ClientSession) -> None:
    cases = [
        ("PATCH", BASE, {"GET", "POST"}),
        ("POST", f"{BASE}/batch-1", {"GET", "PUT", "DELETE"}),
        ("POST", "/ops/dlq/messages", {"GET"}),
        ("PUT", "/ops/dlq/replays", {"GET", "POST"}),
        ("DELETE", "/data/category", {"GET", "POST"}),
        ("GET", "/instance-storage/instances/bulk", {"POST"}),
        ("POST", "/health", {"GET"}),
    ]
    for method, path, allowed in cases:
        async with http.request(method, path) as response:
            assert response.status == 405, (method, path)
            assert set(response.headers["Allow"].split(",")) >= allowed, (method, path)


async def test_a_connection_that_never_finishes_its_headers_is_closed(settings: Settings) -> None:
    async with _api(settings, http_header_timeout_seconds=1) as port:
        partial = await _raw(port, b"POST /api/v1/batch-inserts HTTP/1.1\r\nHost: te")
        silent = await _raw(port, b"")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # A complete request, then the start of a second one on the same connection.
        writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(b"GET /health HTTP/1.1\r\nHo")
        await writer.drain()
        answered = await asyncio.wait_for(reader.read(), 10)
        writer.close()

    assert partial == b""
    assert silent == b""
    assert _status(answered) == 200
    assert answered.count(b"HTTP/1.1 ") == 1


async def test_a_body_that_never_ends_is_408_on_every_front_door(settings: Settings) -> None:
    async with _api(settings, http_body_timeout_seconds=1) as port:
        for path in (BASE, "/data/category", "/instance-storage/instances/bulk"):
            response = await _raw(
                port,
                b"POST " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'5\r\n{"act\r\n',
                head_only=True,
            )
            assert _status(response) == 408, (path, response)
            assert b"Connection: close" in response


async def test_connections_beyond_the_limit_are_answered_503_and_closed(
    settings: Settings,
) -> None:
    async with _api(settings, http_max_connections=3) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.2)
        refused = await _raw(port, b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        for _, writer in held[:1]:
            writer.close()
        await asyncio.sleep(0.2)
        served = await _raw(
            port, b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        for _, writer in held[1:]:
            writer.close()

    assert _status(refused) == 503
    assert b"Retry-After: 1" in refused
    assert orjson.loads(refused.split(b"\r\n\r\n", 1)[1])["error"]["code"] == (
        "service_unavailable"
    )
    assert _status(served) == 200
