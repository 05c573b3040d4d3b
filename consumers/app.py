"""The worker: the Faust agent ``inserter``, the ``projector`` and the periodic sweeps.

Built by factories around resources the caller owns (pool, producer), so nothing is global
and tests can run a real worker in-process.

The projector reads outcomes with a batch consumer of its own (streams.consumer), not as a
Faust agent: there is one outcome message per record, and Faust's per-event machinery
(aiokafka record parsing, an event object, a queue hop and an ack per message) cost the
worker more CPU than inserting the records did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import faust

from batchline.entities.schema import load_registry
from batchline.metrics import Metrics
from batchline.retry import RetryPolicy
from batchline.settings import Settings
from consumers import domain_events
from consumers.inserter import Inserter
from consumers.lanes import KeyedLanes
from consumers.projector import Projector
from consumers.transport import TablelessTableManager, app_class
from consumers.writers.activity import ActivityWriter
from consumers.writers.base import EntityWriter
from consumers.writers.generic import entity_writers
from consumers.writers.instance import InstanceWriter
from sql import batches, db
from sql import outbox as sql_outbox
from sql.replay_runs import ReplayRuns
from sql.stale_batches import settle_stale_batches
from streams import topics
from streams.admin import TopicEnsurer
from streams.consumer import BatchConsumer
from streams.deadletter import DeadLetterPolicy
from streams.messages import ConsumedMessage
from streams.producer import AsyncProducer

log = logging.getLogger(__name__)

# Outcome messages (one per chunk) the projector applies in one transaction.
_PROJECTOR_BATCH = 50
_SWEEP_SECONDS = 5.0
_LANE_DEPTH = 2
_DRAIN_SECONDS = 10.0
# Faust waits for its consumer thread to stop, and that thread may already have died on an
# unreachable broker; past this the process leaves anyway (uncommitted chunks come back,
# and the ledger turns them into re-sent outcomes).
_STOP_SECONDS = 20.0
_OUTBOX_GRACE_SECONDS = 30.0


@dataclass
class WorkerResources:
    settings: Settings
    pool: asyncpg.Pool
    producer: AsyncProducer
    metrics: Metrics
    writers: Mapping[str, EntityWriter]


def default_writers(settings: Settings) -> dict[str, EntityWriter]:
    writers: dict[str, EntityWriter] = {
        writer.entity: writer
        for writer in (ActivityWriter(), InstanceWriter(settings.env, settings.default_tenant))
    }
    writers.update(entity_writers(load_registry(settings.entities_dir)))
    return writers


@contextlib.asynccontextmanager
async def worker_resources(
    settings: Settings, metrics: Metrics | None = None
) -> AsyncIterator[WorkerResources]:
    pool = await db.create_pool(
        settings.require_database_url(),
        settings.db_pool_max_size,
        idle_transaction_timeout_seconds=settings.stalled_writer_seconds,
        # The worker's locks are transaction-level (sql.ledger), it LISTENs nowhere and
        # sets nothing per session.
        session_state_free=True,
    )
    producer = AsyncProducer(settings.librdkafka_producer_config())
    try:
        yield WorkerResources(
            settings, pool, producer, metrics or Metrics(), default_writers(settings)
        )
    finally:
        await producer.close()
        await pool.close()


def _consumed(event: faust.types.EventT[bytes]) -> ConsumedMessage:
    message = event.message
    headers: Any = message.headers or ()
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    return ConsumedMessage(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple((k, bytes(v) if v is not None else None) for k, v in headers),
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
    )


def faust_broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server]


def create_worker_app(
    resources: WorkerResources, on_fetch_failure: Callable[[Exception], None]
) -> faust.App:
    settings = resources.settings
    session_timeout = settings.kafka_session_timeout_ms / 1000
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = app_class(settings.kafka_fetch_max_wait_ms, on_fetch_failure)(
        settings.consumer_group,
        broker=faust_broker_urls(settings.require_bootstrap_servers()),
        broker_credentials=settings.kafka_security().faust_credentials(),
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(session_timeout / 5, 0.2),
        broker_rebalance_timeout=session_timeout * 2,
        broker_request_timeout=max(session_timeout * 3, 90.0),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        value_serializer="raw",
        key_serializer="raw",
        datadir=str(settings.data_dir / "faust"),
        TableManager=TablelessTableManager,
    )
    retry = retry_policy(settings)
    inserter = Inserter(
        resources.pool,
        resources.producer,
        resources.writers,
        resources.metrics,
        retry,
        dead_letter_policy(resources, retry),
        TopicEnsurer(
            settings.librdkafka_admin_config(),
            settings.ingest_partitions,
            settings.topic_replication_factor,
        ),
        settings.max_records_per_batch,
    )
    ingest_topic = app.topic(topics.INGEST, value_serializer="raw", key_serializer="raw")

    async def insert_chunks(stream: faust.StreamT[bytes]) -> None:
        # Acknowledged by hand once handle() returned: written, committed, outcomes flushed.
        # Only then may Faust commit the offset.
        manual = stream.noack()  # type: ignore[attr-defined]

        async def insert(event: faust.types.EventT[bytes]) -> None:
            await inserter.handle(_consumed(event))
            await manual.ack(event)

        lanes = KeyedLanes(settings.inserter_lanes, _LANE_DEPTH, insert)
        try:
            async for event in manual.events():
                await lanes.submit(event.message.key, event)
        finally:
            await lanes.close(_DRAIN_SECONDS)

    app.agent(ingest_topic, name="batchline.inserter")(insert_chunks)

    async def sweep() -> None:
        await _sweep(resources)

    app.timer(_SWEEP_SECONDS, name="batchline.sweep")(sweep)
    return app


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.retry_backoff_seconds, settings.max_processing_attempts)


def dead_letter_policy(resources: WorkerResources, retry: RetryPolicy) -> DeadLetterPolicy:
    """Dead letters of the worker's consumers; a replay count only where a replay sent it."""
    runs = ReplayRuns(resources.pool)
    return DeadLetterPolicy(resources.producer, retry, resources.metrics, runs.replay_count)


