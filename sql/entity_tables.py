"""Entity tables: compare what the YAML wants with what PostgreSQL has, then change it.

Additive changes (a new entity, a new optional field, a field becoming optional) are
applied. Changes that would lose data (a field or entity removed, a type or logical key
changed) are refused unless explicitly allowed; changes that cannot succeed on the rows
present (a new required field on a table with rows) are refused with what to do instead.
Everything happens in one transaction: a refusal leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg

from batchline.entities.schema import EntitySchema, FieldSpec, FieldType, Registry
from sql.db import json_text

log = logging.getLogger(__name__)

_SAFE_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_LOCK_KEY = 0x62617463686C66
SYSTEM_COLUMNS = ("_created_at", "_updated_at")


def ident(name: str) -> str:
    """A quoted identifier; only names that passed schema validation get this far."""
    if not _SAFE_IDENTIFIER.match(name):
        raise ValueError(f"unsafe SQL identifier {name!r}")
    return f'"{name}"'


def lk_constraint(entity: EntitySchema) -> str:
    return f"{entity.table}_lk"


def fk_constraint(entity: EntitySchema, spec: FieldSpec) -> str:
    name = f"{entity.table}_{spec.name.lower()}_fk"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(f"{entity.table}.{spec.name}".encode()).hexdigest()[:16]
    return f"{entity.table[:40]}_{digest}_fk"


class SchemaChangeRefused(RuntimeError):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__(
            "entity schema changes refused:\n  - "
            + "\n  - ".join(reasons)
            + "\nNothing was changed."
        )
        self.reasons = reasons


@dataclass
class Step:
    entity: str
    description: str
    statements: list[str] = field(default_factory=list)
    # Loses data: done only when allowed.
    destructive: bool = False
    # Cannot be done on the rows present, allowed or not.
    impossible: str | None = None
    # 0: tables and columns; 1: constraints between tables, once every table exists.
    phase: int = 0


@dataclass(frozen=True)
class _Column:
    data_type: str
    nullable: bool


@dataclass
class _Actual:
    columns: dict[str, dict[str, _Column]] = field(default_factory=lambda: defaultdict(dict))
    # table -> constraint name -> (type 'u'|'f', columns, referenced table)
    constraints: dict[str, dict[str, tuple[str, tuple[str, ...], str | None]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    # yaml_entity: lower-case name -> (table, name as declared)
    known: dict[str, tuple[str, str]] = field(default_factory=dict)


_COLUMNS = """
SELECT table_name, column_name, data_type, is_nullable = 'YES' AS nullable
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY($1::text[])
"""

_CONSTRAINTS = """
SELECT t.relname AS table_name, c.conname, c.contype,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, position)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.position)::text[] AS columns,
       r.relname AS referenced
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
LEFT JOIN pg_class r ON r.oid = c.confrelid
WHERE t.relnamespace = current_schema()::regnamespace
  AND t.relname = ANY($1::text[]) AND c.contype IN ('u', 'f')
