"""A worker that stalls mid-transaction while the group hands its partition to another one.

The first worker blocks on a lock the test holds, is stopped (SIGSTOP) and loses its
partition; the second worker receives the same chunk and must wait for the first one's
transaction instead of writing the records again. Then the lock goes, the first worker
resumes (SIGCONT) and commits, and the second finds its work in the ledger.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from batchline.cli.runtime import create_topics
from batchline.settings import Settings
from batchline.vocabulary import Operation, Source
from sql import batches, db
from streams.envelopes import ChunkOptions
from tests.integration.activities import activity
from tests.integration.instances import instance
from tests.integration.kafka import completed_batch, produce
from tests.integration.processes import WorkerProcess, until

INGEST = "batchline.ingest"


@dataclass(frozen=True)
class Scenario:
    entity: str
    operation: str
    records: Callable[[str], list[dict[str, Any]]]
    # SQL run in the test's open transaction: what the first worker's insert waits for.
    blocker: Callable[[str], str]
    count: str  # how many rows of this test's records the entity table holds


SCENARIOS = [
    Scenario(
        "activity",
        "insert",
        lambda tag: [activity(tag, n) for n in range(3)],
        # Record 0's natural key, inserted and not committed: a row lock on it.
        lambda tag: (
            "INSERT INTO activity (coordinator_id, mentor_id, activity_type,"
            f" activity_date, duration_minutes) VALUES ('coord-{tag}', 'mentor-0',"
            " 'group_workshop', '2026-03-28', 5)"
        ),
        "SELECT count(*) FROM activity WHERE coordinator_id = 'coord-' || $1",
    ),
    Scenario(
        "instance",
        "upsert",
        # No ids: each delivery that wrote them would make new rows.
        lambda tag: [instance(tag, n) for n in range(3)],
        lambda _tag: "LOCK TABLE instance IN SHARE MODE",
        "SELECT count(*) FROM instance WHERE jsonb ->> 'title' LIKE '%' || $1",
    ),
]


async def _waiting_on_locks(pg: asyncpg.Connection) -> int:
    waiting: int = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return waiting


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "resumes"),
    [*((scenario, True) for scenario in SCENARIOS), (SCENARIOS[0], False)],
    ids=["activities", "instances-without-id", "activities-stalled-for-good"],
)
async def test_a_stalled_worker_and_its_successor_write_a_chunk_once(
    settings: Settings,
    own_broker: str,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
    tmp_path: Path,
    scenario: Scenario,
    resumes: bool,
) -> None:
    """``resumes``: the first worker goes on (SIGCONT) once the lock is gone; else it stays
    stopped, and PostgreSQL ends its transaction after BATCHLINE_STALLED_WRITER_SECONDS."""
    group = settings.model_copy(
        update={
            "kafka_bootstrap_servers": own_broker,
            "consumer_group": f"stalled-{tag}",
            "ingest_partitions": 1,  # one owner at a time
            "kafka_session_timeout_ms": 6000,
        }
    )
    await create_topics(group)
    # A front door's batch: its header is written before its chunks go out, so nothing
    # about the header makes the second delivery wait.
    header = await batches.create(
        pg, scenario.entity, Source.REST, 3, ChunkOptions(), Operation(scenario.operation)
    )
    batch_id = header.id
    chunk = {
        "entity": scenario.entity,
        "operation": scenario.operation,
        "batch_id": batch_id,
        "record_count": 3,
        "records": scenario.records(tag),
    }
    locker = await db.connect(settings.require_database_url())
    workers: list[WorkerProcess] = []

    async def start(name: str) -> WorkerProcess:
        worker = await WorkerProcess.start(
            group,
            tmp_path / f"worker-{name}.log",
            data_dir=tmp_path / f"worker-{name}",
            db_pool_max_size=4,
            stalled_writer_seconds=30 if resumes else 3,
        )
        workers.append(worker)
        await until(worker.serving, f"worker {name} is up")
        return worker

    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute(scenario.blocker(tag))
        first = await start("first")
        produce(own_broker, INGEST, [(batch_id.encode(), orjson.dumps(chunk))])
        await until(lambda: _has_waiters(pg, 1), "the first worker waits for the lock")

        first.process.send_signal(signal.SIGSTOP)
        await start("second")
        # The group gives the partition to the second worker once the first one's session
        # has timed out; it receives the chunk again and waits behind the first's work.
        await until(lambda: _has_waiters(pg, 2), "the second worker waits", attempts=600)

        await lock.rollback()
        if resumes:
            first.process.send_signal(signal.SIGCONT)
        body = await completed_batch(http, batch_id)
        # The second worker re-emits what the first one wrote; give it time to, and to
        # do anything else it would.
        await asyncio.sleep(2)
        again = await completed_batch(http, batch_id)
    finally:
        for worker in workers:
            if worker.process.returncode is None:
                worker.process.send_signal(signal.SIGCONT)
            await worker.stop()
        await locker.close()

    assert await pg.fetchval(scenario.count, tag) == 3
    assert (body["status"], body["inserted_count"], body["failed_count"]) == ("completed", 3, 0)
    assert [(r["index"], r["status"], r["result"]) for r in body["results"]] == [
        (n, "success", "created") for n in range(3)
    ]
    assert again == body


async def _has_waiters(pg: asyncpg.Connection, count: int) -> bool:
    return await _waiting_on_locks(pg) >= count
