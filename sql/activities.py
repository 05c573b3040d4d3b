"""Activity rows: one ``INSERT … SELECT FROM jsonb_array_elements … RETURNING`` per chunk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from sql.db import insert_resolving_conflicts

ActivityValues = tuple[str, str, str, date, int]

_COLUMNS = "id, coordinator_id, mentor_id, activity_type, activity_date, duration_minutes"

# The chunk travels as one JSON array of rows: PostgreSQL unpacks it in C, where five
# bound arrays cost asyncpg a Python-level type check per element.
_INPUT = """
SELECT e->>0 AS c, e->>1 AS m, e->>2 AS t, (e->>3)::date AS d, (e->>4)::int AS n, position
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS input(e, position)
"""

_INSERT_NEW = f"""
INSERT INTO activity (coordinator_id, mentor_id, activity_type, activity_date, duration_minutes)
SELECT c, m, t, d, n FROM ({_INPUT}) AS input ORDER BY position
RETURNING {_COLUMNS}
"""

# A conflicting record still draws an id, leaving a gap; probing the key first to avoid
# that cost more, for every record, than the gap does (README, Performance).
_INSERT = f"""
INSERT INTO activity (coordinator_id, mentor_id, activity_type, activity_date, duration_minutes)
SELECT c, m, t, d, n FROM ({_INPUT}) AS input ORDER BY position
ON CONFLICT ON CONSTRAINT activity_natural_key DO NOTHING
RETURNING {_COLUMNS}
"""

# Retried with ignore_constraints: the existing row takes the retried values.
_UPSERT = f"""
WITH input AS ({_INPUT}), previous AS (
    SELECT a.* FROM activity a
    JOIN input i ON (a.coordinator_id, a.mentor_id, a.activity_type, a.activity_date)
                  = (i.c, i.m, i.t, i.d)
)
INSERT INTO activity AS a
    (coordinator_id, mentor_id, activity_type, activity_date, duration_minutes)
SELECT c, m, t, d, n FROM input ORDER BY position
ON CONFLICT ON CONSTRAINT activity_natural_key
DO UPDATE SET duration_minutes = EXCLUDED.duration_minutes, updated_at = now()
RETURNING {", ".join("a." + c.strip() for c in _COLUMNS.split(","))},
          (SELECT to_jsonb(p) - 'created_at' - 'updated_at' FROM previous p WHERE p.id = a.id)
              AS previous
"""

# The stored rows whose natural keys these are.
_EXISTING = f"""
SELECT a.id, a.coordinator_id, a.mentor_id, a.activity_type, a.activity_date
FROM ({_INPUT}) AS input
JOIN activity a ON (a.coordinator_id, a.mentor_id, a.activity_type, a.activity_date)
                 = (input.c, input.m, input.t, input.d)
"""

NaturalKey = tuple[str, str, str, date]


async def insert_new(
    conn: asyncpg.Connection, values: Sequence[ActivityValues]
) -> list[asyncpg.Record]:
    """Insert; a record whose natural key exists is left out of what comes back."""
    return await insert_resolving_conflicts(conn, _INSERT_NEW, _INSERT, values)


async def upsert(
    conn: asyncpg.Connection, values: Sequence[ActivityValues]
) -> list[asyncpg.Record]:
    """Insert, or give the existing row of the natural key these values; each returned row
    carries the row as it was before (``previous``), or null."""
    rows: list[asyncpg.Record] = await conn.fetch(_UPSERT, values)
    return rows


async def existing_ids(
    conn: asyncpg.Connection, keys: Sequence[NaturalKey]
) -> dict[NaturalKey, str]:
    """The ids of the stored rows with these natural keys (a record that hit one)."""
    rows = await conn.fetch(_EXISTING, [(*key, 0) for key in keys])
    return {
        (r["coordinator_id"], r["mentor_id"], r["activity_type"], r["activity_date"]): r["id"]
        for r in rows
    }


def row_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "coordinator_id": row["coordinator_id"],
        "mentor_id": row["mentor_id"],
        "activity_type": row["activity_type"],
        "activity_date": row["activity_date"].isoformat(),
        "duration_minutes": row["duration_minutes"],
    }
