"""Idempotency keys of the batch-insert front door: a request with a key it has seen is
answered with the first request's answer instead of starting a second batch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg


def request_fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    batch_id: str | None
    status: int | None
    body: Any


# Longer keys do not fit PostgreSQL's index entries; no client needs more than a UUID or two.
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# A request writes its batch header within milliseconds of claiming its key. A claim that is
# older and still has no batch belongs to a request that died (its process killed, say):
# the next request with the key takes it over instead of being told "in flight" forever.
_ABANDONED_CLAIM_SECONDS = 60.0


async def claim_idempotency_key(
    pool: asyncpg.Pool, key: str, fingerprint: str
) -> StoredResponse | None:
    """None when this request owns the key now; else what an earlier request stored."""
    claimed = await pool.fetchval(
        """INSERT INTO idempotency_key (key, request_hash) VALUES ($1, $2)
           ON CONFLICT (key) DO UPDATE SET request_hash = EXCLUDED.request_hash, created_at = now()
           WHERE idempotency_key.batch_id IS NULL AND idempotency_key.response_status IS NULL
             AND idempotency_key.created_at < now() - make_interval(secs => $3)
           RETURNING key""",
        key,
        fingerprint,
        _ABANDONED_CLAIM_SECONDS,
    )
    if claimed is not None:
        return None
    row = await pool.fetchrow(
        "SELECT request_hash, batch_id, response_status, response_body"
        " FROM idempotency_key WHERE key = $1",
        key,
    )
    if row is None:  # released between our insert and select: claim again
        return await claim_idempotency_key(pool, key, fingerprint)
    return StoredResponse(*row.values())


async def attach_idempotency_key(pool: asyncpg.Pool, key: str, batch_id: str) -> None:
    """Tie a claimed key to its batch at once, so the key outlives a request that dies."""
    await pool.execute("UPDATE idempotency_key SET batch_id = $2 WHERE key = $1", key, batch_id)


async def store_idempotent_response(
    pool: asyncpg.Pool, key: str, batch_id: str, status: int, body: Any
) -> None:
    await pool.execute(
        """UPDATE idempotency_key SET batch_id = $2, response_status = $3, response_body = $4
           WHERE key = $1""",
        key,
        batch_id,
        status,
        body,
    )


async def release_idempotency_key(pool: asyncpg.Pool, key: str) -> None:
    await pool.execute(
        "DELETE FROM idempotency_key WHERE key = $1 AND response_status IS NULL", key
    )
