"""What clients see while PostgreSQL is unreachable or restarting.

The API reaches the database through a TCP proxy the test cuts (open connections dropped,
new ones refused, as when PostgreSQL stops) and restores. Every database-backed endpoint
answers 503 with Retry-After in its front door's own format; a batch accepted before the
database went away is answered 202 with Location; a `batchline load` that runs through
database restarts stores every record exactly once and never sees a 500.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from batchline.cli.embedded import EmbeddedPostgres, free_port
from batchline.cli.runtime import create_topics, serving_api
from batchline.loader.loading import LoadOptions, load
from batchline.loader.reading import FileFormat
from batchline.metrics import Metrics
from batchline.settings import Settings
from sql import db
from sql.db import CONNECT_TIMEOUT_SECONDS
from tests.integration.activities import BASE, JSON, activity, stored_activities
from tests.integration.instances import instance, write_file
from tests.integration.processes import WorkerProcess, until
from tests.tcp_proxy import Target, TcpProxy, postgres_target, through_proxy


@contextlib.asynccontextmanager
async def _proxied_api(
    settings: Settings, metrics: Metrics | None = None, **changes: Any
) -> AsyncIterator[tuple[TcpProxy, aiohttp.ClientSession, str]]:
    """An API of the test's own whose database connections go through a proxy."""
    database_url = settings.require_database_url()
    proxy = TcpProxy(postgres_target(database_url), free_port())
    await proxy.start()
    own = settings.model_copy(
        update={
            "database_url": through_proxy(database_url, proxy.port),
            "http_port": free_port(),
            "db_pool_max_size": 4,
        }
        | changes
    )
    try:
        async with (
            serving_api(own, metrics) as url,
            aiohttp.ClientSession(base_url=url) as http,
        ):
            yield proxy, http, url
    finally:
        await proxy.close()


async def _answer(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None
) -> tuple[int, str, str | None, bytes]:
    kwargs: dict[str, Any] = {}
    if body is not None:
        kwargs = {"data": orjson.dumps(body), "headers": JSON}
    async with http.request(method, path, **kwargs) as response:
        return (
            response.status,
            response.content_type,
            response.headers.get("Retry-After"),
            await response.read(),
        )


async def test_every_database_backed_endpoint_answers_503_with_retry_after_while_it_is_away(
    settings: Settings, tag: str
) -> None:
    write_file(settings, f"unreachable-{tag}.ndjson", [instance(tag, 0)])
    record = activity(tag, 0)
    batch_inserts = [
        ("POST", BASE, {"activities": [record]}),
        ("GET", BASE, None),
        ("GET", f"{BASE}/batch-1", None),
        ("PUT", f"{BASE}/batch-1", {"retry_indices": [0]}),
        ("DELETE", f"{BASE}/batch-1", None),
        ("GET", "/ops/dlq/messages", None),
        ("GET", "/ops/dlq/replays", None),
        ("POST", "/ops/dlq/replays", {"dry_run": True}),
        ("GET", "/ops/dlq/replays/1", None),
        ("DELETE", "/ops/dlq/replays/1", None),
    ]
    entities = [
        ("POST", "/data/category", {"data": {"id": f"c-{tag}", "description": "d"}}),
        ("GET", "/data/category", None),
        ("GET", f"/data/category/c-{tag}", None),
        ("PUT", f"/data/category/c-{tag}", {"data": {"description": "e"}}),
        ("PATCH", f"/data/category/c-{tag}", {"data": {"description": "e"}}),
        ("DELETE", f"/data/category/c-{tag}", None),
    ]
    bulk = (
        "POST",
        "/instance-storage/instances/bulk",
        {"recordsFileName": f"unreachable-{tag}.ndjson"},
    )

    async with _proxied_api(settings) as (proxy, http, _):
        await proxy.cut()
        for method, path, body in batch_inserts:
            status, content_type, retry_after, raw = await _answer(http, method, path, body)
            assert (status, retry_after) == (503, "2"), (method, path, raw)
            assert orjson.loads(raw)["error"]["code"] == "service_unavailable", (method, path)
        for method, path, body in entities:
            status, content_type, retry_after, raw = await _answer(http, method, path, body)
            assert (status, retry_after) == (503, "2"), (method, path, raw)
            assert orjson.loads(raw)["status"] == "error", (method, path)
        status, content_type, retry_after, raw = await _answer(http, *bulk)
        assert (status, retry_after, content_type) == (503, "2", "text/plain"), raw

        await proxy.restore()
        async with http.get(BASE) as response:
            assert response.status == 200


