"""A database that refuses one batch: a chunk that fails however often it is retried,
until the operator "fixes" it (the trigger is dropped)."""

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
    """While inside, the ledger refuses every record of ``batch_id`` (a permanent error),
    except, with ``keep_dead_lettered``, the rows the inserter keeps for a dead letter."""
    assert _BATCH_ID.match(batch_id)
    name = f"refuse_{uuid.uuid4().hex[:12]}"
    exempt = " AND NEW.error IS DISTINCT FROM 'processing_failed'" if keep_dead_lettered else ""
    await conn.execute(
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.batch_id = '{batch_id}'{exempt} THEN
                    RAISE EXCEPTION 'ledger write refused by the test';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE INSERT ON record_ledger
                FOR EACH ROW EXECUTE FUNCTION {name}();"""
    )
    try:
        yield
    finally:
        await conn.execute(f"DROP TRIGGER {name} ON record_ledger; DROP FUNCTION {name}();")
