"""The OpenAPI description of front door 3: one set of paths per entity of the YAML schemas,
with that entity's record as request and response bodies, and Gemini's envelopes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.openapi import COMPONENTS, Answer, ApiOperation, Description, JsonSchema, Parameter
from batchline.entities.json_schemas import JsonSchemas
from batchline.entities.schema import EntitySchema, FieldType, Registry
from batchline.entities.values import FieldErrorCode
from batchline.settings import Settings
from sql import entity_rows

TAG = "entities"
_BIGINT_MAX = 2**63 - 1
_PROCESSING = "Still processing after BATCHLINE_SYNC_WAIT_SECONDS: follow the batch"


class GeminiMeta(BaseModel):
    lastUpdateTimeUnix: int = Field(description="Milliseconds since 1970-01-01 UTC")
    lastUpdateTimeISO: str = Field(description="e.g. 2021-12-22T15:08:33.731Z")


class GeminiPageMeta(GeminiMeta):
    start: int
    limit: int
    total: int


class GeminiFieldError(BaseModel):
    error: FieldErrorCode
    reason: str


class GeminiErrorDetail(BaseModel):
    reason: str
    fieldValidationErrors: dict[str, GeminiFieldError] | None = Field(
        default=None, description="One record's invalid fields, by field name."
    )
    recordValidationErrors: list[dict[str, GeminiFieldError]] | None = Field(
        default=None, description="A list's records in order: each one's invalid fields ({})."
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Every problem: field, reason and (in a list) record index."
    )


class GeminiError(BaseModel):
    status: Literal["error"]
    error: GeminiErrorDetail


class ProcessingMeta(BaseModel):
    batchId: str


class GeminiProcessing(BaseModel):
    status: Literal["processing"]
    data: None
    meta: ProcessingMeta


class EntityDescription(BaseModel):
    name: str
    displayName: str | None = None
    lk: list[str]
    lkSeparator: str | None = None
    fields: list[dict[str, Any]]


class EntityList(BaseModel):
    status: Literal["success"]
    data: list[EntityDescription]


class EntityOne(BaseModel):
    status: Literal["success"]
    data: EntityDescription


_MEANINGS = {
    400: "Refused: the reason says why (Gemini's format)",
    404: "No such entity or record",
    413: "Larger than the configured limit",
    500: "Internal error",
    503: "The broker did not take the request",
}


def _errors(*statuses: int) -> tuple[Answer, ...]:
    return tuple(Answer(status, _MEANINGS[status], GeminiError) for status in statuses)


def _success(data: JsonSchema, meta: str = "GeminiMeta") -> JsonSchema:
    return {
        "type": "object",
        "properties": {
            "status": {"const": "success"},
            "data": data,
            "meta": {"$ref": COMPONENTS + meta},
        },
        "required": ["status", "data", "meta"],
    }


def describe_entities(
    description: Description, registry: Registry, settings: Settings, base: str
) -> None:
    """Add every entity's operations and schemas to ``description``."""
    schemas = JsonSchemas(registry)
    description.tags[TAG] = "Front door 3: the Gemini framework's generic entity API."
    description.models.extend([GeminiMeta, GeminiPageMeta])
    for entity in registry:
        _describe(description, schemas, entity, settings, base)
    description.operations.extend(
        [
            ApiOperation(
                "GET",
                "/entity",
                "listEntities",
                "Every entity schema",
                TAG,
                (Answer(200, "The entities", EntityList),),
            ),
            ApiOperation(
                "GET",
                "/entity/{entity}",
                "getEntity",
                "One entity schema",
                TAG,
                (Answer(200, "The entity", EntityOne), *_errors(404)),
                parameters=(
                    Parameter(
                        "entity",
                        "path",
                        {"type": "string", "enum": [e.name.lower() for e in registry]},
                        "The entity's name, in any case",
                    ),
                ),
            ),
        ]
    )


