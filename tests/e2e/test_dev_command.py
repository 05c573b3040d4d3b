"""`batchline dev` on a bare machine: embedded PostgreSQL and Kafka, Ctrl-C, restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from batchline.cli.embedded import free_port

SEED = {
    "activities": [
        {
            "coordinator_id": "coord-42",
            "mentor_id": "mentor-17",
            "activity_type": "group_workshop",
            "activity_date": "2026-03-28",
            "duration_minutes": 120,
        },
        {
            "coordinator_id": "coord-42",
            "mentor_id": "mentor-18",
            "activity_type": "group_workshop",
            "activity_date": "2026-03-28",
            "duration_minutes": 120,
        },
    ]
}


@asynccontextmanager
async def batchline_dev(data_dir: Path, port: int) -> AsyncIterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_")}
    env |= {
        "BATCHLINE_DATA_DIR": str(data_dir),
        "BATCHLINE_HTTP_PORT": str(port),
        "BATCHLINE_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "batchline.cli",
        "dev",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(base_url=url) as http:
            for _ in range(600):
                try:
                    async with http.get("/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert process.returncode is None, "batchline dev exited during start-up"
                await asyncio.sleep(0.1)
        yield url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, output.decode(errors="replace")[-3000:]


async def test_dev_runs_everything_embedded_and_keeps_data_across_restarts(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with batchline_dev(tmp_path, port) as url, aiohttp.ClientSession(base_url=url) as http:
        async with http.post("/api/v1/batch-inserts", json=SEED) as response:
            assert response.status == 201
            created = await response.json()
        assert created["status"] == "completed"
        assert created["inserted_count"] == 2
        async with http.get("/console/") as response:
            assert response.status == 200
            assert "<title>batchline console</title>" in await response.text()

    assert (tmp_path / "pgdata").is_dir()

    async with batchline_dev(tmp_path, port) as url, aiohttp.ClientSession(base_url=url) as http:
        async with http.get(f"/api/v1/batch-inserts/{created['id']}") as response:
            assert response.status == 200
            assert (await response.json())["results"] == created["results"]
        async with http.post("/api/v1/batch-inserts", json=SEED) as response:
            again = await response.json()
        assert again["failed_count"] == 2
        assert {r["error"] for r in again["results"]} == {"unique_constraint_violation"}
