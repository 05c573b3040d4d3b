"""A real pipeline for the integration tests: migrated database, topics, an in-process
Faust worker and the API on a loopback port, shared by the session."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from batchline.cli.embedded import EmbeddedKafka, free_port
from batchline.cli.runtime import apply_migrations, create_topics, serving_api
from batchline.metrics import Metrics
from batchline.settings import Settings
from consumers.app import WorkerResources, run_worker, worker_resources
from sql import db
from tests import services

# The README's example entities, which the /data tests use.
EXAMPLE_ENTITIES = Path(__file__).resolve().parents[2] / "entities"


@pytest.fixture(scope="session")
async def settings(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    configured = Settings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        data_dir=Path(tmp_path_factory.mktemp("batchline")),
        http_port=free_port(),
        sync_wait_seconds=30,
        consumer_group=f"batchline-test-{uuid.uuid4().hex[:8]}",
        # A real Kafka enforces a 6 s minimum; the embedded broker joins in half the timeout.
        kafka_session_timeout_ms=2000 if services.kafka_is_embedded() else 6000,
        max_records_per_request=6000,
        max_body_bytes=2 * 1024 * 1024,
        retry_backoff_seconds=0.05,
        max_processing_attempts=2,
        entities_dir=EXAMPLE_ENTITIES,
    )
    await apply_migrations(configured)
    await create_topics(configured)
    return configured


@pytest.fixture(scope="session")
def metrics() -> Metrics:
    """Shared by the in-process worker and API, as under `batchline dev`."""
    return Metrics()


@pytest.fixture(scope="session")
async def worker(settings: Settings, metrics: Metrics) -> AsyncIterator[WorkerResources]:
    stop = asyncio.Event()
    async with worker_resources(settings, metrics) as resources:
        task = asyncio.create_task(run_worker(resources, stop))
        yield resources
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture(scope="session")
async def api_url(
    settings: Settings, worker: WorkerResources, metrics: Metrics
) -> AsyncIterator[str]:
    async with serving_api(settings, metrics) as url:
        yield url


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=api_url) as session:
        yield session


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await db.connect(settings.require_database_url())
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[str]:
    """A broker of the test's own, for worker processes it starts, stops and kills."""
    async with EmbeddedKafka(tmp_path / "kafka") as kafka:
        yield kafka.bootstrap_servers


@pytest.fixture
def tag() -> str:
    """A value unique to one test, to keep its records apart from every other test's."""
    return uuid.uuid4().hex[:10]
