"""JSON Schemas of an entity's records, from the same field specs the conversions use.

``record_input`` is what ``Values.record`` accepts (nothing it would refuse), ``record_output``
what ``Values.render`` answers, ``query_value`` what ``Values.from_text`` takes from a URL.
"""

from __future__ import annotations

from typing import Any

from batchline.entities.schema import EntitySchema, FieldSpec, FieldType, Registry
from batchline.entities.values import MAX_KEY_CHARACTERS
from batchline.text import NO_NUL_PATTERN

JsonSchema = dict[str, Any]

_BIGINT = 2**63
_DECIMAL = "^[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE = {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
# With a zone (a time without one names no instant), and as Python reads it: 'T', no :60.
_DATE_TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "(\\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$",
}


class JsonSchemas:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def record_input(
        self, entity: EntitySchema, *, partial: bool = False, key_in_url: bool = False
    ) -> JsonSchema:
        """A record as POST takes it; ``partial``: as PATCH does; ``key_in_url``: as PUT does
        (the key fields may be left out: the URL gives them)."""
        optional = set(entity.lk) if key_in_url else set()
        return self._object(entity.fields, set(entity.lk), partial=partial, optional=optional)

    def record_output(self, entity: EntitySchema) -> JsonSchema:
        """A stored record as every answer shows it: all its fields."""
        return {
            "type": "object",
            "properties": {spec.name: self._output(spec) for spec in entity.fields},
            "required": [spec.name for spec in entity.fields],
        }

    def query_value(self, spec: FieldSpec, operator: str) -> JsonSchema:
        """A filter value in the query string."""
        if operator in ("CONTAINS", "STARTS_WITH"):
            return {"type": "string", "pattern": NO_NUL_PATTERN}
        if spec.type is FieldType.ENTITY_REF:
            return self.query_value(self.registry.ref_key_field(spec), operator)
        return self._scalar(spec, key=False)

    def _object(
        self,
        specs: tuple[FieldSpec, ...],
        key: set[str],
        *,
        partial: bool,
        optional: frozenset[str] | set[str] = frozenset(),
    ) -> JsonSchema:
        properties = {}
        required = []
        for spec in specs:
            schema = self._input(spec, key=spec.name in key)
            if spec.required and not partial and spec.name not in optional:
                required.append(spec.name)
                properties[spec.name] = schema
            else:
                properties[spec.name] = {"anyOf": [schema, {"type": "null"}]}
        described: JsonSchema = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            described["required"] = required
        return described

    def _input(self, spec: FieldSpec, *, key: bool = False) -> JsonSchema:
        if spec.type is FieldType.OBJECT:
            return self._object(spec.fields, set(), partial=False)
        if spec.type is FieldType.ARRAY:
            assert spec.items is not None
            return {"type": "array", "items": self._input(spec.items)}
        if spec.type is FieldType.ENTITY_REF:
            return self._input(self.registry.ref_key_field(spec), key=True)
        return self._scalar(spec, key=key)

    def _scalar(self, spec: FieldSpec, *, key: bool) -> JsonSchema:
        if spec.type is FieldType.STRING:
            text: JsonSchema = {"type": "string", "pattern": NO_NUL_PATTERN}
            if key:
                text |= {"minLength": 1, "maxLength": MAX_KEY_CHARACTERS}
            return text
        if spec.type is FieldType.INTEGER:
            return {"type": "integer", "minimum": -_BIGINT, "maximum": _BIGINT - 1}
        if spec.type is FieldType.DECIMAL:
            return {"type": ["number", "string"], "pattern": _DECIMAL, "maxLength": 1000}
        if spec.type is FieldType.DOUBLE:
            return {"type": "number"}
        if spec.type is FieldType.BOOL:
            return {"type": "boolean"}
        if spec.type is FieldType.DATE:
            return dict(_DATE)
        if spec.type is FieldType.DATE_TIME:
            return dict(_DATE_TIME)
        if spec.type is FieldType.ENUM:
            return {"type": "string", "enum": list(spec.enums)}
        raise AssertionError(f"not a scalar type: {spec.type}")

    def _output(self, spec: FieldSpec) -> JsonSchema:
        if spec.type is FieldType.OBJECT:
            inner: JsonSchema = {
                "type": "object",
                "properties": {s.name: self._output(s) for s in spec.fields},
            }
        elif spec.type is FieldType.ARRAY:
            assert spec.items is not None
            inner = {"type": "array", "items": self._output(spec.items)}
        elif spec.type is FieldType.ENTITY_REF:
            inner = self._output(self.registry.ref_key_field(spec))
        elif spec.type is FieldType.DECIMAL:
            inner = {"type": "string", "description": "exact, as text"}
        elif spec.type is FieldType.DATE_TIME:
            inner = {"type": "string", "format": "date-time"}
        elif spec.type is FieldType.DATE:
            inner = {"type": "string", "format": "date"}
        else:
            inner = self._scalar(spec, key=False)
        return {"anyOf": [inner, {"type": "null"}]}
