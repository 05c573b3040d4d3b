"""PostgreSQL connection pools and the line between transient and permanent failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson


def json_text(value: Any) -> str | None:
    """A value as JSON text for a ``text[]`` parameter cast to jsonb in SQL.

    asyncpg cannot tell a JSON array inside a ``jsonb[]`` parameter from another array
    dimension, so arrays of documents travel as text.
    """
    return None if value is None else _json(value)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits, which a record may hold (and fail
        # validation for); the standard encoder writes them exactly instead of failing the
        # whole statement, and with it every other record of the chunk.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=_json,
            decoder=orjson.loads,
            schema="pg_catalog",
        )


@contextlib.asynccontextmanager
async def kept_savepoint(conn: asyncpg.Connection, name: str) -> AsyncIterator[None]:
    """A savepoint inside the caller's transaction that a failure in the block rolls back
    to; one that succeeds stays in place until the transaction ends rather than being
    released (a nested ``conn.transaction()`` spends a round trip on that).

    For a few per transaction: each kept one that writes holds a subtransaction id until
    commit, and past 64 of them other sessions' snapshots get slower.
    """
    await conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        if not conn.is_closed():
            await conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        raise


async def insert_resolving_conflicts(
    conn: asyncpg.Connection, plain: str, resolving: str, *args: Any
) -> list[asyncpg.Record]:
    """Run ``plain`` (an INSERT without ON CONFLICT) in a savepoint of the caller's
    transaction; if it hits a key, run ``resolving`` (the same INSERT with ON CONFLICT)
    instead.

    Most writes are first runs that replace nothing, and a plain INSERT costs less than one
    with ON CONFLICT, which inserts speculatively row by row (README, Performance).
    """
    try:
        async with kept_savepoint(conn, "batchline_plain_insert"):
            rows: list[asyncpg.Record] = await conn.fetch(plain, *args)
            return rows
    except asyncpg.UniqueViolationError:
        resolved: list[asyncpg.Record] = await conn.fetch(resolving, *args)
        return resolved


# asyncpg prepares every statement, and PostgreSQL switches a prepared statement to a
# generic plan after five runs. Tables start empty, so that plan is costed for empty tables
# (hash joins over sequential scans) and kept as they grow to millions of rows: the
# projector then read all of batch_result for every window. Planning each run instead
# costs well under a millisecond against statements that touch a thousand rows.
_SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


# How long opening a connection may take. A server that is down refuses at once; one behind
# a network that drops packets would hold every request for asyncpg's default minute
# before the API could answer 503.
CONNECT_TIMEOUT_SECONDS = 10.0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo: see ``create_pool``'s ``session_state_free``."""


async def create_pool(
    url: str,
    max_size: int = 10,
    min_size: int = 1,
    *,
    idle_transaction_timeout_seconds: float | None = None,
    session_state_free: bool = False,
) -> asyncpg.Pool:
    """``idle_transaction_timeout_seconds``: PostgreSQL ends a transaction whose client
    went quiet that long (a stopped process), releasing what it held.

    ``session_state_free``: the owner promises its connections never leave session state
    behind (no LISTEN, session-level advisory lock, SET or held cursor; transaction-level
    ones end with their transaction). asyncpg then skips the query it sends on every
    release to undo such state (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL``), one round trip per acquire; an open transaction is still rolled back.
    """
    settings = dict(_SERVER_SETTINGS)
    if idle_transaction_timeout_seconds is not None:
        timeout_ms = max(1, round(idle_transaction_timeout_seconds * 1000))
        settings["idle_in_transaction_session_timeout"] = str(timeout_ms)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        timeout=CONNECT_TIMEOUT_SECONDS,
        command_timeout=60,
        server_settings=settings,
        reset=_keep_session if session_state_free else None,
    )
    return pool


async def ping(pool: asyncpg.Pool) -> None:
    """Raises unless the database answers."""
    await pool.fetchval("SELECT 1")


async def connect(url: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(url, server_settings=_SERVER_SETTINGS)
    await _init_connection(conn)
    return conn


# SQLSTATE classes that mean "the database is not there right now", not "this data is bad":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (restart),
# 40 transaction rollback (serialization failure, deadlock).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "40")


# What asyncpg says when a connection's protocol was left mid-operation by a server that
# went away (a restart between an error and its sync point): the next connection works.
_BROKEN_PROTOCOL = re.compile(r"cannot switch to|not connected|cannot process message")


def is_transient(exc: BaseException) -> bool:
    """True when retrying later can succeed without changing the input."""
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(
        exc, ValueError | asyncpg.exceptions.UnsupportedClientFeatureError
    ):
        # asyncpg's refusals of an argument (a string it cannot encode, say) or of its
        # configuration: the same call fails the same way again.
        return False
    if isinstance(
        exc,
        OSError
        | asyncio.TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError,
    ):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        return _BROKEN_PROTOCOL.search(str(exc)) is not None
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate: Any = getattr(exc, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False