"""


async def _actual(conn: asyncpg.Connection, registry: Registry) -> _Actual:
    actual = _Actual()
    actual.known = {
        row["name"]: (row["table_name"], row["declared"])
        for row in await conn.fetch(
            "SELECT name, table_name, definition->>'name' AS declared FROM yaml_entity"
        )
    }
    tables = sorted({e.table for e in registry} | {t for t, _ in actual.known.values()})
    for row in await conn.fetch(_COLUMNS, tables):
        actual.columns[row["table_name"]][row["column_name"]] = _Column(
            row["data_type"], row["nullable"]
        )
    for row in await conn.fetch(_CONSTRAINTS, tables):
        actual.constraints[row["table_name"]][row["conname"]] = (
            row["contype"],
            tuple(row["columns"]),
            row["referenced"],
        )
    return actual


async def plan(conn: asyncpg.Connection, registry: Registry) -> list[Step]:
    """Every change needed for the database to match ``registry``."""
    actual = await _actual(conn, registry)
    steps: list[Step] = []
    for entity in registry:
        if entity.table not in actual.columns:
            steps += _create(registry, entity)
        else:
            steps += await _alter(conn, registry, entity, actual)
    for name, (table, declared) in sorted(actual.known.items()):
        if registry.get(name) is None and table in actual.columns:
            steps.append(
                Step(
                    declared,
                    f"entity {declared} is no longer declared: drop table {table}",
                    [f"DROP TABLE {ident(table)} CASCADE"],
                    destructive=True,
                )
            )
    return steps


def _column_sql(registry: Registry, spec: FieldSpec, *, not_null: bool) -> str:
    null = " NOT NULL" if not_null else ""
    return f"{ident(spec.name)} {registry.column_type(spec)}{null}"


def _lk_sql(entity: EntitySchema) -> str:
    columns = ", ".join(ident(name) for name in entity.lk)
    return f"CONSTRAINT {ident(lk_constraint(entity))} UNIQUE ({columns})"


def _fk_sql(registry: Registry, entity: EntitySchema, spec: FieldSpec) -> str:
    target = registry.ref_target(spec)
    return (
        f"ALTER TABLE {ident(entity.table)} ADD CONSTRAINT {ident(fk_constraint(entity, spec))}"
        f" FOREIGN KEY ({ident(spec.name)})"
        f" REFERENCES {ident(target.table)} ({ident(target.lk[0])})"
    )


def _refs(entity: EntitySchema) -> list[FieldSpec]:
    return [f for f in entity.fields if f.type is FieldType.ENTITY_REF]


def _create(registry: Registry, entity: EntitySchema) -> list[Step]:
    columns = [_column_sql(registry, f, not_null=f.required) for f in entity.fields]
    columns += [f"{ident(c)} timestamptz NOT NULL DEFAULT now()" for c in SYSTEM_COLUMNS]
    create = (
        f"CREATE TABLE {ident(entity.table)} (\n    "
        + ",\n    ".join([*columns, _lk_sql(entity)])
        + "\n)"
    )
    steps = [Step(entity.name, f"create table {entity.table} for entity {entity.name}", [create])]
    steps += [
        Step(
            entity.name,
            f"reference {entity.name}.{spec.name} -> {spec.ref_entity}",
            [_fk_sql(registry, entity, spec)],
            phase=1,
        )
        for spec in _refs(entity)
    ]
    return steps


async def _alter(
    conn: asyncpg.Connection, registry: Registry, entity: EntitySchema, actual: _Actual
) -> list[Step]:
    table = ident(entity.table)
    columns = actual.columns[entity.table]
    steps: list[Step] = []
    has_rows: bool | None = None

    async def table_has_rows() -> bool:
        nonlocal has_rows
        if has_rows is None:
            has_rows = bool(await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"))
        return has_rows

    for spec in entity.fields:
        where = f"{entity.name}.{spec.name}"
        column = columns.get(spec.name)
        wanted_type = registry.column_type(spec)
        if column is None:
            if spec.required and await table_has_rows():
                steps.append(
                    Step(
                        entity.name,
                        f"add required field {where}",
                        impossible=f"field {where} is new and required, but {entity.table} has"
                        " rows without it: add it as optional, fill it, then make it required",
                    )
                )
                continue
            steps.append(
                Step(
                    entity.name,
                    f"add field {where} ({spec.type.value})",
                    [
                        f"ALTER TABLE {table} ADD COLUMN"
                        f" {_column_sql(registry, spec, not_null=spec.required)}"
                    ],
                )
            )
            continue
        if column.data_type != wanted_type:
            steps.append(
                Step(
                    entity.name,
                    f"change the type of {where} from {column.data_type} to {wanted_type}"
                    " (values that do not convert make the migration fail)",
                    [
                        f"ALTER TABLE {table} ALTER COLUMN {ident(spec.name)} TYPE {wanted_type}"
                        f" USING {ident(spec.name)}::text::{wanted_type}"
                    ],
                    destructive=True,
                )
            )
        if spec.required and column.nullable:
            nulls = await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {ident(spec.name)} IS NULL)"
            )
            steps.append(
                Step(
                    entity.name,
                    f"make {where} required",
                    [f"ALTER TABLE {table} ALTER COLUMN {ident(spec.name)} SET NOT NULL"],
                    impossible=f"field {where} became required, but some rows have no value:"
                    " fill them first"
                    if nulls
                    else None,
                )
            )
        elif not spec.required and not column.nullable:
            steps.append(
                Step(
                    entity.name,
                    f"make {where} optional",
                    [f"ALTER TABLE {table} ALTER COLUMN {ident(spec.name)} DROP NOT NULL"],
                )
            )
    declared = {f.name for f in entity.fields} | set(SYSTEM_COLUMNS)
    steps += [
        Step(
            entity.name,
            f"field {entity.name}.{name} is no longer declared: drop its column and data",
            [f"ALTER TABLE {table} DROP COLUMN {ident(name)} CASCADE"],
            destructive=True,
        )
        for name in sorted(set(columns) - declared)
    ]
    steps += _constraint_steps(registry, entity, actual.constraints[entity.table])
    return steps


def _constraint_steps(
    registry: Registry,
    entity: EntitySchema,
    constraints: dict[str, tuple[str, tuple[str, ...], str | None]],
) -> list[Step]:
    table = ident(entity.table)
    steps: list[Step] = []
    lk_name = lk_constraint(entity)
    present = constraints.get(lk_name)
    if present is None or present[1] != entity.lk:
        statements = [f"ALTER TABLE {table} DROP CONSTRAINT {ident(lk_name)} CASCADE"]
        statements = statements if present is not None else []
        steps.append(
            Step(
                entity.name,
                f"logical key of {entity.name} becomes ({', '.join(entity.lk)})",
                [*statements, f"ALTER TABLE {table} ADD {_lk_sql(entity)}"],
                destructive=present is not None,
                phase=1,
            )
        )
    wanted = {fk_constraint(entity, spec): spec for spec in _refs(entity)}
    for name, (kind, columns, referenced) in constraints.items():
        if kind != "f":
            continue
        spec = wanted.get(name)
        target = registry.ref_target(spec).table if spec is not None else None
        if spec is None or columns != (spec.name,) or referenced != target:
            steps.append(
                Step(
                    entity.name,
                    f"drop reference {name} of {entity.name}",
                    [f"ALTER TABLE {table} DROP CONSTRAINT {ident(name)}"],
                    destructive=True,
                )
            )
            wanted_again = spec is not None
            if wanted_again:
                assert spec is not None
                steps.append(_reference_step(registry, entity, spec))
    for name, spec in wanted.items():
        if name not in constraints:
            steps.append(_reference_step(registry, entity, spec))
    return steps


def _reference_step(registry: Registry, entity: EntitySchema, spec: FieldSpec) -> Step:
    return Step(
        entity.name,
        f"reference {entity.name}.{spec.name} -> {spec.ref_entity}",
        [_fk_sql(registry, entity, spec)],
        phase=1,
    )


def refusals(steps: list[Step], allow_destructive: bool) -> list[str]:
    reasons = [s.impossible for s in steps if s.impossible]
    if not allow_destructive:
        reasons += [
            f"{s.description} — would lose data; run `batchline migrate --allow-destructive`"
            " to allow it"
            for s in steps
            if s.destructive
        ]
    return reasons


async def apply(
    conn: asyncpg.Connection, registry: Registry, *, allow_destructive: bool = False
) -> list[str]:
    """Bring the entity tables in line with ``registry``; returns what was done."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        async with conn.transaction():
            steps = await plan(conn, registry)
            refused = refusals(steps, allow_destructive)
            if refused:
                raise SchemaChangeRefused(refused)
            for step in sorted(steps, key=lambda s: s.phase):
                for statement in step.statements:
                    await conn.execute(statement)
                log.info("entities: %s", step.description)
            await _record(conn, registry)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return [s.description for s in steps]


async def _record(conn: asyncpg.Connection, registry: Registry) -> None:
    entities = list(registry)
    await conn.execute(
        "DELETE FROM yaml_entity WHERE NOT name = ANY($1::text[])", [e.key for e in entities]
    )
    await conn.execute(
        """INSERT INTO yaml_entity (name, table_name, definition, source)
           SELECT n, t, d::jsonb, s FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                AS input(n, t, d, s)
           ON CONFLICT (name) DO UPDATE
           SET table_name = EXCLUDED.table_name, definition = EXCLUDED.definition,
               source = EXCLUDED.source, applied_at = now()
           WHERE yaml_entity.definition IS DISTINCT FROM EXCLUDED.definition""",
        [e.key for e in entities],
        [e.table for e in entities],
        [json_text(e.describe()) for e in entities],
        [e.source for e in entities],
    )


async def pending(conn: asyncpg.Connection, registry: Registry) -> list[str]:
    """What stands between the tables and the YAML: changes the declared entities still
    need, and tables of entities the YAML no longer declares (which no worker could write:
    their chunks would be dead-lettered)."""
    return [s.description for s in await plan(conn, registry)]