async def test_a_database_that_never_answers_is_a_503_within_the_connect_timeout(
    settings: Settings,
) -> None:
    """Packets dropped on the way (no refusal): new connections hang, as to a silent host."""
    silent = await asyncio.start_server(_never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        async with _proxied_api(settings) as (proxy, http, _):
            await proxy.cut()
            proxy.target = Target(host="127.0.0.1", port=port)
            await proxy.restore()
            started = time.monotonic()
            status, _, retry_after, raw = await asyncio.wait_for(
                _answer(http, "GET", BASE), CONNECT_TIMEOUT_SECONDS * 3
            )
            waited = time.monotonic() - started
    finally:
        silent.close()

    print(f"\na silent database answered {status} after {waited:.1f} s")
    assert (status, retry_after) == (503, "2"), raw


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(1024):
            pass
    writer.close()


async def test_a_batch_accepted_before_the_database_went_away_is_answered_202_with_location(
    settings: Settings, own_broker: str, pg: asyncpg.Connection, tag: str
) -> None:
    # No worker reads this broker, so the batch stays processing while the API waits.
    async with _proxied_api(settings, kafka_bootstrap_servers=own_broker, sync_wait_seconds=3) as (
        proxy,
        http,
        _,
    ):
        await create_topics(settings.model_copy(update={"kafka_bootstrap_servers": own_broker}))
        posting = asyncio.create_task(
            _answer(http, "POST", BASE, {"activities": [activity(tag, 0), activity(tag, 1)]})
        )

        async def accepted() -> bool:
            return bool(
                await pg.fetchval(
                    "SELECT count(*) FROM batch WHERE created_at > now() - interval '10 s'"
                    " AND record_count = 2 AND status = 'processing'"
                )
            )

        await until(accepted, "the batch header is written")
        await asyncio.sleep(0.5)  # its chunks are on the broker
        await proxy.cut()
        status, _, _, raw = await posting
        answer = orjson.loads(raw)

    assert status == 202, raw
    assert answer["status"] == "processing"
    assert answer["record_count"] == 2
    assert answer["id"].startswith("batch-")


async def test_asyncpg_errors_of_a_restarting_server_are_all_transient() -> None:
    """Transactions with savepoints run against a PostgreSQL of the test's own while it is
    stopped and started: every error they meet must read as transient, including asyncpg's
    "cannot switch to state 15; another operation (2) is in progress"."""
    # Not under pytest's numbered temporary folders: a concurrent pytest session on the same
    # host may clean those up while this server still restarts from one.
    data = Path(tempfile.mkdtemp(prefix="batchline-restarting-"))
    server = EmbeddedPostgres(data, database=None).start()
    seen: collections.Counter[tuple[str, str, bool]] = collections.Counter()
    stop = asyncio.Event()

    async def write(pool: asyncpg.Pool) -> None:
        while not stop.is_set():
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS t (a int, b jsonb)")
                    async with conn.transaction():
                        await conn.fetch(
                            "INSERT INTO t SELECT g, jsonb_build_object('g', g)"
                            " FROM generate_series(1, 20000) g RETURNING a, b"
                        )
                    await conn.fetchval("SELECT count(*) FROM t")
            except Exception as exc:  # noqa: BLE001 - every failure is what the test looks at
                seen[type(exc).__name__, str(exc)[:60], db.is_transient(exc)] += 1
                await asyncio.sleep(0.05)

    pool = await db.create_pool(server.admin_url, max_size=8)
    writers = [asyncio.create_task(write(pool)) for _ in range(8)]

    def state_errors() -> int:
        return sum(n for (name, _, _), n in seen.items() if name == "InternalClientError")

    restarts = 0
    try:
        # Six restarts, and more (up to 20) until asyncpg's protocol-state error has shown
        # up: it comes from a restart landing between an error and its sync point, which
        # most runs of six meet once or more.
        while restarts < 6 or (not state_errors() and restarts < 20):
            await asyncio.sleep(random.uniform(0.8, 1.5))
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            restarts += 1
        await asyncio.sleep(1)
    finally:
        stop.set()
        await asyncio.gather(*writers)
        await pool.close()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(data, ignore_errors=True)

    print(f"\nerrors met across {restarts} restarts:", dict(seen))
    assert seen, "the restarts should have failed some transactions"
    permanent = {key: count for key, count in seen.items() if not key[2]}
    assert permanent == {}


@pytest.mark.slow
async def test_a_load_through_database_restarts_stores_every_record_once_and_sees_no_500(
    settings: Settings, own_broker: str, pg: asyncpg.Connection, tag: str, tmp_path: Path
) -> None:
    records, restarts = 40_000, 5
    path = tmp_path / "activities.ndjson"
    path.write_bytes(b"".join(orjson.dumps(activity(tag, n)) + b"\n" for n in range(records)))
    isolated = settings.model_copy(
        update={
            "kafka_bootstrap_servers": own_broker,
            "consumer_group": f"restarts-{tag}",
            "data_dir": tmp_path / "worker",
        }
    )
    await create_topics(isolated)
    metrics = Metrics()
    async with _proxied_api(isolated, metrics) as (proxy, _, url):
        worker = await WorkerProcess.start(
            isolated,
            tmp_path / "worker.log",
            database_url=through_proxy(settings.require_database_url(), proxy.port),
            db_pool_max_size=4,
        )
        try:
            await until(worker.serving, "the worker is up")
            loading = asyncio.create_task(
                load(
                    LoadOptions(
                        path,
                        FileFormat.NDJSON,
                        url=url,
                        batch_size=500,
                        concurrency=4,
                    )
                )
            )
            done = 0
            # Restarts at points of the load's progress, however fast the host: each while
            # batches are still being sent, written and answered.
            for share in (0.1, 0.3, 0.5, 0.7, 0.85)[:restarts]:

                async def reached(share: float = share) -> bool:
                    return loading.done() or await stored_activities(pg, tag) >= records * share

                await until(reached, f"{share:.0%} of the records are stored", attempts=3000)
                if loading.done():
                    break
                await proxy.cut()  # PostgreSQL stops: connections dropped, new ones refused
                await asyncio.sleep(random.uniform(0.3, 0.8))
                await proxy.restore()
                done += 1
            summary = await asyncio.wait_for(loading, 600)
            worker.assert_running()
        finally:
            await worker.stop()

    answers = {
        f"{sample.labels['method']} {sample.labels['status']}": int(sample.value)
        for family in metrics.registry.collect()
        if family.name == "batchline_http_responses"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    print(
        f"\nrestart scenario: {records} records, {done} database restarts,"
        f" answers by status: {dict(sorted(answers.items()))}"
    )
    assert done == restarts, "the load ended before every restart was made"
    assert summary.everything_sent
    assert summary.inserted == records
    assert await stored_activities(pg, tag) == records
    assert not [answer for answer in answers if answer.endswith(" 500")]
