"""Field values: JSON in, one canonical form for storage, JSON out.

One converter per type. The canonical form is JSON-compatible and is what PostgreSQL's
``jsonb_to_recordset`` casts into the typed columns (DECIMAL as a string so it stays exact,
DATE as ``YYYY-MM-DD``, DATE_TIME as UTC with ``Z``). A value that is not of its field's
type raises ``ConversionError`` with the Gemini framework's message: so does a value past
what Python or PostgreSQL can hold, and text with a NUL character or a lone surrogate,
which PostgreSQL stores in neither ``text`` nor ``jsonb``. Nothing here raises anything
else for any JSON input.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote

import orjson

from batchline.entities.schema import EntitySchema, FieldSpec, FieldType, Registry
from batchline.text import unstorable_text, visible

_BIGINT = 2**63
# ASCII digits only: \d would let other scripts' digits through to int() and Decimal().
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,19}")
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}")
# PostgreSQL's numeric: at most this many digits before and after the decimal point.
_NUMERIC_INTEGER_DIGITS = 131_072
_NUMERIC_FRACTION_DIGITS = 16_383
# A logical-key value is a unique-index entry and a URL path segment.
MAX_KEY_CHARACTERS = 1000


def shown(value: Any) -> str:
    """A value as the conversion message shows it: strings bare, anything else as JSON."""
    if isinstance(value, str):
        return visible(value)
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        pass
    try:
        # orjson writes no integer beyond 64 bits; the standard library writes its digits.
        return json.dumps(value, ensure_ascii=False)
    except ValueError:  # past Python's limit on digits in an integer's text
        return "a value too large to show"


class ConversionError(ValueError):
    """``problem``, when given, says why beyond the value not being of the field's type."""

    def __init__(
        self, path: str, field_type: FieldType, value: Any, problem: str | None = None
    ) -> None:
        self.path = path
        self.field_type = field_type
        self.value = value
        self.problem = problem
        message = f"Unable to convert field {path} - {field_type.value} - for value {shown(value)}"
        super().__init__(f"{message}: {problem}" if problem else message)


class FieldErrorCode(StrEnum):
    """What is wrong with a field, as Gemini's ``fieldValidationErrors.<field>.error`` says."""

    REQUIRED = "REQUIRED"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_TYPE = "INVALID_TYPE"  # not a value of the field's type
    INVALID_VALUE = "INVALID_VALUE"


