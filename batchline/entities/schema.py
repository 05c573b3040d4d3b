"""Entity schemas from a folder of YAML files, validated before anything else starts.

The format is the Gemini framework's (``type: ENTITY`` documents, several per file). Every
name that reaches SQL is checked here against an allow-list pattern; nothing later ever
interpolates raw YAML text. A bad schema raises ``SchemaError`` naming file, entity and
field.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger(__name__)


class FieldType(StrEnum):
    STRING = "STRING"
    INTEGER = "INTEGER"
    DECIMAL = "DECIMAL"
    DOUBLE = "DOUBLE"
    BOOL = "BOOL"
    DATE = "DATE"
    DATE_TIME = "DATE_TIME"
    ENUM = "ENUM"
    OBJECT = "OBJECT"
    ARRAY = "ARRAY"
    ENTITY_REF = "ENTITY_REF"


# PostgreSQL column type per field type; ENTITY_REF takes its target's logical-key type.
COLUMN_TYPES: Mapping[FieldType, str] = {
    FieldType.STRING: "text",
    FieldType.INTEGER: "bigint",
    FieldType.DECIMAL: "numeric",
    FieldType.DOUBLE: "double precision",
    FieldType.BOOL: "boolean",
    FieldType.DATE: "date",
    FieldType.DATE_TIME: "timestamp with time zone",
    FieldType.ENUM: "text",
    FieldType.OBJECT: "jsonb",
    FieldType.ARRAY: "jsonb",
}

# Types a logical key may use: each has a plain text form for URLs.
LK_TYPES = frozenset(
    {FieldType.STRING, FieldType.INTEGER, FieldType.DATE, FieldType.ENUM, FieldType.ENTITY_REF}
)
ARRAY_ITEM_TYPES = frozenset(set(FieldType) - {FieldType.ARRAY, FieldType.ENTITY_REF})

# Field names become quoted column names; entity names become ``entity_<name>`` tables whose
# constraint names must still fit PostgreSQL's 63 characters.
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
ENTITY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
# Entities the pipeline has built-in writers for; ingest envelopes name entities by these.
RESERVED_ENTITY_NAMES = frozenset({"activity", "instance"})
# Query parameters of GET /data/{entity}; a field with one of these names could not be filtered.
RESERVED_FIELD_NAMES = frozenset({"start", "limit", "orderby"})
# Characters that join composite logical keys in URLs: reserved in a path segment, so a value
# containing one is written percent-encoded and stays apart from the separator.
LK_SEPARATOR = re.compile(r"^[,;:$!*+@]{1,3}$")
DEFAULT_LK_SEPARATOR = ","


class SchemaError(RuntimeError):
    """A schema that cannot be served; the message names file, entity and field."""

    def __init__(
        self, source: Path | str, message: str, entity: str | None = None, field: str | None = None
    ) -> None:
        where = [str(source)]
        if entity:
            where.append(f"entity {entity}")
        if field:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {message}")
        self.source = str(source)
        self.entity = entity
        self.field = field


# --- The YAML as written --------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RawEntityRef(_Strict):
    entity: str


class RawObject(_Strict):
    fields: list[RawField]


class RawArray(_Strict):
    type: str
    enums: list[str] | None = None
    object: RawObject | None = None


class RawField(_Strict):
    name: str
    type: str
    required: bool = False
    displayName: str | None = None
    description: str | None = None
    enums: list[str] | None = None
    object: RawObject | None = None
    array: RawArray | None = None
    entityRef: RawEntityRef | None = None


class RawEntity(_Strict):
    name: str
    lk: list[str]
    fields: list[RawField]
    lkSeparator: str | None = None
    displayName: str | None = None
    description: str | None = None


class RawDocument(_Strict):
    type: Literal["ENTITY"]
    entity: RawEntity


# --- The validated model --------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    required: bool = False
    enums: tuple[str, ...] = ()
    fields: tuple[FieldSpec, ...] = ()  # OBJECT members
    items: FieldSpec | None = None  # ARRAY element
    ref_entity: str | None = None  # ENTITY_REF target, as declared
    display_name: str | None = None

    def describe(self) -> dict[str, Any]:
        """The field as GET /entity shows it, in the YAML's own terms."""
        view: dict[str, Any] = {"name": self.name, "type": self.type.value}
        view["required"] = self.required
        if self.display_name:
            view["displayName"] = self.display_name
        if self.enums:
            view["enums"] = list(self.enums)
        if self.type is FieldType.OBJECT:
            view["object"] = {"fields": [f.describe() for f in self.fields]}
        if self.items is not None:
            array: dict[str, Any] = {"type": self.items.type.value}
            if self.items.enums:
                array["enums"] = list(self.items.enums)
            if self.items.fields:
                array["object"] = {"fields": [f.describe() for f in self.items.fields]}
            view["array"] = array
        if self.ref_entity:
            view["entityRef"] = {"entity": self.ref_entity}
        return view


