"""Whole databases: created when missing (embedded and test servers), dropped after tests."""

from __future__ import annotations

import contextlib
import re
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")


def with_database(url: str, database: str) -> str:
    """Return *url* (``postgresql://...``) pointing at *database* instead."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _quote_ident(name: str) -> str:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"refusing odd database name {name!r}")
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(admin_url: str, name: str) -> str:
    """Create database *name* on the server of *admin_url* if missing.

    Returns the URL of the new database.
    """
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """Drop database *name* (``WITH (FORCE)``: kicks out leftover connections)."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()
