"""TLS in front of services that speak none here: the proxy holds the certificate, the
service behind it sees plain TCP.

- ``TlsProxy``: TLS from the first byte, as Kafka clients speak it (``SSL``, ``SASL_SSL``).
- ``PostgresTlsProxy``: PostgreSQL's way, an ``SSLRequest`` answered ``S`` and then the
  handshake, as libpq and asyncpg do it for any ``sslmode`` but ``disable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct

from tests.certificates import Certificates
from tests.tcp_proxy import Target, TcpProxy

_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def server_context(certificates: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)
    return context


class TlsProxy(TcpProxy):
    def __init__(self, target: Target, port: int, context: ssl.SSLContext) -> None:
        super().__init__(target, port)
        self.context = context

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True, ssl=self.context
        )


class PostgresTlsProxy(TcpProxy):
    def __init__(self, target: Target, port: int, context: ssl.SSLContext) -> None:
        super().__init__(target, port)
        self.context = context
        self.tls_sessions = 0  # handshakes that completed

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readexactly(8)
            if request != _SSL_REQUEST:  # a client that wants no TLS gets none
                raise ConnectionRefusedError
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self.context)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            with contextlib.suppress(OSError):
                writer.close()
            return
        self.tls_sessions += 1
        await super()._serve(reader, writer)
