"""Entity records in PostgreSQL: read back by logical key or filtered and paged, and the
set-based writes of the generic-entity writer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from batchline.entities.schema import EntitySchema, FieldSpec, FieldType, Registry
from sql.entity_tables import ident, lk_constraint

# Operators of GET /data filters (``field[OP]=value``); EQ is a plain ``field=value``.
ORDERED_TYPES = frozenset(
    {
        FieldType.STRING,
        FieldType.INTEGER,
        FieldType.DECIMAL,
        FieldType.DOUBLE,
        FieldType.DATE,
        FieldType.DATE_TIME,
        FieldType.ENUM,
        FieldType.ENTITY_REF,
    }
)
TEXT_TYPES = frozenset({FieldType.STRING, FieldType.ENUM, FieldType.ENTITY_REF})
OPERATORS = {
    "EQ": ORDERED_TYPES | {FieldType.BOOL},
    "NOT": ORDERED_TYPES | {FieldType.BOOL},
    "GT": ORDERED_TYPES,
    "GTE": ORDERED_TYPES,
    "LT": ORDERED_TYPES,
    "LTE": ORDERED_TYPES,
    "CONTAINS": TEXT_TYPES,
    "STARTS_WITH": TEXT_TYPES,
}
_COMPARISONS = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}


@dataclass(frozen=True)
class Filter:
    spec: FieldSpec
    operator: str
    values: tuple[str, ...]  # canonical values as text; several values are OR-ed


@dataclass(frozen=True)
class Order:
    spec: FieldSpec
    descending: bool


@dataclass(frozen=True)
class Page:
    rows: list[asyncpg.Record]
    total: int


def _key_join(registry: Registry, entity: EntitySchema) -> str:
    definitions = ", ".join(f"{ident(f.name)} {registry.column_type(f)}" for f in entity.lk_fields)
    match = " AND ".join(f"t.{ident(n)} = i.{ident(n)}" for n in entity.lk)
    return f"JOIN jsonb_to_recordset($1::jsonb) AS i({definitions}) ON {match}"


async def by_keys(
    conn: asyncpg.Connection | asyncpg.Pool,
    registry: Registry,
    entity: EntitySchema,
    keys: Sequence[dict[str, Any]],
) -> list[asyncpg.Record]:
    """The stored rows for ``keys`` (canonical logical-key values), in no particular order."""
    if not keys:
        return []
    statement = f"SELECT t.* FROM {ident(entity.table)} t {_key_join(registry, entity)}"
    rows: list[asyncpg.Record] = await conn.fetch(statement, list(keys))
    return rows


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    registry: Registry,
    entity: EntitySchema,
    filters: Sequence[Filter],
    orders: Sequence[Order],
    start: int,
    limit: int,
) -> Page:
    conditions: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    for item in filters:
        column = f"t.{ident(item.spec.name)}"
        column_type = registry.column_type(item.spec)
        if item.operator == "EQ":
            conditions.append(
                f"{column} = ANY({param(list(item.values))}::text[]::{column_type}[])"
            )
        elif item.operator == "NOT":
            values = param(list(item.values))
            conditions.append(
                f"({column} IS NULL OR {column} <> ALL({values}::text[]::{column_type}[]))"
            )
        elif item.operator == "CONTAINS":
            conditions.append(
                "("
                + " OR ".join(f"strpos({column}::text, {param(v)}) > 0" for v in item.values)
                + ")"
            )
        elif item.operator == "STARTS_WITH":
            conditions.append(
                "("
                + " OR ".join(f"starts_with({column}::text, {param(v)})" for v in item.values)
                + ")"
            )
        else:
            compare = _COMPARISONS[item.operator]
            conditions.append(
                "("
                + " OR ".join(
                    f"{column} {compare} {param(v)}::text::{column_type}" for v in item.values
                )
                + ")"
            )
    where = " AND ".join(conditions) or "true"
    ordering = [f"t.{ident(o.spec.name)} {'DESC' if o.descending else 'ASC'}" for o in orders]
    ordering += [f"t.{ident(name)} ASC" for name in entity.lk]  # stable pages
    statement = (
        f"SELECT t.*, count(*) OVER () AS _total FROM {ident(entity.table)} t"
        f" WHERE {where} ORDER BY {', '.join(ordering)}"
        f" OFFSET {param(start)} LIMIT {param(limit)}"
    )
    rows = await conn.fetch(statement, *params)
    if rows:
        return Page(list(rows), int(rows[0]["_total"]))
    count = await conn.fetchval(
        f"SELECT count(*) FROM {ident(entity.table)} t WHERE {where}",
        *params[:-2],
    )
    return Page([], int(count))


def last_update(rows: Sequence[asyncpg.Record]) -> datetime | None:
    return max((row["_updated_at"] for row in rows), default=None)


# --- writes (the inserter's generic-entity writer) ---------------------------------------


class EntityWrites:
    """The writes of one entity, their SQL built once from validated, quoted identifiers.

    Each takes the records as one JSON document of rows (``jsonb_to_recordset``) and
    returns the rows it touched.
    """

    def __init__(self, registry: Registry, entity: EntitySchema) -> None:
        table = ident(entity.table)
        names = [f.name for f in entity.fields]
        columns = ", ".join(ident(n) for n in names)
        definitions = ", ".join(f"{ident(f.name)} {registry.column_type(f)}" for f in entity.fields)
        key_definitions = ", ".join(
            f"{ident(f.name)} {registry.column_type(f)}" for f in entity.lk_fields
        )
        match = " AND ".join(f"t.{ident(n)} = i.{ident(n)}" for n in entity.lk)
        non_key = [n for n in names if n not in entity.lk]
        self._insert = f"""
            INSERT INTO {table} AS t ({columns})
            SELECT {columns} FROM jsonb_to_recordset($1::jsonb) AS i({definitions})
            ON CONFLICT ON CONSTRAINT {ident(lk_constraint(entity))} DO NOTHING
            RETURNING t.*"""
        self._lock_existing = f"""
            SELECT t.* FROM {table} t
            JOIN jsonb_to_recordset($1::jsonb) AS i({key_definitions}) ON {match}
            FOR UPDATE OF t"""
        assignments = [f"{ident(n)} = i.{ident(n)}" for n in non_key]
        self._update = f"""
            UPDATE {table} AS t SET {", ".join([*assignments, '"_updated_at" = now()'])}
            FROM jsonb_to_recordset($1::jsonb) AS i({definitions})
            WHERE {match}
            RETURNING t.*"""
        patches = [
            f"{ident(n)} = CASE WHEN '{n}' = ANY(i._present)"
            f" THEN i.{ident(n)} ELSE t.{ident(n)} END"
            for n in non_key
        ]
        self._patch = f"""
            UPDATE {table} AS t SET {", ".join([*patches, '"_updated_at" = now()'])}
            FROM jsonb_to_recordset($1::jsonb) AS i({definitions}, _present text[])
            WHERE {match}
            RETURNING t.*"""
        self._delete = f"""
            DELETE FROM {table} AS t
            USING jsonb_to_recordset($1::jsonb) AS i({key_definitions})
            WHERE {match}
            RETURNING t.*"""

    async def insert(self, conn: asyncpg.Connection, rows: Any) -> list[asyncpg.Record]:
        """Rows whose logical key exists are skipped (and not returned)."""
        return await self._fetch(conn, self._insert, rows)

    async def lock_existing(self, conn: asyncpg.Connection, rows: Any) -> list[asyncpg.Record]:
        return await self._fetch(conn, self._lock_existing, rows)

    async def update(self, conn: asyncpg.Connection, rows: Any) -> list[asyncpg.Record]:
        return await self._fetch(conn, self._update, rows)

    async def patch(self, conn: asyncpg.Connection, rows: Any) -> list[asyncpg.Record]:
        """Each row names the fields it sets in ``_present``."""
        return await self._fetch(conn, self._patch, rows)

    async def delete(self, conn: asyncpg.Connection, rows: Any) -> list[asyncpg.Record]:
        return await self._fetch(conn, self._delete, rows)

    @staticmethod
    async def _fetch(conn: asyncpg.Connection, sql: str, rows: Any) -> list[asyncpg.Record]:
        found: list[asyncpg.Record] = await conn.fetch(sql, rows)
        return found


async def existing_keys(
    conn: asyncpg.Connection, registry: Registry, target: EntitySchema, keys: list[str]
) -> set[str]:
    """Which of these logical keys of ``target`` exist, locked ``FOR KEY SHARE`` so they
    cannot vanish before the referencing rows commit."""
    return await _keys_among(conn, registry, target, target.lk_fields[0], keys, lock=True)


async def referring_keys(
    conn: asyncpg.Connection,
    registry: Registry,
    other: EntitySchema,
    spec: FieldSpec,
    keys: list[str],
) -> set[str]:
    """Which of these keys rows of ``other`` point at through their field ``spec``."""
    return await _keys_among(conn, registry, other, spec, keys, lock=False)


async def _keys_among(
    conn: asyncpg.Connection,
    registry: Registry,
    entity: EntitySchema,
    spec: FieldSpec,
    keys: list[str],
    *,
    lock: bool,
) -> set[str]:
    """The values among ``keys`` that field ``spec`` of ``entity``'s table holds (as text);
    ``lock``: a logical key, its rows locked ``FOR KEY SHARE`` (which refuses DISTINCT)."""
    column = ident(spec.name)
    column_type = registry.column_type(spec)
    distinct, locking = ("", " FOR KEY SHARE") if lock else ("DISTINCT ", "")
    rows = await conn.fetch(
        f"SELECT {distinct}{column}::text AS key FROM {ident(entity.table)}"
        f" WHERE {column} = ANY($1::text[]::{column_type}[]){locking}",
        keys,
    )
    return {row["key"] for row in rows}
