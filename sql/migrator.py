"""Applies ``sql/migrations/NNNN_*.sql`` in order, each once, each in its own transaction."""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every migrating process.
_MIGRATION_LOCK_KEY = 0x62617463686C6E

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migration (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("sql").joinpath("migrations")
    found = [
        (entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Bring the schema up to date; returns the versions applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_LEDGER_DDL)
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migration")}
        for version, text in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute("INSERT INTO schema_migration (version) VALUES ($1)", version)
            log.info("applied migration %s", version)
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY)
    return applied_now


async def pending(conn: asyncpg.Connection) -> list[str]:
    """Migrations this database lacks: every one where batchline's schema was never applied."""
    if await conn.fetchval("SELECT to_regclass('schema_migration')") is None:
        return [version for version, _ in migration_files()]
    done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migration")}
    return [version for version, _ in migration_files() if version not in done]
