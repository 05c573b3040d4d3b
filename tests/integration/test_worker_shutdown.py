"""A worker leaves in bounded time when asked to, even with its broker gone, and on its own
when its ingest consumer can no longer fetch."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from confluent_kafka import Producer

from batchline.cli.embedded import EmbeddedKafka
from batchline.cli.runtime import create_topics
from batchline.settings import Settings
from streams import topics
from tests.integration.activities import activity
from tests.integration.processes import WorkerProcess


@contextlib.asynccontextmanager
async def _serving_worker(
    settings: Settings, tmp_path: Path, python_path: Path | None = None
) -> AsyncIterator[tuple[WorkerProcess, EmbeddedKafka]]:
    """A worker on a broker of its own, so stopping either disturbs no other test."""
    with EmbeddedKafka(tmp_path / "broker", stop_timeout=5) as broker:
        own = settings.model_copy(
            update={
                "kafka_bootstrap_servers": broker.bootstrap_servers,
                "consumer_group": f"own-{uuid.uuid4().hex[:8]}",
                "kafka_session_timeout_ms": 2000,
            }
        )
        await create_topics(own)
        worker = await WorkerProcess.start(own, tmp_path / "worker.log", python_path=python_path)
        try:
            for _ in range(300):
                if await worker.serving():
                    break
                await asyncio.sleep(0.1)
            yield worker, broker
        finally:
            if worker.process.returncode is None:
                worker.kill()
                await worker.process.wait()


async def test_sigterm_stops_a_worker_whose_broker_went_away(
    settings: Settings, tmp_path: Path
) -> None:
    async with _serving_worker(settings, tmp_path) as (worker, broker):
        await asyncio.sleep(3)  # consuming: group joined, fetch loops running
        broker.stop()
        await asyncio.sleep(2)
        worker.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(worker.process.wait(), 45)
    assert code == 0, worker.log.read_text(errors="replace")[-3000:]


async def test_a_worker_whose_ingest_fetch_loop_dies_exits_instead_of_idling(
    settings: Settings, tmp_path: Path, tag: str
) -> None:
    # A worker Python without the codec package: aiokafka cannot read an lz4 record batch,
    # and Faust's fetch loop dies on it (as on any record batch it cannot read).
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["cramjam"] = None\n')
    async with _serving_worker(settings, tmp_path, python_path=site) as (worker, broker):
        # Large enough that librdkafka does compress it (it sends small ones as they are).
        chunk = {"entity": "activity", "records": [activity(tag, n) for n in range(50)]}
        producer = Producer(
            {"bootstrap.servers": broker.bootstrap_servers, "compression.type": "lz4"}
        )
        producer.produce(topics.INGEST, orjson.dumps(chunk), key=b"lz4")
        assert producer.flush(15) == 0
        code = await asyncio.wait_for(worker.process.wait(), 90)
    assert code == 2
    assert worker.logged("the ingest consumer stopped fetching") == 1