def create_projection(resources: WorkerResources) -> BatchConsumer:
    """The projector: outcomes -> the tables behind GET, a window of them per statement."""
    settings = resources.settings
    retry = retry_policy(settings)
    projector = Projector(resources.pool, retry, dead_letter_policy(resources, retry))
    return BatchConsumer(
        settings.librdkafka_consumer_config(settings.projector_group),
        [topics.OUTCOMES],
        projector.handle_many,
        max_batch=_PROJECTOR_BATCH,
        retry_seconds=settings.retry_backoff_seconds,
        name="batchline.projector",
    )


async def _sweep(resources: WorkerResources) -> None:
    """Re-send domain events a crash left in the outbox; fail batches that stopped moving."""
    try:
        stale_events = await sql_outbox.stale(resources.pool, _OUTBOX_GRACE_SECONDS, 1000)
        await domain_events.publish(resources.pool, resources.producer, stale_events)
        settled = await settle_stale_batches(resources.pool, resources.settings.stale_batch_seconds)
        for batch_id in settled:
            log.warning("batch %s made no progress and was settled from its ledger", batch_id)
        if settled:
            await batches.notify_done(resources.pool, settled)
    except Exception as exc:  # noqa: BLE001 - a sweep runs again in a few seconds
        log.warning("sweep failed: %s", exc)


class IngestStopped(RuntimeError):
    """The ingest consumer's fetch loop died: the worker stops rather than idle unnoticed."""


async def run_worker(resources: WorkerResources, stop: asyncio.Event) -> None:
    """Run the inserter, the projector and the sweeps until ``stop`` is set.

    Raises IngestStopped when the ingest consumer stops fetching for good, so that the
    process exits and whatever supervises it starts a new one. Nothing is lost: offsets
    are committed only for chunks that were processed.
    """
    loop = asyncio.get_running_loop()
    failure: asyncio.Future[Exception] = loop.create_future()

    def record(exc: Exception) -> None:
        if not failure.done():
            failure.set_result(exc)

    def fetch_failed(exc: Exception) -> None:
        loop.call_soon_threadsafe(record, exc)

    app = create_worker_app(resources, fetch_failed)
    projection = create_projection(resources)
    await projection.start()
    stopping: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    try:
        await app.start()
        try:
            either: list[asyncio.Future[Any]] = [stopping, failure]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            try:
                await asyncio.wait_for(app.stop(), _STOP_SECONDS)
            except TimeoutError:
                log.warning("the Faust app did not stop within %.0f s; leaving", _STOP_SECONDS)
    finally:
        stopping.cancel()
        await projection.stop()
    if failure.done():
        raise IngestStopped(f"the ingest consumer stopped fetching: {failure.result()!r}")
