"""Field values: JSON in, one canonical form for storage, JSON out.

One converter per type. The canonical form is JSON-compatible and is what PostgreSQL's
``jsonb_to_recordset`` casts into the typed columns (DECIMAL as a string so it stays exact,
DATE as ``YYYY-MM-DD``, DATE_TIME as UTC with ``Z``). A value that is not of its field's
type raises ``ConversionError`` with the Gemini framework's message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote

import orjson

from batchline.entities.schema import EntitySchema, FieldSpec, FieldType, Registry

_BIGINT = 2**63
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def shown(value: Any) -> str:
    """A value as the conversion message shows it: strings bare, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


class ConversionError(ValueError):
    def __init__(self, path: str, field_type: FieldType, value: Any) -> None:
        self.path = path
        self.field_type = field_type
        self.value = value
        super().__init__(
            f"Unable to convert field {path} - {field_type.value} - for value {shown(value)}"
        )


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One reason a record was refused: ``kind`` is ``conversion`` or ``validation``."""

    field: str
    kind: str
    reason: str

    def view(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


@dataclass
class Converted:
    """A record in canonical form, or the problems that stop it."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[FieldProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def utc_text(value: datetime) -> str:
    utc = value.astimezone(UTC)
    if utc.microsecond == 0:
        spec = "seconds"
    elif utc.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


class Values:
    """Conversions for the entities of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # --- records ------------------------------------------------------------------------------

    def record(self, entity: EntitySchema, raw: Any, *, partial: bool = False) -> Converted:
        """Convert a whole record. ``partial``: only the fields present (PATCH)."""
        result = Converted()
        if not isinstance(raw, dict):
            result.problems.append(
                FieldProblem("", "validation", "the record must be a JSON object")
            )
            return result
        self._members(entity.fields, raw, "", result, partial=partial)
        return result

    def lk_values(self, entity: EntitySchema, raw: Any) -> Converted:
        """Only the logical-key fields of ``raw`` (DELETE)."""
        result = Converted()
        if not isinstance(raw, dict):
            result.problems.append(
                FieldProblem("", "validation", "the record must be a JSON object")
            )
            return result
        self._members(entity.lk_fields, raw, "", result, partial=False)
        return result

    def _members(
        self,
        specs: tuple[FieldSpec, ...],
        raw: Mapping[str, Any],
        prefix: str,
        result: Converted,
        *,
        partial: bool,
        into: dict[str, Any] | None = None,
    ) -> None:
        target = result.values if into is None else into
        names = {s.name for s in specs}
        for key in raw:
            if key not in names:
                result.problems.append(
                    FieldProblem(f"{prefix}{key}", "validation", "unknown field")
                )
        for spec in specs:
            path = f"{prefix}{spec.name}"
            if spec.name not in raw:
                if partial:
                    continue
                if spec.required:
                    result.problems.append(FieldProblem(path, "validation", "required"))
                target[spec.name] = None
                continue
            value = raw[spec.name]
            if value is None:
                if spec.required:
                    result.problems.append(FieldProblem(path, "validation", "required"))
                target[spec.name] = None
                continue
            if spec.type is FieldType.OBJECT:
                if not isinstance(value, dict):
                    result.problems.append(_conversion(path, spec.type, value))
                    continue
                nested: dict[str, Any] = {}
                self._members(spec.fields, value, f"{path}.", result, partial=False, into=nested)
                target[spec.name] = nested
                continue
            if spec.type is FieldType.ARRAY:
                target[spec.name] = self._array(spec, value, path, result)
                continue
            try:
                target[spec.name] = self.from_json(spec, value, path)
            except ConversionError as exc:
                result.problems.append(FieldProblem(path, "conversion", str(exc)))

    def _array(self, spec: FieldSpec, value: Any, path: str, result: Converted) -> list[Any]:
        assert spec.items is not None
        if not isinstance(value, list):
            result.problems.append(_conversion(path, spec.type, value))
            return []
        items: list[Any] = []
        for position, element in enumerate(value):
            item_path = f"{path}[{position}]"
            if element is None:
                result.problems.append(_conversion(item_path, spec.items.type, element))
            elif spec.items.type is FieldType.OBJECT:
                if not isinstance(element, dict):
                    result.problems.append(_conversion(item_path, spec.items.type, element))
                    continue
                nested: dict[str, Any] = {}
                self._members(
                    spec.items.fields, element, f"{item_path}.", result, partial=False, into=nested
                )
                items.append(nested)
            else:
                try:
                    items.append(self.from_json(spec.items, element, item_path))
                except ConversionError as exc:
                    result.problems.append(FieldProblem(item_path, "conversion", str(exc)))
        return items

    # --- scalars ------------------------------------------------------------------------------

    def from_json(self, spec: FieldSpec, value: Any, path: str | None = None) -> Any:
        """A scalar JSON value in canonical form; raises ConversionError."""
        where = path or spec.name
        if spec.type is FieldType.ENTITY_REF:
            key_field = self.registry.ref_key_field(spec)
            try:
                return self.from_json(key_field, value, where)
            except ConversionError:
                raise ConversionError(where, spec.type, value) from None
        convert = _FROM_JSON.get(spec.type)
        if convert is None:
            raise ConversionError(where, spec.type, value)
        converted = convert(spec, value)
        if converted is _INVALID:
            raise ConversionError(where, spec.type, value)
        return converted

    def from_text(self, spec: FieldSpec, text: str, path: str | None = None) -> Any:
        """A value written as text (URL path, query string) in canonical form."""
        where = path or spec.name
        if spec.type is FieldType.ENTITY_REF:
            try:
                return self.from_text(self.registry.ref_key_field(spec), text, where)
            except ConversionError:
                raise ConversionError(where, spec.type, text) from None
        if spec.type is FieldType.INTEGER:
            if not _INTEGER_TEXT.match(text):
                raise ConversionError(where, spec.type, text)
            return self.from_json(spec, int(text), where)
        if spec.type is FieldType.DOUBLE:
            try:
                number = float(text)
            except ValueError:
                raise ConversionError(where, spec.type, text) from None
            return self.from_json(spec, number, where)
        if spec.type is FieldType.BOOL:
            if text not in ("true", "false"):
                raise ConversionError(where, spec.type, text)
            return text == "true"
        if spec.type in (FieldType.OBJECT, FieldType.ARRAY):
            raise ConversionError(where, spec.type, text)
        return self.from_json(spec, text, where)

    # --- output -------------------------------------------------------------------------------

    def render(self, entity: EntitySchema, row: Mapping[str, Any]) -> dict[str, Any]:
        """A stored row as the API answers it: every field, in schema order."""
        return {spec.name: self.render_value(spec, row[spec.name]) for spec in entity.fields}

    def render_value(self, spec: FieldSpec, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime):
            return utc_text(value)
        if isinstance(value, date):
            return value.isoformat()
        return value

    # --- logical keys -------------------------------------------------------------------------

    def lk_of(self, entity: EntitySchema, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(values[name] for name in entity.lk)

    def lk_text(self, entity: EntitySchema, key: tuple[Any, ...]) -> str:
        """The logical key as messages show it: values joined by the separator."""
        return entity.lk_separator.join(sql_text(v) for v in key)

    def lk_id(self, entity: EntitySchema, key: tuple[Any, ...]) -> str:
        """The logical key as a URL path segment: each value percent-encoded, then joined."""
        return entity.lk_separator.join(quote(sql_text(v), safe="") for v in key)

    def parse_lk(self, entity: EntitySchema, segment: str) -> dict[str, Any]:
        """The inverse of ``lk_id`` for a raw (still percent-encoded) URL path segment."""
        parts = segment.split(entity.lk_separator)
        if len(parts) != len(entity.lk):
            raise LogicalKeyMismatch(entity, unquote(segment))
        return {
            spec.name: self.from_text(spec, unquote(part))
            for spec, part in zip(entity.lk_fields, parts, strict=True)
        }


class LogicalKeyMismatch(ValueError):
    def __init__(self, entity: EntitySchema, text: str) -> None:
        super().__init__(
            f"Logical key {text} for Entity {entity.name} must have {len(entity.lk)} values"
            f" ({', '.join(entity.lk)}) joined by {entity.lk_separator!r}"
        )


def sql_text(value: Any) -> str:
    """A canonical scalar as text, to travel in a ``text[]`` parameter and be cast in SQL."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --- one converter per scalar type ------------------------------------------------------------

