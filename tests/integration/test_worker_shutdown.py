"""A worker asked to stop leaves in bounded time, even with its broker gone."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

from batchline.embedded import EmbeddedKafka
from batchline.runtime import create_topics
from batchline.settings import Settings
from tests.integration.processes import WorkerProcess


async def test_sigterm_stops_a_worker_whose_broker_went_away(
    settings: Settings, tmp_path: Path
) -> None:
    # A broker of its own, so stopping it disturbs no other test.
    with EmbeddedKafka(tmp_path / "broker", stop_timeout=5) as broker:
        own = settings.model_copy(
            update={
                "kafka_bootstrap_servers": broker.bootstrap_servers,
                "consumer_group": f"shutdown-{uuid.uuid4().hex[:8]}",
                "kafka_session_timeout_ms": 2000,
            }
        )
        await create_topics(own)
        worker = await WorkerProcess.start(own, tmp_path / "worker.log")
        try:
            for _ in range(300):
                if await worker.serving():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(3)  # consuming: group joined, fetch loops running
            broker.stop()
            await asyncio.sleep(2)
            worker.process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(worker.process.wait(), 45)
        finally:
            if worker.process.returncode is None:
                worker.kill()
                await worker.process.wait()
    assert code == 0, worker.log.read_text(errors="replace")[-3000:]
