"""How batchline's database connections are set up."""

from __future__ import annotations

import uuid

from batchline.settings import Settings
from sql import db

# The projector's shape: rows unpacked from one JSON document, joined to a keyed table.
_LOOKUP = """
SELECT t.note
FROM jsonb_array_elements($1::jsonb) AS o
JOIN {table} AS t ON t.id = (o->>0)::int
"""


async def test_a_statement_prepared_on_an_empty_table_uses_its_index_once_it_has_grown(
    settings: Settings,
) -> None:
    table = f"plan_check_{uuid.uuid4().hex[:8]}"
    lookup = _LOOKUP.format(table=table)
    keys = [[n] for n in range(1, 50)]
    pool = await db.create_pool(settings.require_database_url(), max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
            for _ in range(6):  # past the five runs after which PostgreSQL may go generic
                await conn.fetch(lookup, keys)
            await conn.execute(
                f"INSERT INTO {table} SELECT n, 'x' FROM generate_series(1, 200000) AS n"
            )
            counts = "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = $1"
            async with conn.transaction():  # the counters below are this backend's own
                before = await conn.fetchrow(counts, table)
                await conn.fetch(lookup, keys)
                after = await conn.fetchrow(counts, table)
            await conn.execute(f"DROP TABLE {table}")
    finally:
        await pool.close()
    assert before is not None
    assert after is not None
    assert after["seq_scan"] == before["seq_scan"]
    assert after["idx_scan"] > before["idx_scan"]