_INVALID = object()


def _string(_spec: FieldSpec, value: Any) -> Any:
    return value if isinstance(value, str) else _INVALID


def _integer(_spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        return _INVALID
    return value if -_BIGINT <= value < _BIGINT else _INVALID


def _decimal(_spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else _INVALID
    if isinstance(value, str) and _DECIMAL_TEXT.match(value):
        return str(Decimal(value))
    return _INVALID


def _double(_spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _INVALID
    number = float(value)
    return number if math.isfinite(number) else _INVALID


def _bool(_spec: FieldSpec, value: Any) -> Any:
    return value if isinstance(value, bool) else _INVALID


def _date(_spec: FieldSpec, value: Any) -> Any:
    if not isinstance(value, str) or not _DATE_TEXT.match(value):
        return _INVALID
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return _INVALID


def _date_time(_spec: FieldSpec, value: Any) -> Any:
    if not isinstance(value, str) or not _DATE_TIME_TEXT.match(value):
        return _INVALID
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return _INVALID
    # A time without a zone names no instant; storing it as UTC would be a guess.
    return utc_text(parsed) if parsed.tzinfo is not None else _INVALID


def _enum(spec: FieldSpec, value: Any) -> Any:
    return value if isinstance(value, str) and value in spec.enums else _INVALID


_FROM_JSON: Mapping[FieldType, Callable[[FieldSpec, Any], Any]] = {
    FieldType.STRING: _string,
    FieldType.INTEGER: _integer,
    FieldType.DECIMAL: _decimal,
    FieldType.DOUBLE: _double,
    FieldType.BOOL: _bool,
    FieldType.DATE: _date,
    FieldType.DATE_TIME: _date_time,
    FieldType.ENUM: _enum,
}


def _conversion(path: str, field_type: FieldType, value: Any) -> FieldProblem:
    return FieldProblem(path, "conversion", str(ConversionError(path, field_type, value)))