@dataclass(frozen=True)
class EntitySchema:
    name: str
    lk: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    lk_separator: str = DEFAULT_LK_SEPARATOR
    display_name: str | None = None
    source: str = ""
    _by_name: dict[str, FieldSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.name: f for f in self.fields})

    @property
    def key(self) -> str:
        """Entity names are case-insensitive: this is the one spelling used internally."""
        return self.name.lower()

    @property
    def table(self) -> str:
        return f"entity_{self.key}"

    def field(self, name: str) -> FieldSpec | None:
        return self._by_name.get(name)

    @property
    def lk_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(self._by_name[name] for name in self.lk)

    def describe(self) -> dict[str, Any]:
        view: dict[str, Any] = {"name": self.name}
        if self.display_name:
            view["displayName"] = self.display_name
        view["lk"] = list(self.lk)
        if len(self.lk) > 1:
            view["lkSeparator"] = self.lk_separator
        view["fields"] = [f.describe() for f in self.fields]
        return view


class Registry:
    """Every entity of the schema folder, looked up case-insensitively."""

    def __init__(self, entities: Mapping[str, EntitySchema]) -> None:
        self._entities = dict(entities)

    def __iter__(self) -> Iterator[EntitySchema]:
        return iter(self._entities.values())

    def __len__(self) -> int:
        return len(self._entities)

    def get(self, name: str) -> EntitySchema | None:
        return self._entities.get(name.lower())

    def require(self, name: str) -> EntitySchema:
        entity = self.get(name)
        if entity is None:
            raise KeyError(name)
        return entity

    def ref_target(self, spec: FieldSpec) -> EntitySchema:
        assert spec.ref_entity is not None
        return self.require(spec.ref_entity)

    def ref_key_field(self, spec: FieldSpec) -> FieldSpec:
        """The target's (single) logical-key field: what an ENTITY_REF value is."""
        return self.ref_target(spec).lk_fields[0]

    def column_type(self, spec: FieldSpec) -> str:
        if spec.type is FieldType.ENTITY_REF:
            return self.column_type(self.ref_key_field(spec))
        return COLUMN_TYPES[spec.type]

    def referrers(self, entity: EntitySchema) -> list[tuple[EntitySchema, FieldSpec]]:
        """Fields of any entity that reference ``entity``."""
        return [
            (other, spec)
            for other in self
            for spec in other.fields
            if spec.type is FieldType.ENTITY_REF and spec.ref_entity
            if spec.ref_entity.lower() == entity.key
        ]


# --- Loading ---------------------------------------------------------------------------------


def load_registry(folder: Path) -> Registry:
    """Read every ``*.yaml``/``*.yml`` in ``folder``; raise SchemaError on the first problem."""
    if not folder.is_dir():
        log.warning("entity schema folder %s does not exist: no generic entities", folder)
        return Registry({})
    entities: dict[str, EntitySchema] = {}
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    for path in files:
        for document in _documents(path):
            entity = _entity(path, document)
            earlier = entities.get(entity.key)
            if earlier is not None:
                raise SchemaError(
                    path, f"duplicate entity: already declared in {earlier.source}", entity.name
                )
            entities[entity.key] = entity
    registry = Registry(entities)
    for entity in registry:
        _check_references(registry, entity)
    return registry


