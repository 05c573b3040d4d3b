"""Running the parts: API, worker, both with embedded services (``dev``), migrations."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web

from api.app import create_app
from batchline.cli.embedded import EmbeddedKafka, EmbeddedPostgres
from batchline.entities.schema import load_registry
from batchline.metrics import Metrics
from batchline.settings import Settings
from consumers.app import run_worker, worker_resources
from sql import db, entity_tables
from sql.migrator import migrate
from streams.admin import ensure_topics
from streams.topics import TopicSpec, core_topics, entity_events_topic

log = logging.getLogger(__name__)

EMBEDDED_SESSION_TIMEOUT_MS = 2000
_GC_FIRST_GENERATION_THRESHOLD = 20_000


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def apply_migrations(settings: Settings, *, allow_destructive: bool = False) -> list[str]:
    """SQL migrations, then the entity tables of the YAML schemas (refusing data loss)."""
    registry = load_registry(settings.entities_dir)
    conn = await db.connect(settings.require_database_url())
    try:
        applied = await migrate(conn)
        try:
            applied += await entity_tables.apply(
                conn, registry, allow_destructive=allow_destructive
            )
        except asyncpg.PostgresError as exc:
            if db.is_transient(exc):
                raise
            # A type change the stored values cannot take, say: rolled back, nothing changed.
            raise RuntimeError(
                f"PostgreSQL refused the entity tables' change, nothing was changed: {exc}"
            ) from exc
        return applied
    finally:
        await conn.close()


async def check_entity_tables(settings: Settings) -> None:
    """API and worker serve the YAML schemas as migrated; refuse to start on a mismatch."""
    registry = load_registry(settings.entities_dir)
    conn = await db.connect(settings.require_database_url())
    try:
        missing = await entity_tables.pending(conn, registry)
    finally:
        await conn.close()
    if missing:
        raise RuntimeError(
            "the entity tables do not match the YAML schemas in"
            f" {settings.entities_dir} ({'; '.join(missing)}): run `batchline migrate`"
        )


async def create_topics(settings: Settings) -> None:
    specs = core_topics(settings.ingest_partitions, settings.outcome_partitions)
    specs += [
        TopicSpec(entity_events_topic(entity.name), settings.ingest_partitions)
        for entity in load_registry(settings.entities_dir)
    ]
    await ensure_topics(
        settings.require_bootstrap_servers(),
        {spec.name: spec.partitions for spec in specs},
        settings.topic_replication_factor,
    )


@contextlib.asynccontextmanager
async def serving_api(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[str]:
    """The API listening on the configured address; yields its base URL."""
    runner = web.AppRunner(create_app(settings, metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    try:
        yield f"http://{settings.http_host}:{settings.http_port}"
    finally:
        await runner.cleanup()


async def api_main(settings: Settings) -> None:
    stop = stop_on_signals()
    await check_entity_tables(settings)
    await create_topics(settings)
    async with serving_api(settings) as url:
        log.info("batchline API listening on %s", url)
        await stop.wait()


async def worker_main(settings: Settings) -> None:
    stop = stop_on_signals()
    await check_entity_tables(settings)
    await create_topics(settings)
    metrics = Metrics()
    async with worker_resources(settings, metrics) as resources:
        if settings.worker_metrics_port is not None:
            await _serve_worker_metrics(settings, metrics)
        log.info("batchline worker consuming from %s", settings.kafka_bootstrap_servers)
        tune_garbage_collection()
        await run_worker(resources, stop)


def tune_garbage_collection() -> None:
    """Fewer, cheaper collections for a process that allocates thousands of objects a chunk.

    With the default threshold (700 allocations) the collector ran many times per chunk and
    its full passes walked every long-lived object of Faust and aiokafka (README,
    Performance). Freezing what start-up built takes those objects out of every pass;
    the higher first threshold still collects cycles, just per chunk rather than per record.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_FIRST_GENERATION_THRESHOLD, 20, 20)


async def _serve_worker_metrics(settings: Settings, metrics: Metrics) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = "text/plain; version=0.0.4"
        return response

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert settings.worker_metrics_port is not None
    await web.TCPSite(runner, settings.http_host, settings.worker_metrics_port).start()


@contextlib.asynccontextmanager
async def embedded_services(settings: Settings) -> AsyncIterator[Settings]:
    """Settings with embedded PostgreSQL and Kafka filled in where none is configured."""
    async with contextlib.AsyncExitStack() as stack:
        updates: dict[str, Any] = {}
        if not settings.database_url:
            postgres = await stack.enter_async_context(EmbeddedPostgres(settings.data_dir))
            updates["database_url"] = postgres.url
            log.info("embedded PostgreSQL (data in %s)", postgres.pgdata)
        if not settings.kafka_bootstrap_servers:
            kafka = await stack.enter_async_context(EmbeddedKafka(settings.data_dir))
            updates["kafka_bootstrap_servers"] = kafka.bootstrap_servers
            if "kafka_session_timeout_ms" not in settings.model_fields_set:
                # Tansu takes half the session timeout to form a group and enforces no
                # minimum, so a short one makes start-up take a second instead of five.
                updates["kafka_session_timeout_ms"] = EMBEDDED_SESSION_TIMEOUT_MS
            log.info("embedded Kafka broker (Tansu, memory only) on %s", kafka.bootstrap_servers)
        yield settings.model_copy(update=updates)


async def dev_main(settings: Settings) -> None:
    stop = stop_on_signals()
    load_registry(settings.entities_dir)  # a bad schema stops us before anything starts
    async with embedded_services(settings) as live:
        applied = await apply_migrations(live)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        await create_topics(live)
        metrics = Metrics()
        async with worker_resources(live, metrics) as resources, serving_api(live, metrics) as url:
            log.info("batchline is up: %s  (Ctrl-C stops everything)", url)
            print(
                f"batchline dev: API on {url}  docs {url}/docs  console {url}/console", flush=True
            )
            await run_worker(resources, stop)
