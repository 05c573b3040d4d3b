"""FOLIO instance rows (``id uuid`` + ``jsonb``): the version-checked upsert of one round."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from sql.db import json_text

# Rows of the chunk that exist are locked first, so the version check and the update see
# the same row. A row another transaction inserted meanwhile is guarded again in DO UPDATE.
_UPSERT = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[])
         WITH ORDINALITY AS t(id, doc, request_version, request_hrid, position)
), stored AS (
    SELECT i.id, i.jsonb FROM instance i WHERE i.id IN (SELECT id FROM input) FOR UPDATE
), accepted AS (
    SELECT input.*, stored.jsonb AS old
    FROM input LEFT JOIN stored USING (id)
    WHERE stored.id IS NULL
       OR (stored.jsonb -> '_version' IS NOT DISTINCT FROM to_jsonb(input.request_version)
           AND (input.request_hrid IS NULL OR input.request_hrid = stored.jsonb ->> 'hrid'))
)
INSERT INTO instance AS t (id, jsonb)
SELECT id,
       doc::jsonb || jsonb_build_object(
           'id', id,
           '_version', 1,
           'hrid', CASE WHEN request_hrid IS NOT NULL THEN request_hrid
                        WHEN old IS NOT NULL THEN old ->> 'hrid'
                        ELSE 'in' || lpad(nextval('instance_hrid_seq')::text, 11, '0') END)
FROM accepted
ORDER BY position
ON CONFLICT (id) DO UPDATE
SET jsonb = EXCLUDED.jsonb || jsonb_build_object(
        '_version', coalesce((t.jsonb ->> '_version')::int, 0) + 1,
        'hrid', coalesce((SELECT a.request_hrid FROM accepted a WHERE a.id = t.id),
                         t.jsonb ->> 'hrid')),
    updated_date = now()
WHERE t.jsonb -> '_version' IS NOT DISTINCT FROM
      (SELECT to_jsonb(a.request_version) FROM accepted a WHERE a.id = t.id)
RETURNING t.id, t.jsonb, (t.xmax = 0) AS created,
          (SELECT a.old FROM accepted a WHERE a.id = t.id) AS old
"""

_STORED = """
SELECT id, jsonb -> '_version' AS version, jsonb ->> 'hrid' AS hrid
FROM instance WHERE id = ANY($1::uuid[])
"""


async def upsert(
    conn: asyncpg.Connection,
    ids: Sequence[uuid.UUID],
    documents: Sequence[dict[str, Any]],
    versions: Sequence[int | None],
    hrids: Sequence[str | None],
) -> list[asyncpg.Record]:
    """Write the instances whose ``_version`` (and ``hrid``) match the stored row; one row
    back per written instance (``id``, ``jsonb``, ``created``, ``old``)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        _UPSERT, ids, [json_text(doc) for doc in documents], versions, hrids
    )
    return rows


async def versions(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, asyncpg.Record]:
    """The stored ``version`` and ``hrid`` of these instances, by id."""
    return {row["id"]: row for row in await conn.fetch(_STORED, ids)}
