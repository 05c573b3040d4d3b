"""PostgreSQL goes away mid-stream and comes back: the worker pauses, then carries on;
nothing is lost, nothing is written twice, nothing is dead-lettered.

The worker is a ``batchline worker`` process on its own broker, reaching the database
through a proxy the test cuts (open connections dropped, new ones refused) and restores.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg
import orjson

from batchline.cli.embedded import free_port
from batchline.cli.runtime import create_topics
from batchline.settings import Settings
from tests.integration.activities import activity, stored_activities
from tests.integration.kafka import completed_batch, produce, read_all
from tests.integration.processes import WorkerProcess, until
from tests.tcp_proxy import TcpProxy, postgres_target, through_proxy

INGEST = "batchline.ingest"
CHUNK = 100


def _chunks(batch_id: str, tag: str, first: int, records: int) -> list[tuple[bytes, bytes]]:
    """A batch as chunk envelopes; activity mentors ``first`` … ``first + records - 1``."""
    return [
        (
            batch_id.encode(),
            orjson.dumps(
                {
                    "entity": "activity",
                    "batch_id": batch_id,
                    "record_count": records,
                    "first_index": start,
                    "records": [
                        activity(tag, first + n) for n in range(start, min(start + CHUNK, records))
                    ],
                }
            ),
        )
        for start in range(0, records, CHUNK)
    ]


async def test_a_database_outage_mid_stream_loses_nothing_and_dead_letters_nothing(
    settings: Settings,
    own_broker: str,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
    tmp_path: Path,
) -> None:
    database_url = settings.require_database_url()
    proxy = TcpProxy(postgres_target(database_url), free_port())
    await proxy.start()
    isolated = settings.model_copy(
        update={
            "kafka_bootstrap_servers": own_broker,
            "consumer_group": f"outage-{tag}",
            "data_dir": tmp_path / "worker",
        }
    )
    await create_topics(isolated)
    worker = await WorkerProcess.start(
        isolated,
        tmp_path / "worker.log",
        database_url=through_proxy(database_url, proxy.port),
        db_pool_max_size=4,
        # Every wait logged: the test counts them to know the outage was waited out.
        log_repeat_seconds=0,
    )
    batches = {f"before-{tag}": 200, f"during-{tag}": 3000, f"while-down-{tag}": 500}
    try:
        await until(worker.serving, "the worker is up")
        produce(own_broker, INGEST, _chunks(f"before-{tag}", tag, 0, 200))
        assert (await completed_batch(http, f"before-{tag}"))["inserted_count"] == 200

        produce(own_broker, INGEST, _chunks(f"during-{tag}", tag, 1000, 3000))

        async def writing() -> bool:
            done = await pg.fetchval(
                "SELECT inserted_count FROM batch WHERE id = $1", f"during-{tag}"
            )
            return bool(done)

        await until(writing, "the second batch is being written")
        await proxy.cut()
        produce(own_broker, INGEST, _chunks(f"while-down-{tag}", tag, 5000, 500))

        async def paused() -> bool:
            worker.assert_running()
            return worker.logged("transient database error, retrying the chunk") >= 4

        await until(paused, "the worker has waited out the outage a few times")
        await proxy.restore()

        finished = {batch_id: await completed_batch(http, batch_id) for batch_id in batches}
        worker.assert_running()
    finally:
        await worker.stop()
        await proxy.close()

    for batch_id, records in batches.items():
        body = finished[batch_id]
        assert (body["status"], body["inserted_count"], body["failed_count"]) == (
            "completed",
            records,
            0,
        ), batch_id
        assert {r["status"] for r in body["results"]} == {"success"}
    stored = await stored_activities(pg, tag)
    assert stored == sum(batches.values())
    assert read_all(own_broker, "batchline.dlq") == []
    assert worker.logged("transient database error, retrying the chunk")
