"""Running ``batchline`` commands as separate processes, configured like a deployment."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from batchline.cli.embedded import free_port
from batchline.settings import Settings


def batchline_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment a process needs to reach the same services as ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_")}
    configured = {
        "database_url": settings.database_url,
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
        "consumer_group": settings.consumer_group,
        "data_dir": settings.data_dir,
        "dlq_max_replays": settings.dlq_max_replays,
        "kafka_session_timeout_ms": settings.kafka_session_timeout_ms,
        "retry_backoff_seconds": settings.retry_backoff_seconds,
        "max_processing_attempts": settings.max_processing_attempts,
        "ingest_partitions": settings.ingest_partitions,
    } | overrides
    env |= {f"BATCHLINE_{k.upper()}": str(v) for k, v in configured.items() if v is not None}
    return env


async def until(condition: Callable[[], Awaitable[bool]], what: str, attempts: int = 600) -> None:
    """Wait, polling every 0.1 s, until ``condition`` holds; a bound, not a timing assertion."""
    for _ in range(attempts):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


def user_env(**settings: Any) -> dict[str, str]:
    """A user's shell: no BATCHLINE_ setting but these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_")}
    return env | {f"BATCHLINE_{k.upper()}": str(v) for k, v in settings.items()}


@dataclass(frozen=True)
class Finished:
    code: int
    out: str
    err: str

    @property
    def said(self) -> str:
        return self.out + self.err


async def run_cli(settings: Settings, *args: str, **overrides: Any) -> Finished:
    """``batchline <args>`` to completion, without blocking the test's event loop."""
    return await run_command(args, batchline_env(settings, **overrides))


async def run_command(
    args: Sequence[str], env: dict[str, str], cwd: Path | None = None
) -> Finished:
    """``batchline <args>`` with exactly this environment, from ``cwd``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "batchline.cli",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


class WorkerProcess:
    """``batchline worker`` with its own metrics port and log file."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path, metrics_port: int) -> None:
        self.process = process
        self.log = log
        self.metrics_port = metrics_port

    @classmethod
    async def start(
        cls,
        settings: Settings,
        log: Path,
        python_path: Path | None = None,
        **overrides: Any,
    ) -> WorkerProcess:
        port = free_port()
        env = batchline_env(settings, worker_metrics_port=port, **overrides)
        if python_path is not None:  # a sitecustomize.py there changes the worker's Python
            env["PYTHONPATH"] = os.pathsep.join([str(python_path), env.get("PYTHONPATH", "")])
        with log.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "batchline.cli",
                "worker",
                env=env,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )
        return cls(process, log, port)

    def assert_running(self) -> None:
        if self.process.returncode is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{tail}")

    async def serving(self) -> bool:
        """True once the worker is up (its /metrics answer); raises if it exited."""
        self.assert_running()
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def records_written(self) -> float:
        """Records this worker stored, from its /metrics; 0 before it serves them."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                text = await response.text()
        except aiohttp.ClientError:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("batchline_records_written_total{")
        )

    def logged(self, text: str) -> int:
        """How many times ``text`` appears in the worker's log."""
        return self.log.read_text(errors="replace").count(text)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no offset commit."""
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.kill()
        await self.process.wait()
