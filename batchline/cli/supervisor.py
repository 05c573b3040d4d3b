"""``batchline dev``: the embedded services once, then the API and the workers as processes.

The API and every worker run as ``batchline api`` / ``batchline worker`` child processes,
the same code a deployment runs, so ``dev`` uses every core and behaves like production.
The supervisor restarts a process that exits (waiting longer after each quick crash, so a
crash loop does not spin), labels each line the processes print, logs a line when a batch
completes, and on Ctrl-C or SIGTERM stops the processes first and the embedded services
last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from api.access import authentication_summary
from batchline.cli import devstate, runtime
from batchline.cli.embedded import kill_when_parent_dies, port_is_free
from batchline.entities.schema import load_registry
from batchline.settings import Settings
from sql import batches, db, entity_tables, migrator
from sql.batches import BATCH_DONE_CHANNEL
from streams import topics

log = logging.getLogger(__name__)

# A stable address for the embedded broker, so tools pointed at it keep working across
# restarts; another free port when something else holds it.
DEV_BROKER_PORT = 9092
# The first restart comes after this long; each quick crash after that doubles it.
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# A process that ran this long before it exited counts as healthy: the backoff starts over.
STABLE_SECONDS = 30.0
# A worker's own shutdown takes up to ~30 s (lanes drained, Faust stopped); then SIGKILL.
STOP_SECONDS = 45.0
STARTUP_SECONDS = 120.0
_OUTPUT_CHUNK = 65536


def default_worker_count() -> int:
    """One worker per core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class Child:
    """One supervised process: ``batchline <command>``, shown as ``label``."""

    label: str
    command: str
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    output: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def backoff(self) -> float:
        """Seconds before the next start: doubles with each exit that came soon after start."""
        ran = time.monotonic() - self.started_at
        self.quick_exits = 0 if ran >= STABLE_SECONDS else self.quick_exits + 1
        doublings = max(self.quick_exits - 1, 0)
        return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2.0**doublings)


class StartupFailed(RuntimeError):
    """A process exited before the stack was up: a configuration error, not a crash."""


