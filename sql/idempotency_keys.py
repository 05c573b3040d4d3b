"""Idempotency keys of the batch-insert front door: a request with a key it has seen is
answered with the first request's answer instead of starting a second batch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg

from batchline.vocabulary import Source
from sql import batches
from streams.envelopes import ChunkOptions


def request_fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    batch_id: str | None
    status: int | None
    body: Any
    # Whether the broker took every chunk of the batch, and how long ago the key was
    # claimed (or last taken over).
    published: bool
    age_seconds: float


# Longer keys do not fit PostgreSQL's index entries; no client needs more than a UUID or two.
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# A request writes its batch header within milliseconds of claiming its key, and hands its
# chunks to the broker within seconds. A claim older than this without a batch, or with a
# batch whose chunks were never acknowledged, belongs to a request that died (its process
# killed, say): the next request with the key takes it over instead of being told "in
# flight" until the stale sweep gives the batch up.
ABANDONED_CLAIM_SECONDS = 10.0


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
        ABANDONED_CLAIM_SECONDS,
    )
    if claimed is not None:
        return None
    row = await pool.fetchrow(
        """SELECT request_hash, batch_id, response_status, response_body,
                  published_at IS NOT NULL,
                  extract(epoch FROM now() - created_at)::float8
           FROM idempotency_key WHERE key = $1""",
        key,
    )
    if row is None:  # released between our insert and select: claim again
        return await claim_idempotency_key(pool, key, fingerprint)
    return StoredResponse(*row.values())


async def create_for_key(
    pool: asyncpg.Pool,
    key: str,
    entity: str,
    source: Source,
    record_count: int,
    options: ChunkOptions,
) -> batches.BatchHeader:
    """``batches.create``, tying the claimed key to the new batch in the same transaction:
    no moment in which a dying request leaves a batch its key does not lead to."""
    async with pool.acquire() as conn, conn.transaction():
        header = await batches.create(conn, entity, source, record_count, options)
        await conn.execute(
            "UPDATE idempotency_key SET batch_id = $2 WHERE key = $1", key, header.id
        )
    return header


async def mark_published(pool: asyncpg.Pool, key: str) -> None:
    """The broker has every chunk of the key's batch."""
    await pool.execute("UPDATE idempotency_key SET published_at = now() WHERE key = $1", key)


async def take_over_unpublished(pool: asyncpg.Pool, key: str) -> bool:
    """True when this request is the one to publish an abandoned batch's chunks again.

    Restarts the claim's clock, so of several requests with the key only one re-sends
    per ``ABANDONED_CLAIM_SECONDS``.
    """
    taken = await pool.fetchval(
        """UPDATE idempotency_key SET created_at = now()
           WHERE key = $1 AND published_at IS NULL AND response_status IS NULL
             AND created_at < now() - make_interval(secs => $2)
           RETURNING key""",
        key,
        ABANDONED_CLAIM_SECONDS,
    )
    return taken is not None


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
