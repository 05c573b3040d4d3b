"""Two ``batchline worker`` processes in one consumer group share the ingest partitions;
SIGKILL one mid-stream and every record is still stored exactly once."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from batchline.cli.runtime import create_topics
from batchline.settings import Settings
from tests.integration.activities import activity
from tests.integration.kafka import completed_batch, produce
from tests.integration.processes import WorkerProcess, until

INGEST = "batchline.ingest"
PARTITIONS = 4
CHUNK = 50


class Stream:
    """Batches produced straight to chosen partitions; remembers what it sent."""

    def __init__(self, bootstrap: str, tag: str) -> None:
        self.bootstrap = bootstrap
        self.tag = tag
        self.sent: dict[str, int] = {}
        self._mentors = itertools.count()

    def batch(self, name: str, records: int, partition: int) -> None:
        batch_id = f"{name}-{self.tag}"
        rows = [activity(self.tag, next(self._mentors)) for _ in range(records)]
        chunks = [
            {
                "entity": "activity",
                "batch_id": batch_id,
                "record_count": records,
                "first_index": start,
                "records": rows[start : start + CHUNK],
            }
            for start in range(0, records, CHUNK)
        ]
        produce(
            self.bootstrap,
            INGEST,
            [(batch_id.encode(), orjson.dumps(chunk)) for chunk in chunks],
            partition=partition,
        )
        self.sent[batch_id] = records

    def on_every_partition(self, name: str, records: int) -> None:
        for partition in range(PARTITIONS):
            self.batch(f"{name}-p{partition}", records, partition)


@pytest.mark.slow
async def test_two_workers_share_partitions_and_a_killed_one_loses_nothing(
    settings: Settings,
    own_broker: str,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
    tmp_path: Path,
) -> None:
    group = settings.model_copy(
        update={
            "kafka_bootstrap_servers": own_broker,
            "consumer_group": f"scale-{tag}",
            "ingest_partitions": PARTITIONS,
            "kafka_session_timeout_ms": 6000,
        }
    )
    await create_topics(group)
    stream = Stream(own_broker, tag)
    workers: list[WorkerProcess] = []
    try:
        for name in ("a", "b"):
            worker = await WorkerProcess.start(
                group,
                tmp_path / f"worker-{name}.log",
                data_dir=tmp_path / f"worker-{name}",
                db_pool_max_size=4,
            )
            workers.append(worker)
            await until(worker.serving, f"worker {name} is up")
        first, second = workers

        # Feed every partition until both workers have stored records: both are in the
        # group, and each owns partitions.
        rounds = itertools.count()

        async def both_working() -> bool:
            if min([await first.records_written(), await second.records_written()]) > 0:
                return True
            stream.on_every_partition(f"warm-{next(rounds)}", 10)
            await asyncio.sleep(0.4)
            return False

        await until(both_working, "both workers have stored records", attempts=100)

        for n in range(4):
            stream.batch(f"main-{n}", 400, n % PARTITIONS)
        first.kill()
        for n in range(4, 8):
            stream.batch(f"main-{n}", 400, n % PARTITIONS)

        finished = {batch_id: await completed_batch(http, batch_id) for batch_id in stream.sent}
        second.assert_running()
    finally:
        for worker in workers:
            await worker.stop()

    for batch_id, records in stream.sent.items():
        body = finished[batch_id]
        assert (body["status"], body["inserted_count"], body["failed_count"]) == (
            "completed",
            records,
            0,
        ), batch_id
        assert {r["status"] for r in body["results"]} == {"success"}, batch_id
    stored = await pg.fetch(
        "SELECT mentor_id, count(*) AS copies FROM activity WHERE coordinator_id = $1"
        " GROUP BY mentor_id",
        f"coord-{tag}",
    )
    assert len(stored) == sum(stream.sent.values())
    assert {row["copies"] for row in stored} == {1}
