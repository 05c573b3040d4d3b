"""`batchline dev` on a bare machine: embedded services, supervised API and worker processes,
Ctrl-C, restart, and the other commands finding its services by themselves."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from batchline.cli.embedded import free_port
from tests.integration.processes import run_command, user_env

ENTITIES = Path(__file__).resolve().parents[2] / "entities"

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


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder to run ``batchline dev`` from, outside pytest's own temporary root: running as
    root, pgserver opens the parents of its data directory to its ``pgserver`` user, and a
    concurrent pytest session would close /tmp/pytest-of-root again under a running initdb."""
    with tempfile.TemporaryDirectory(prefix="batchline-dev-test-") as name:
        yield Path(name)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class DevStack:
    process: asyncio.subprocess.Process
    log: Path
    url: str
    folder: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def postmaster(self) -> int:
        pid_file = self.folder / ".batchline" / "pgdata" / "postmaster.pid"
        return int(pid_file.read_text().split()[0])

    def processes(self, command: str) -> list[int]:
        return [
            p for p in children(self.process.pid) if f"batchline.cli {command}" in command_line(p)
        ]

    async def wait_for_output(self, text: str) -> None:
        deadline = time.monotonic() + 60
        while text not in self.output():
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output()[-3000:]}"
            await asyncio.sleep(0.1)


@asynccontextmanager
async def batchline_dev(folder: Path, port: int, *args: str) -> AsyncIterator[DevStack]:
    """``batchline dev`` run from ``folder`` as a user runs it; stopped with Ctrl-C (SIGINT)."""
    log = folder / f"dev-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "batchline.cli",
            "dev",
            *args,
            cwd=folder,
            env=user_env(entities_dir=ENTITIES, http_port=port, kafka_session_timeout_ms=6000),
            stdout=sink,
            stderr=sink,
        )
    stack = DevStack(process, log, f"http://127.0.0.1:{port}", folder)
    try:
        async with aiohttp.ClientSession(base_url=stack.url) as http:
            for _ in range(900):
                try:
                    async with http.get("/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert process.returncode is None, f"dev exited during start-up:\n{stack.output()}"
                await asyncio.sleep(0.1)
        await stack.wait_for_output("batchline dev is up")
        yield stack
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 90)
    if process.returncode != -signal.SIGKILL:  # unless the test killed it outright
        assert process.returncode == 0, stack.output()[-3000:]


