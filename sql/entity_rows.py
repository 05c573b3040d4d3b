"""Reading entity records back from PostgreSQL: by logical key, or filtered and paged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from batchline.entities.schema import EntitySchema, FieldSpec, FieldType, Registry
from sql.entity_tables import ident

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
