"""A database that refuses one batch: a chunk (or an outcome) that fails however often it
is retried, until the operator "fixes" it (the trigger is dropped)."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import asyncpg

_BATCH_ID = re.compile(r"^[A-Za-z0-9._:-]+$")


@contextlib.asynccontextmanager
async def refusing_ledger(
    conn: asyncpg.Connection, batch_id: str, *, keep_dead_lettered: bool = False
) -> AsyncIterator[None]:
    """While inside, the ledger refuses every chunk of ``batch_id`` (a permanent error),
    except, with ``keep_dead_lettered``, the rows the inserter keeps for a dead letter."""
    exempt = " AND NEW.written" if keep_dead_lettered else ""
    async with _refusing(conn, "chunk_ledger", batch_id, exempt):
        yield


@contextlib.asynccontextmanager
async def refusing_projection(conn: asyncpg.Connection, batch_id: str) -> AsyncIterator[None]:
    """While inside, the projection refuses every outcome of ``batch_id``."""
    async with _refusing(conn, "chunk_result", batch_id, ""):
        yield


@contextlib.asynccontextmanager
async def _refusing(
    conn: asyncpg.Connection, table: str, batch_id: str, exempt: str
) -> AsyncIterator[None]:
    assert _BATCH_ID.match(batch_id)
    name = f"refuse_{uuid.uuid4().hex[:12]}"
    await conn.execute(
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.batch_id = '{batch_id}'{exempt} THEN
                    RAISE EXCEPTION '% write refused by the test', TG_TABLE_NAME;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE INSERT ON {table}
                FOR EACH ROW EXECUTE FUNCTION {name}();"""
    )
    try:
        yield
    finally:
        await conn.execute(f"DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}();")