def _documents(path: Path) -> Iterator[Any]:
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise SchemaError(path, f"not valid YAML: {exc}") from exc
    yield from (d for d in documents if d is not None)


def _entity(path: Path, document: Any) -> EntitySchema:
    name = _entity_name_of(document)
    try:
        raw = RawDocument.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise SchemaError(
            path, _pydantic_message(first), name, _field_of(document, first["loc"])
        ) from exc
    entity = raw.entity
    if not ENTITY_NAME.match(entity.name):
        raise SchemaError(
            path,
            "unsafe entity name: use a letter then letters, digits or _ (at most 48)",
            entity.name,
        )
    if entity.name.lower() in RESERVED_ENTITY_NAMES:
        raise SchemaError(path, "reserved name (a built-in entity of batchline)", entity.name)
    fields = tuple(_field(path, entity.name, f, top_level=True) for f in entity.fields)
    seen: set[str] = set()
    for spec in fields:
        if spec.name.lower() in seen:
            raise SchemaError(path, "duplicate field", entity.name, spec.name)
        seen.add(spec.name.lower())
    if not entity.lk:
        raise SchemaError(path, "lk must name at least one field", entity.name)
    by_name = {f.name: f for f in fields}
    for key in entity.lk:
        key_field = by_name.get(key)
        if key_field is None:
            raise SchemaError(path, "lk names a field that does not exist", entity.name, key)
        if key_field.type not in LK_TYPES:
            allowed = ", ".join(sorted(t.value for t in LK_TYPES))
            raise SchemaError(
                path, f"a logical key field must be one of {allowed}", entity.name, key
            )
    if len(set(entity.lk)) != len(entity.lk):
        raise SchemaError(path, "lk names a field twice", entity.name)
    separator = entity.lkSeparator or DEFAULT_LK_SEPARATOR
    if not LK_SEPARATOR.match(separator):
        raise SchemaError(
            path, "lkSeparator must be 1-3 of the characters , ; : $ ! * + @", entity.name
        )
    # Logical-key fields are required whatever the YAML says: a record is found by them.
    fields = tuple(replace(f, required=True) if f.name in entity.lk else f for f in fields)
    return EntitySchema(
        name=entity.name,
        lk=tuple(entity.lk),
        fields=fields,
        lk_separator=separator,
        display_name=entity.displayName,
        source=str(path),
    )


def _field(path: Path, entity: str, raw: RawField, *, top_level: bool) -> FieldSpec:
    if not FIELD_NAME.match(raw.name):
        raise SchemaError(
            path,
            "unsafe field name: use a letter then letters, digits or _ (at most 63)",
            entity,
            raw.name,
        )
    if top_level and raw.name.lower() in RESERVED_FIELD_NAMES:
        raise SchemaError(path, "reserved name (a query parameter of GET /data)", entity, raw.name)
    field_type = _type(path, entity, raw.name, raw.type)
    _only_for(path, entity, raw.name, field_type, raw.enums, FieldType.ENUM, "enums")
    _only_for(path, entity, raw.name, field_type, raw.object, FieldType.OBJECT, "object")
    _only_for(path, entity, raw.name, field_type, raw.array, FieldType.ARRAY, "array")
    _only_for(path, entity, raw.name, field_type, raw.entityRef, FieldType.ENTITY_REF, "entityRef")
    spec = FieldSpec(raw.name, field_type, raw.required, display_name=raw.displayName)
    if field_type is FieldType.ENUM:
        return replace(spec, enums=_enums(path, entity, raw.name, raw.enums))
    if field_type is FieldType.OBJECT:
        assert raw.object is not None
        return replace(spec, fields=_members(path, entity, raw.name, raw.object))
    if field_type is FieldType.ARRAY:
        assert raw.array is not None
        return replace(spec, items=_items(path, entity, raw.name, raw.array))
    if field_type is FieldType.ENTITY_REF:
        if not top_level:
            raise SchemaError(
                path, "ENTITY_REF is supported as a top-level field only", entity, raw.name
            )
        assert raw.entityRef is not None
        return replace(spec, ref_entity=raw.entityRef.entity)
    return spec