async def completed(http: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
    """POST a batch and read it back until it is no longer processing."""
    async with http.post("/api/v1/batch-inserts", json=body) as response:
        assert response.status in (201, 202), await response.text()
        batch: dict[str, Any] = await response.json()
    for _ in range(600):
        if batch["status"] != "processing":
            return batch
        await asyncio.sleep(0.1)
        async with http.get(f"/api/v1/batch-inserts/{batch['id']}") as response:
            batch = await response.json()
    raise AssertionError(f"batch still processing: {batch}")


def fresh_records(tag: str) -> dict[str, Any]:
    return {"activities": [{**a, "coordinator_id": f"coord-{tag}"} for a in SEED["activities"]]}


async def test_dev_runs_everything_embedded_and_keeps_data_across_restarts(
    folder: Path,
) -> None:
    port = free_port()
    async with (
        batchline_dev(folder, port, "--verbose") as dev,
        aiohttp.ClientSession(base_url=dev.url) as http,
    ):
        async with http.post("/api/v1/batch-inserts", json=SEED) as response:
            assert response.status == 201
            created = await response.json()
        assert created["status"] == "completed"
        assert created["inserted_count"] == 2
        # --verbose lets the embedded PostgreSQL's set-up speak.
        assert "initdb" in dev.output()
        async with http.get("/console/") as response:
            assert response.status == 200
            assert "<title>batchline console</title>" in await response.text()

    assert (folder / ".batchline" / "pgdata").is_dir()

    async with (
        batchline_dev(folder, port) as dev,
        aiohttp.ClientSession(base_url=dev.url) as http,
    ):
        async with http.get(f"/api/v1/batch-inserts/{created['id']}") as response:
            assert response.status == 200
            assert (await response.json())["results"] == created["results"]
        async with http.post("/api/v1/batch-inserts", json=SEED) as response:
            again = await response.json()
        assert again["failed_count"] == 2
        assert {r["error"] for r in again["results"]} == {"unique_constraint_violation"}


async def test_dev_supervises_its_processes_and_stops_them_all(folder: Path) -> None:
    port = free_port()
    async with (
        batchline_dev(folder, port, "--workers", "2") as dev,
        aiohttp.ClientSession(base_url=dev.url) as http,
    ):
        api, workers = dev.processes("api"), dev.processes("worker")
        assert len(api) == 1
        assert len(workers) == 2
        state = orjson.loads((folder / ".batchline" / "dev.json").read_bytes())
        assert state["pid"] == dev.process.pid
        assert state["api_url"] == dev.url
        postmaster = dev.postmaster()
        broker = [p for p in children(dev.process.pid) if "tansu" in command_line(p)]
        assert len(broker) == 1

        first = await completed(http, fresh_records("first"))
        assert (first["status"], first["inserted_count"]) == ("completed", 2)

        os.kill(workers[0], signal.SIGKILL)
        await dev.wait_for_output(f"worker1 (pid {workers[0]}) was killed by SIGKILL; restarting")
        await dev.wait_for_output("worker1 restarted")
        restarted = dev.processes("worker")
        assert len(restarted) == 2
        assert workers[0] not in restarted
        after = await completed(http, fresh_records("after-kill"))
        assert (after["status"], after["inserted_count"]) == ("completed", 2)

        # Another command run from the same folder finds the database by itself.
        listing = await run_command(["dlq", "list"], user_env(entities_dir=ENTITIES), folder)
        assert listing.code == 0, listing.err
        assert "0 dead letters" in listing.out
        # ... and `load` the API, without --url.
        lines = [orjson.dumps({**a, "coordinator_id": "coord-loaded"}) for a in SEED["activities"]]
        (folder / "activities.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        loaded = await run_command(["load", "activities.ndjson"], user_env(), folder)
        assert loaded.code == 0, loaded.said
        assert "inserted      2\n" in loaded.out

        every_pid = [dev.process.pid, *api, *workers, *restarted, *broker, postmaster]
        output = dev.output()
        assert f"API       {dev.url}" in output
        assert f"broker    {state['kafka_bootstrap_servers']}" in output
        assert '"POST /api/v1/batch-inserts HTTP/1.1" 201' in output
        completed_line = (
            f"batch {first['id']} completed: 2 records, 2 inserted, 0 updated, 0 failed"
        )
        assert completed_line in output

    assert not [pid for pid in every_pid if alive(pid)]
    assert not (folder / ".batchline" / "dev.json").exists()
    output = dev.output()
    # Quiet by default: no initdb transcript, no Faust chatter, no tracebacks.
    assert "initdb" not in output
    assert "The files belonging to this database system" not in output
    assert "Traceback" not in output


async def test_dev_on_a_taken_port_says_which_setting_to_change(folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dev = await run_command(["dev"], user_env(entities_dir=ENTITIES, http_port=port), folder)
        api = await run_command(
            ["api"],
            user_env(
                entities_dir=ENTITIES,
                http_port=port,
                database_url="postgresql://nobody@127.0.0.1:1/none",
                kafka_bootstrap_servers="127.0.0.1:1",
            ),
            folder,
        )
    for finished in (dev, api):
        assert finished.code != 0
        said = finished.said
        assert f"127.0.0.1:{port} is already in use" in said
        assert "BATCHLINE_HTTP_PORT" in said
        assert "Traceback" not in said
        assert "rdkafka" not in said
        assert len(said.strip().splitlines()) == 1, said
    assert not (folder / ".batchline" / "pgdata").exists()  # nothing was started


async def test_a_dev_killed_outright_leaves_nothing_the_next_one_cannot_stop(folder: Path) -> None:
    port = free_port()
    async with batchline_dev(folder, port, "--workers", "1") as dev:
        processes = [*dev.processes("api"), *dev.processes("worker")]
        broker = [p for p in children(dev.process.pid) if "tansu" in command_line(p)]
        postmaster = dev.postmaster()
        dev.process.kill()
        await dev.process.wait()
    # The kernel takes dev's own processes with it; PostgreSQL runs on, detached.
    for _ in range(50):
        if not [pid for pid in [*processes, *broker] if alive(pid)]:
            break
        await asyncio.sleep(0.1)
    assert not [pid for pid in [*processes, *broker] if alive(pid)]
    assert alive(postmaster)

    async with (
        batchline_dev(folder, port, "--workers", "1") as dev,
        aiohttp.ClientSession(base_url=dev.url) as http,
    ):
        assert dev.postmaster() == postmaster  # adopted, not started twice
        batch = await completed(http, fresh_records("after-kill-9"))
        assert batch["inserted_count"] == 2
    assert not alive(postmaster)
