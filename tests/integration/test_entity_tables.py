"""Entity tables on a live database: additive changes apply, data loss is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from batchline.cli.runtime import apply_migrations, check_entity_tables
from batchline.settings import Settings
from sql.entity_tables import SchemaChangeRefused
from tests.integration.conftest import EXAMPLE_ENTITIES


def _live(name: str, fields: str) -> str:
    return f"""
type: ENTITY
entity:
  name: {name}
  lk: [code]
  fields:
    - name: code
      type: STRING
{fields}"""


LABEL = "    - name: label\n      type: STRING\n"
RANK = "    - name: rank\n      type: INTEGER\n"


async def _columns(pg: asyncpg.Connection, table: str) -> dict[str, tuple[str, str]]:
    rows = await pg.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_name = $1",
        table,
    )
    return {r["column_name"]: (r["data_type"], r["is_nullable"]) for r in rows}


async def test_adding_a_field_to_a_live_entity_keeps_rows_and_data_loss_needs_the_flag(
    settings: Settings, pg: asyncpg.Connection, tmp_path: Path, tag: str
) -> None:
    folder = tmp_path / "entities"
    shutil.copytree(EXAMPLE_ENTITIES, folder)
    live = folder / "live.yaml"
    name = f"LIVE_{tag}"
    table = f"entity_live_{tag}"
    configured = settings.model_copy(update={"entities_dir": folder})

    live.write_text(_live(name, LABEL))
    assert await apply_migrations(configured) == [f"create table {table} for entity {name}"]
    await pg.execute(f"INSERT INTO {table} (code, label) VALUES ('a', 'kept')")

    live.write_text(_live(name, LABEL + RANK))
    with pytest.raises(RuntimeError, match="run `batchline migrate`"):
        await check_entity_tables(configured)
    assert await apply_migrations(configured) == [f"add field {name}.rank (INTEGER)"]
    assert (await _columns(pg, table))["rank"] == ("bigint", "YES")
    assert await pg.fetchval(f"SELECT label FROM {table} WHERE code = 'a'") == "kept"
    await check_entity_tables(configured)

    live.write_text(
        _live(name, LABEL + RANK + "    - name: owner\n      type: STRING\n      required: true\n")
    )
    with pytest.raises(SchemaChangeRefused, match=f"field {name}.owner is new and required"):
        await apply_migrations(configured)

    live.write_text(_live(name, RANK.replace("INTEGER", "STRING")))
    with pytest.raises(SchemaChangeRefused) as refused:
        await apply_migrations(configured)
    assert [r.split(" — ")[0] for r in refused.value.reasons] == [
        f"change the type of {name}.rank from bigint to text"
        " (values that do not convert make the migration fail)",
        f"field {name}.label is no longer declared: drop its column and data",
    ]
    assert "--allow-destructive" in str(refused.value)
    assert set(await _columns(pg, table)) == {"code", "label", "rank", "_created_at", "_updated_at"}

    await apply_migrations(configured, allow_destructive=True)
    assert (await _columns(pg, table))["rank"] == ("text", "YES")
    assert "label" not in await _columns(pg, table)

    # Values the new type cannot take: PostgreSQL refuses, and the user gets why, no trace.
    await pg.execute(f"INSERT INTO {table} (code, rank) VALUES ('b', 'abc')")
    live.write_text(_live(name, RANK))
    with pytest.raises(RuntimeError, match=r'nothing was changed: invalid input .* "abc"'):
        await apply_migrations(configured, allow_destructive=True)
    assert (await _columns(pg, table))["rank"] == ("text", "YES")
    await pg.execute(f"DELETE FROM {table} WHERE code = 'b'")

    live.unlink()
    # A worker without the entity could not write its chunks: API and worker refuse to start.
    with pytest.raises(RuntimeError, match=f"entity {name} is no longer declared"):
        await check_entity_tables(configured)
    with pytest.raises(SchemaChangeRefused, match=f"entity {name} is no longer declared"):
        await apply_migrations(configured)
    await apply_migrations(configured, allow_destructive=True)
    assert await pg.fetchval("SELECT to_regclass($1)", table) is None
    assert await pg.fetchval("SELECT count(*) FROM yaml_entity WHERE name = $1", name.lower()) == 0