class Supervisor:
    """Starts the children, restarts the ones that exit, stops them all."""

    def __init__(self, children: list[Child], env: dict[str, str], *, label_output: bool) -> None:
        self.children = children
        self._env = env
        self._label_output = label_output
        self._width = max(len(child.label) for child in children)
        self._keepers: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        for child in self.children:
            await self._spawn(child)

    async def _spawn(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "batchline.cli",
            child.command,
            env=self._env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Ctrl-C reaches the supervisor only, which stops the processes in order; and
            # if the supervisor is killed outright, the kernel takes the children with it.
            start_new_session=True,
            preexec_fn=kill_when_parent_dies,
        )
        child.started_at = time.monotonic()
        assert child.process.stdout is not None
        child.output = asyncio.create_task(self._forward(child.label, child.process.stdout))

    async def _forward(self, label: str, stream: asyncio.StreamReader) -> None:
        """The child's lines on our stderr, each after its label (JSON logs stay as they are)."""
        prefix = f"{label:<{self._width}} | ".encode() if self._label_output else b""
        sink = sys.stderr.buffer
        pending = b""
        while chunk := await stream.read(_OUTPUT_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            if lines:
                sink.write(b"".join(prefix + line + b"\n" for line in lines))
                sink.flush()
        if pending:
            sink.write(prefix + pending + b"\n")
            sink.flush()

    async def wait_up(self, api_url: str, stop: asyncio.Event) -> None:
        """Until the API answers /ready; raises StartupFailed if any process exits first."""
        deadline = time.monotonic() + STARTUP_SECONDS
        async with aiohttp.ClientSession(base_url=api_url) as http:
            while not stop.is_set():
                self._refuse_exited()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get("/ready", timeout=aiohttp.ClientTimeout(2)) as response:
                        if response.status == 200:
                            self._refuse_exited()
                            return
                if time.monotonic() > deadline:
                    raise StartupFailed(f"the API did not answer {api_url}/ready in time")
                await asyncio.sleep(0.1)

    def _refuse_exited(self) -> None:
        for child in self.children:
            assert child.process is not None
            if child.process.returncode is not None:
                raise StartupFailed(
                    f"{child.label} {describe_exit(child.process.returncode)} while starting"
                    " (its output is above)"
                )

    def keep_running(self) -> None:
        """From now on a process that exits is started again."""
        self._keepers = [asyncio.create_task(self._keep(child)) for child in self.children]

    async def _keep(self, child: Child) -> None:
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping:
                return
            delay = child.backoff()
            log.warning(
                "%s (pid %d) %s; restarting it in %.0f s",
                child.label,
                child.pid,
                describe_exit(code),
                delay,
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._spawn(child)
            log.warning("%s restarted (pid %d)", child.label, child.pid)

    async def stop(self, hurry: asyncio.Event) -> None:
        """SIGTERM to every process, SIGKILL to those still there after STOP_SECONDS or at
        ``hurry`` (a second Ctrl-C); returns once every one has exited."""
        self._stopping = True
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        running = [
            child.process
            for child in self.children
            if child.process is not None and child.process.returncode is None
        ]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        exited: asyncio.Future[list[int]] = asyncio.gather(*(p.wait() for p in running))
        hurried: asyncio.Future[bool] = asyncio.ensure_future(hurry.wait())
        either: list[asyncio.Future[Any]] = [exited, hurried]
        await asyncio.wait(either, timeout=STOP_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        hurried.cancel()
        for process in running:
            if process.returncode is None:
                log.warning("pid %d did not stop in time; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await exited
        outputs = [child.output for child in self.children if child.output is not None]
        await asyncio.wait(outputs, timeout=5)


def child_environment(live: Settings, *, verbose: bool) -> dict[str, str]:
    """The user's environment, plus the services the children share."""
    env = dict(os.environ)
    env["BATCHLINE_DATABASE_URL"] = live.require_database_url()
    env["BATCHLINE_KAFKA_BOOTSTRAP_SERVERS"] = live.require_bootstrap_servers()
    env["BATCHLINE_KAFKA_SESSION_TIMEOUT_MS"] = str(live.kafka_session_timeout_ms)
    env["PYTHONUNBUFFERED"] = "1"
    if verbose:
        env["BATCHLINE_LOG_LEVEL"] = "debug"
    return env


def _signals() -> tuple[asyncio.Event, asyncio.Event]:
    """``stop`` at the first SIGINT/SIGTERM, ``hurry`` at the second."""
    stop, hurry = asyncio.Event(), asyncio.Event()

    def received() -> None:
        if stop.is_set():
            log.warning("stopping now")
            hurry.set()
        else:
            log.info("stopping (Ctrl-C again to kill the processes at once)")
            stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, received)
    return stop, hurry


@contextlib.asynccontextmanager
async def logging_completed_batches(database_url: str) -> AsyncIterator[None]:
    """One line per batch that completes, whichever process finished it."""
    conn = await db.connect(database_url)
    done: asyncio.Queue[str] = asyncio.Queue()

    def notified(_conn: object, _pid: int, _channel: str, batch_id: str) -> None:
        done.put_nowait(batch_id)

    await conn.add_listener(BATCH_DONE_CHANNEL, notified)

    async def report() -> None:
        while True:
            batch_id = await done.get()
            try:
                header = await batches.get(conn, batch_id)
            except Exception as exc:  # noqa: BLE001 - only the log line is lost
                log.warning("cannot read batch %s: %s", batch_id, exc)
                continue
            if header is not None:
                log.info(
                    "batch %s %s: %d record%s, %d inserted, %d updated, %d failed",
                    header.id,
                    header.status,
                    header.record_count,
                    "" if header.record_count == 1 else "s",
                    header.inserted_count,
                    header.updated_count,
                    header.failed_count,
                )

    reporter = asyncio.create_task(report())
    try:
        yield
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await conn.close()


def _banner(live: Settings, settings: Settings, api_url: str, workers: int, state: Path) -> str:
    def origin(configured: str | None, name: str) -> str:
        return f"  (from BATCHLINE_{name})" if configured else "  (embedded)"

    database = runtime.display_url(live.require_database_url())
    return "\n".join(
        [
            f"batchline dev is up: the API and {workers} worker process"
            f"{'es' if workers != 1 else ''} (Ctrl-C stops everything)",
            f"  API       {api_url}   docs {api_url}/docs   console {api_url}/console",
            f"  database  {database}{origin(settings.database_url, 'DATABASE_URL')}",
            f"  broker    {live.require_bootstrap_servers()}"
            f"{origin(settings.kafka_bootstrap_servers, 'KAFKA_BOOTSTRAP_SERVERS')}",
            f"  `batchline dlq`, `migrate`, `load`... run from this folder find these in {state}",
            f"  {authentication_summary(settings)}",
        ]
    )


async def dev_main(settings: Settings, workers: int, *, verbose: bool = False) -> None:
    stop, hurry = _signals()
    load_registry(settings.entities_dir)  # a bad schema stops us before anything starts
    runtime.ensure_port_free(settings.http_host, settings.http_port)
    running = devstate.read(settings.data_dir)
    if running is not None:
        raise RuntimeError(
            f"`batchline dev` already runs from {settings.data_dir} (pid {running.pid}, API on"
            f" {running.api_url}); stop it, or give this one another BATCHLINE_DATA_DIR"
        )
    broker_port = DEV_BROKER_PORT if port_is_free("127.0.0.1", DEV_BROKER_PORT) else None
    async with runtime.embedded_services(settings, broker_port=broker_port) as live:
        if not verbose:  # one summary line instead of one per change
            for chatty in (migrator.__name__, entity_tables.__name__):
                logging.getLogger(chatty).setLevel(logging.WARNING)
        applied = await runtime.apply_migrations(live)
        if applied:
            log.info("database schema: %d changes applied", len(applied))
        await runtime.create_topics(live)
        if workers > live.ingest_partitions:
            log.warning(
                "%d workers share %d partitions of %s: %d will wait idle as standbys"
                " (more partitions: BATCHLINE_INGEST_PARTITIONS)",
                workers,
                live.ingest_partitions,
                topics.INGEST,
                workers - live.ingest_partitions,
            )
        children = [Child("api", "api")]
        children += [Child(f"worker{n}", "worker") for n in range(1, workers + 1)]
        supervisor = Supervisor(
            children,
            child_environment(live, verbose=verbose),
            label_output=settings.log_format == "text",
        )
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host  # noqa: S104
        api_url = f"http://{host}:{settings.http_port}"
        try:
            await supervisor.start()
            await supervisor.wait_up(api_url, stop)
            if stop.is_set():
                return
            supervisor.keep_running()
            state = devstate.write(
                settings.data_dir,
                devstate.DevServices(
                    pid=os.getpid(),
                    api_url=api_url,
                    database_url=None if settings.database_url else live.database_url,
                    kafka_bootstrap_servers=None
                    if settings.kafka_bootstrap_servers
                    else live.kafka_bootstrap_servers,
                ),
            )
            print(_banner(live, settings, api_url, workers, state), flush=True)
            async with logging_completed_batches(live.require_database_url()):
                await stop.wait()
        finally:
            await supervisor.stop(hurry)
            devstate.remove(settings.data_dir, os.getpid())
    log.info("batchline dev stopped")