def _describe(
    description: Description,
    schemas: JsonSchemas,
    entity: EntitySchema,
    settings: Settings,
    base: str,
) -> None:
    name = entity.name
    record, record_in, record_patch = f"{name}.record", f"{name}.input", f"{name}.patch"
    record_put = f"{name}.replacement"
    description.schemas[record] = schemas.record_output(entity)
    description.schemas[record_in] = schemas.record_input(entity)
    description.schemas[record_put] = schemas.record_input(entity, key_in_url=True)
    description.schemas[record_patch] = schemas.record_input(entity, partial=True)
    one = {"$ref": COMPONENTS + record}
    listed = {"type": "array", "items": one}
    collection = f"{base}/{name.lower()}"
    item = f"{collection}/{{lk}}"
    title = name.title().replace("_", "")
    separator = f" joined by {entity.lk_separator!r}" if len(entity.lk) > 1 else ""
    key = Parameter(
        "lk",
        "path",
        {"type": "string", "minLength": 1},
        f"The logical key ({', '.join(entity.lk)}){separator}, each value percent-encoded.",
    )
    processing = Answer(
        202,
        _PROCESSING,
        GeminiProcessing,
        headers=(Parameter("Location", "header", {"type": "string"}, "The batch operation"),),
    )
    most = settings.max_records_per_request
    insert_body = {
        "type": "object",
        "properties": {
            "data": {
                "anyOf": [
                    {"$ref": COMPONENTS + record_in},
                    {
                        "type": "array",
                        "items": {"$ref": COMPONENTS + record_in},
                        "minItems": 1,
                        "maxItems": most,
                    },
                ]
            }
        },
        "required": ["data"],
    }

    def change_body(schema: str) -> JsonSchema:
        return {
            "type": "object",
            "properties": {"data": {"$ref": COMPONENTS + schema}},
            "required": ["data"],
        }

    description.operations.extend(
        [
            ApiOperation(
                "GET",
                collection,
                f"list{title}",
                f"{name} records: filtered, ordered and paged",
                TAG,
                (
                    Answer(200, "A page of records", _success(listed, "GeminiPageMeta")),
                    *_errors(400),
                ),
                parameters=_list_parameters(schemas, entity),
            ),
            ApiOperation(
                "POST",
                collection,
                f"insert{title}",
                f"Insert one {name} record, or a list of them (all or nothing)",
                TAG,
                (
                    Answer(200, "Inserted: what is stored", _success({"anyOf": [one, listed]})),
                    processing,
                    *_errors(400, 413, 500, 503),
                ),
                body=insert_body,
            ),
            ApiOperation(
                "GET",
                item,
                f"get{title}",
                f"One {name} record by its logical key",
                TAG,
                (Answer(200, "The record", _success(one)), *_errors(400, 404)),
                parameters=(key,),
            ),
            ApiOperation(
                "PUT",
                item,
                f"replace{title}",
                f"Replace a {name} record (fields left out become empty)",
                TAG,
                (
                    Answer(200, "Replaced: what is stored", _success(one)),
                    processing,
                    *_errors(400, 404, 413, 500, 503),
                ),
                body=change_body(record_put),
                parameters=(key,),
                description="The key fields may be left out of the body; given, they must match.",
            ),
            ApiOperation(
                "PATCH",
                item,
                f"patch{title}",
                f"Update only the fields given of a {name} record",
                TAG,
                (
                    Answer(200, "Updated: what is stored", _success(one)),
                    processing,
                    *_errors(400, 404, 413, 500, 503),
                ),
                body=change_body(record_patch),
                parameters=(key,),
            ),
            ApiOperation(
                "DELETE",
                item,
                f"delete{title}",
                f"Delete a {name} record; answers what was deleted",
                TAG,
                (
                    Answer(200, "Deleted", _success(one)),
                    processing,
                    *_errors(400, 404, 500, 503),
                ),
                parameters=(key,),
            ),
        ]
    )


def _list_parameters(schemas: JsonSchemas, entity: EntitySchema) -> tuple[Parameter, ...]:
    sortable = [s.name for s in entity.fields if s.type not in (FieldType.OBJECT, FieldType.ARRAY)]
    one_order = f"-?({'|'.join(sortable)})"
    parameters = [
        Parameter(
            "start",
            "query",
            {"type": "integer", "minimum": 0, "maximum": _BIGINT_MAX, "default": 0},
            "Records to skip.",
        ),
        Parameter(
            "limit",
            "query",
            {"type": "integer", "minimum": 1, "maximum": _BIGINT_MAX},
            "At most this many (default and cap: BATCHLINE_PAGE_LIMIT_MAX).",
        ),
        Parameter(
            "orderBy",
            "query",
            {"type": "string", "pattern": f"^{one_order}(,{one_order})*$"},
            "Fields to order by, comma-separated; -field for descending.",
        ),
    ]
    for spec in entity.fields:
        for operator, types in entity_rows.OPERATORS.items():
            if spec.type not in types:
                continue
            name = spec.name if operator == "EQ" else f"{spec.name}[{operator}]"
            parameters.append(
                Parameter(
                    name,
                    "query",
                    schemas.query_value(spec, operator),
                    f"Filter: {spec.name} {operator}",
                )
            )
    return tuple(parameters)
