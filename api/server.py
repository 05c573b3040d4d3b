"""The API's HTTP server: aiohttp's, with bounds a slow or greedy client cannot get past.

aiohttp waits as long as a client likes for request headers, and accepts connections until
the process runs out of file descriptors. Here a connection gets
``BATCHLINE_HTTP_HEADER_TIMEOUT_SECONDS`` to send a request's headers (from connecting, or
from the first byte of a further request on it), and a process serves at most
``BATCHLINE_HTTP_MAX_CONNECTIONS`` at once: the next is answered 503 and closed at once.
Request bodies are bounded where they are read (``api.requests.read_all``).

Built on aiohttp's RequestHandler internals (its request counter and current request),
which aiohttp 3.x keeps.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# What an over-limit connection is told before it is closed.
_TOO_MANY_BODY = (
    b'{"error":{"code":"service_unavailable","message":"Too many connections","details":null}}'
)
_TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TOO_MANY_BODY), _TOO_MANY_BODY)
)
# Descriptors a process needs besides its clients' connections: database pool, broker,
# log files, spool files.
_RESERVED_DESCRIPTORS = 256


class ConnectionLimits:
    """This process's open connections and how long headers may take."""

    def __init__(self, header_timeout_seconds: float, max_connections: int) -> None:
        self.header_timeout = header_timeout_seconds
        self.max_connections = max_connections
        self.open = 0


class _GuardedHandler(web.RequestHandler):
    def __init__(self, manager: web.Server, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._counted = False
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._limits.open >= self._limits.max_connections:
            log.warning(
                "refusing a connection: %d open, BATCHLINE_HTTP_MAX_CONNECTIONS is %d",
                self._limits.open,
                self._limits.max_connections,
            )
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_TOO_MANY_CONNECTIONS)
            self.force_close()  # closes the transport once the answer is written
            return
        self._limits.open += 1
        self._counted = True
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._counted:
            self._limits.open -= 1
            self._counted = False
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm()  # a request's headers are complete
        elif self._current_request is None and self._header_deadline is None:
            self._arm()  # the first bytes of a further request on this connection

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_deadline = loop.call_later(self._limits.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if self._current_request is None and not self._messages:
            log.info("closing a connection that sent no complete request headers in time")
            self.force_close()  # closes the transport too


class _GuardedServer(web.Server):
    def __init__(self, limits: ConnectionLimits, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits

    def __call__(self) -> web.RequestHandler:
        return _GuardedHandler(self, self._limits, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are bounded by ``limits``."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _GuardedServer(
            self._limits,
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )


def ensure_descriptors(max_connections: int) -> None:
    """Raise the soft limit on open files so ``max_connections`` fit, if the hard one lets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + _RESERVED_DESCRIPTORS
    if soft >= needed:
        return
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        log.warning(
            "open-file limit %d leaves room for fewer than BATCHLINE_HTTP_MAX_CONNECTIONS=%d"
            " connections; lower the setting or raise the limit",
            wanted,
            max_connections,
        )