# Where a problem of the record as a whole (not a JSON object) is filed.
WHOLE_RECORD = "data"


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One reason a record was refused: ``kind`` is ``conversion`` or ``validation``."""

    field: str
    kind: str
    reason: str

    @property
    def code(self) -> FieldErrorCode:
        if self.kind == "conversion":
            return FieldErrorCode.INVALID_TYPE
        if self.reason.startswith("required"):
            return FieldErrorCode.REQUIRED
        if self.reason.startswith("unknown field"):
            return FieldErrorCode.UNKNOWN_FIELD
        return FieldErrorCode.INVALID_VALUE

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

    def refusal(self, entity: EntitySchema) -> Refusal:
        """Why the record cannot be stored: its first conversion problem (the seed's reason),
        else Gemini's ``EntityRecord of <ENTITY> with id <lk> invalid``; every problem is in
        ``errors`` and, by field, in ``fields``."""
        errors = [p.view() for p in self.problems]
        fields: dict[str, dict[str, str]] = {}
        for problem in self.problems:
            fields.setdefault(
                problem.field or WHOLE_RECORD, {"error": problem.code, "reason": problem.reason}
            )
        conversions = [p for p in self.problems if p.kind == "conversion"]
        if conversions:
            return Refusal("conversion", conversions[0].reason, errors, fields)
        key = entity.lk_separator.join(
            "null" if self.values.get(name) is None else sql_text(self.values[name])
            for name in entity.lk
        )
        reason = f"EntityRecord of {entity.name} with id {visible(key)} invalid"
        return Refusal("validation", reason, errors, fields)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused record as the API and the ledger report it."""

    kind: str  # ``conversion`` or ``validation``
    reason: str
    errors: list[dict[str, str]]
    # Gemini's fieldValidationErrors: the first problem of each field.
    fields: dict[str, dict[str, str]]


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
        result = self._object(raw)
        if isinstance(raw, dict):
            self._members(entity.fields, raw, "", result, partial=partial)
            self._addressable(entity, result)
        return result

    @staticmethod
    def _object(raw: Any) -> Converted:
        """An empty conversion, refused already when ``raw`` is no JSON object."""
        result = Converted()
        if not isinstance(raw, dict):
            result.problems.append(
                FieldProblem("", "validation", "the record must be a JSON object")
            )
        return result

    def _addressable(self, entity: EntitySchema, result: Converted) -> None:
        """A stored record must be reachable by URL and fit its key's unique index."""
        for name in entity.lk:
            value = result.values.get(name)
            if not isinstance(value, str):
                continue
            if not value:
                reason = "must not be empty: a logical key value identifies the record in URLs"
            elif len(value) > MAX_KEY_CHARACTERS:
                reason = (
                    f"must hold at most {MAX_KEY_CHARACTERS} characters:"
                    " a logical key value is indexed"
                )
            else:
                continue
            result.problems.append(FieldProblem(name, "validation", reason))

    def lk_values(self, entity: EntitySchema, raw: Any) -> Converted:
        """Only the logical-key fields of ``raw`` (DELETE)."""
        result = self._object(raw)
        if isinstance(raw, dict):
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
                reason = "unknown field"
                problem = unstorable_text(key)
                if problem:
                    reason += f": names must not contain {problem}"
                result.problems.append(
                    FieldProblem(f"{prefix}{visible(key)}", "validation", reason)
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
        problem = unstorable_text(value) if isinstance(value, str) else None
        if problem:
            raise ConversionError(where, spec.type, value, f"text must not contain {problem}")
        if spec.type is FieldType.ENTITY_REF:
            key_field = self.registry.ref_key_field(spec)
            try:
                return self.from_json(key_field, value, where)
            except ConversionError as exc:
                raise ConversionError(where, spec.type, value, exc.problem) from None
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
        try:
            return self._from_text(spec, text, where)
        except ConversionError as exc:
            # The message shows the text as sent, not a number it was read as on the way.
            raise ConversionError(where, spec.type, text, exc.problem) from None

    def _from_text(self, spec: FieldSpec, text: str, where: str) -> Any:
        if spec.type is FieldType.ENTITY_REF:
            return self._from_text(self.registry.ref_key_field(spec), text, where)
        if spec.type is FieldType.INTEGER:
            if not _INTEGER_TEXT.fullmatch(text):
                raise ConversionError(where, spec.type, text)
            return self.from_json(spec, int(text), where)
        if spec.type is FieldType.DOUBLE:
            if not _DECIMAL_TEXT.fullmatch(text):
                raise ConversionError(where, spec.type, text)
            return self.from_json(spec, float(text), where)
        if spec.type is FieldType.BOOL:
            if text not in ("true", "false"):
                raise ConversionError(where, spec.type, text)
            return text == "true"
        if spec.type in (FieldType.OBJECT, FieldType.ARRAY):
            raise ConversionError(where, spec.type, text)
        return self.from_json(spec, text, where)

    def search_text(self, spec: FieldSpec, text: str) -> str:
        """Text searched for as written (CONTAINS, STARTS_WITH): any text PostgreSQL can hold."""
        problem = unstorable_text(text)
        if problem:
            raise ConversionError(spec.name, spec.type, text, f"text must not contain {problem}")
        return text

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
        try:
            return str(value)
        except ValueError:  # more digits than Python writes (and than numeric holds)
            return _INVALID
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else _INVALID
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
        try:
            number = Decimal(value)
        except ArithmeticError:  # an exponent past what Decimal represents
            return _INVALID
        return str(number) if _fits_numeric(number) else _INVALID
    return _INVALID


def _fits_numeric(number: Decimal) -> bool:
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # the text pattern admits no NaN or Infinity
    integer_digits = 0 if number.is_zero() else number.adjusted() + 1
    return integer_digits <= _NUMERIC_INTEGER_DIGITS and -exponent <= _NUMERIC_FRACTION_DIGITS


def _double(_spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _INVALID
    try:
        number = float(value)
    except OverflowError:  # an integer past the largest double
        return _INVALID
    return number if math.isfinite(number) else _INVALID


def _bool(_spec: FieldSpec, value: Any) -> Any:
    return value if isinstance(value, bool) else _INVALID


def _date(_spec: FieldSpec, value: Any) -> Any:
    if not isinstance(value, str) or not _DATE_TEXT.fullmatch(value):
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
        # A time without a zone names no instant; storing it as UTC would be a guess.
        # With one, its UTC instant may lie outside years 1-9999: OverflowError.
        return utc_text(parsed) if parsed.tzinfo is not None else _INVALID
    except (ValueError, OverflowError):
        return _INVALID


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
