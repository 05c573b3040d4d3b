"""Running the parts: API, worker, embedded services (for ``dev``), migrations."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web

from api.access import authentication_summary
from api.access_log import ACCESS_LOG_FORMAT, AccessLogger
from api.app import create_app
from api.server import ConnectionLimits, GuardedRunner, ensure_descriptors
from batchline.cli.embedded import EmbeddedKafka, EmbeddedPostgres
from batchline.entities.schema import load_registry
from batchline.metrics import Metrics
from batchline.settings import Settings
from consumers.app import run_worker, worker_resources
from sql import db, entity_tables
from sql.migrator import migrate, migration_files
from sql.migrator import pending as pending_migrations
from streams.admin import check_connection, ensure_topics
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
    conn = await _connect_checked(settings.require_database_url())
    try:
        # Migrations that give existing rows a tenant give them this one.
        await conn.execute(
            "SELECT set_config('batchline.default_tenant', $1, false)", settings.default_tenant
        )
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


async def _require_migrations(conn: asyncpg.Connection, url: str) -> None:
    missing = await pending_migrations(conn)
    if not missing:
        return
    if len(missing) == len(migration_files()):
        problem = "has no batchline schema"
    else:
        problem = f"lacks {len(missing)} of batchline's migrations ({', '.join(missing)})"
    raise RuntimeError(
        f"the database {display_url(url)} {problem}. Run `batchline migrate` with the same"
        " BATCHLINE_DATABASE_URL, or point BATCHLINE_DATABASE_URL at batchline's database"
        " (unset, a command run where `batchline dev` runs uses dev's)"
    )


async def _connect_checked(url: str) -> asyncpg.Connection:
    """A connection, or an error that says what is wrong with the URL in a sentence."""
    try:
        return await db.connect(url)
    except asyncpg.InvalidCatalogNameError:
        raise RuntimeError(
            f"the database {display_url(url)} does not exist: create it and run"
            " `batchline migrate`, or fix the database name in BATCHLINE_DATABASE_URL"
        ) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(f"cannot connect to the database {display_url(url)}: {exc}") from None


async def check_schema(settings: Settings) -> None:
    """Refuse to work on a database batchline's migrations were not applied to."""
    url = settings.require_database_url()
    conn = await _connect_checked(url)
    try:
        await _require_migrations(conn, url)
    finally:
        await conn.close()


async def check_entity_tables(settings: Settings) -> None:
    """API and worker serve the YAML schemas as migrated; refuse to start on a mismatch."""
    registry = load_registry(settings.entities_dir)
    url = settings.require_database_url()
    conn = await _connect_checked(url)
    try:
        await _require_migrations(conn, url)
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
    admin_config = settings.librdkafka_admin_config()
    await asyncio.to_thread(check_connection, admin_config)
    await ensure_topics(
        admin_config,
        {spec.name: spec.partitions for spec in specs},
        settings.topic_replication_factor,
    )


@contextlib.asynccontextmanager
async def serving_api(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[str]:
    """The API listening on the configured address; yields its base URL."""
    ensure_descriptors(settings.http_max_connections)
    limits = ConnectionLimits(settings.http_header_timeout_seconds, settings.http_max_connections)
    runner = GuardedRunner(
        create_app(settings, metrics),
        limits,
        access_log_class=AccessLogger,
        access_log_format=ACCESS_LOG_FORMAT,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise RuntimeError(_cannot_listen(settings.http_host, settings.http_port, exc)) from None
    try:
        yield f"http://{settings.http_host}:{settings.http_port}"
    finally:
        await runner.cleanup()


def display_url(url: str) -> str:
    """A database URL fit to print: the password hidden."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    in_use = exc.errno == errno.EADDRINUSE
    reason = "is already in use" if in_use else f"cannot be used ({exc.strerror})"
    return (
        f"cannot serve the API: {host}:{port} {reason}. Set BATCHLINE_HTTP_PORT to a free port"
        f" (or BATCHLINE_HTTP_HOST to another address), e.g. BATCHLINE_HTTP_PORT={port + 1}"
    )


def ensure_port_free(host: str, port: int) -> None:
    """Refuse to start, before any service is touched, when the API could not listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RuntimeError(_cannot_listen(host, port, exc)) from None


async def api_main(settings: Settings) -> None:
    stop = stop_on_signals()
    ensure_port_free(settings.http_host, settings.http_port)
    await check_entity_tables(settings)
    await create_topics(settings)
    async with serving_api(settings) as url:
        log.info("batchline API listening on %s", url)
        if settings.api_token_table():
            log.info(authentication_summary(settings))
        else:
            log.warning(authentication_summary(settings))
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
async def embedded_services(
    settings: Settings, *, broker_port: int | None = None
) -> AsyncIterator[Settings]:
    """Settings with embedded PostgreSQL and Kafka filled in where none is configured.

    The broker listens on ``broker_port``, or on any free port when it is None.
    """
    async with contextlib.AsyncExitStack() as stack:
        updates: dict[str, Any] = {}
        if not settings.database_url:
            postgres = await stack.enter_async_context(EmbeddedPostgres(settings.data_dir))
            updates["database_url"] = postgres.url
            log.debug("embedded PostgreSQL (data in %s)", postgres.pgdata)
        if not settings.kafka_bootstrap_servers:
            broker = EmbeddedKafka(settings.data_dir, port=broker_port)
            kafka = await stack.enter_async_context(broker)
            updates["kafka_bootstrap_servers"] = kafka.bootstrap_servers
            if "kafka_session_timeout_ms" not in settings.model_fields_set:
                # Tansu takes half the session timeout to form a group and enforces no
                # minimum, so a short one makes start-up take a second instead of five.
                updates["kafka_session_timeout_ms"] = EMBEDDED_SESSION_TIMEOUT_MS
            log.debug("embedded Kafka broker (Tansu, memory only) on %s", kafka.bootstrap_servers)
        yield settings.model_copy(update=updates)