def _type(path: Path, entity: str, name: str, value: str) -> FieldType:
    try:
        return FieldType(value)
    except ValueError:
        known = ", ".join(t.value for t in FieldType)
        raise SchemaError(path, f"unknown type {value!r} (known: {known})", entity, name) from None


def _only_for(
    path: Path,
    entity: str,
    name: str,
    field_type: FieldType,
    value: Any,
    owner: FieldType,
    key: str,
) -> None:
    if field_type is owner and value is None:
        raise SchemaError(path, f"type {owner.value} needs '{key}'", entity, name)
    if field_type is not owner and value is not None:
        raise SchemaError(path, f"'{key}' is only for type {owner.value}", entity, name)


def _enums(path: Path, entity: str, name: str, enums: list[str] | None) -> tuple[str, ...]:
    if not enums:
        raise SchemaError(path, "enums must list at least one value", entity, name)
    if len(set(enums)) != len(enums):
        raise SchemaError(path, "enums lists a value twice", entity, name)
    return tuple(enums)


def _members(path: Path, entity: str, name: str, raw: RawObject) -> tuple[FieldSpec, ...]:
    if not raw.fields:
        raise SchemaError(path, "object.fields must list at least one field", entity, name)
    members = tuple(_field(path, entity, f, top_level=False) for f in raw.fields)
    if len({m.name for m in members}) != len(members):
        raise SchemaError(path, "object.fields lists a field twice", entity, name)
    return members


def _items(path: Path, entity: str, name: str, raw: RawArray) -> FieldSpec:
    item_type = _type(path, entity, f"{name}[]", raw.type)
    if item_type not in ARRAY_ITEM_TYPES:
        raise SchemaError(
            path, f"arrays of {item_type.value} are not supported", entity, f"{name}[]"
        )
    _only_for(path, entity, f"{name}[]", item_type, raw.enums, FieldType.ENUM, "enums")
    _only_for(path, entity, f"{name}[]", item_type, raw.object, FieldType.OBJECT, "object")
    if item_type is FieldType.ENUM:
        return FieldSpec("[]", item_type, enums=_enums(path, entity, name, raw.enums))
    if item_type is FieldType.OBJECT:
        assert raw.object is not None
        return FieldSpec("[]", item_type, fields=_members(path, entity, name, raw.object))
    return FieldSpec("[]", item_type)


def _check_references(registry: Registry, entity: EntitySchema) -> None:
    for spec in entity.fields:
        if spec.type is not FieldType.ENTITY_REF:
            continue
        assert spec.ref_entity is not None
        target = registry.get(spec.ref_entity)
        if target is None:
            raise SchemaError(
                entity.source,
                f"entityRef names entity {spec.ref_entity!r}, which is not declared",
                entity.name,
                spec.name,
            )
        if len(target.lk) != 1:
            raise SchemaError(
                entity.source,
                f"entityRef target {target.name} must have a single-field lk",
                entity.name,
                spec.name,
            )
        if target.lk_fields[0].type is FieldType.ENTITY_REF:
            raise SchemaError(
                entity.source,
                f"entityRef target {target.name} has an ENTITY_REF as its lk",
                entity.name,
                spec.name,
            )


def _entity_name_of(document: Any) -> str | None:
    if isinstance(document, dict):
        entity = document.get("entity")
        if isinstance(entity, dict) and isinstance(entity.get("name"), str):
            return str(entity["name"])
    return None


def _field_of(document: Any, loc: tuple[int | str, ...]) -> str | None:
    """The name of the field a pydantic error location points into, when there is one."""
    node = document
    name: str | None = None
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(node.get("name"), str) and "type" in node:
            name = node["name"]
    return name


def _pydantic_message(error: Any) -> str:
    key = str(error["loc"][-1]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    if error["type"] == "missing":
        return f"missing key {key!r}"
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
