"""``/openapi.json``, built from what each front door declares as it adds its routes.

A front door adds a route and its ``ApiOperation`` in one call (``add_operation``): the request
body, query and answers are the pydantic models its handler validates and answers with, so
the description cannot drift from the code. Routes added without one (``/docs``, its
assets, ``/openapi.json`` itself, trailing-slash twins) are not operations of the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from batchline.text import NO_NUL_PATTERN

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JsonSchema = dict[str, Any]
COMPONENTS = "#/components/schemas/"
# The HTTP server refuses some requests before any handler sees them, in plain text.
_HTTP_REFUSAL = (
    "text/plain when the HTTP server itself refuses the request: a request line or a header"
    " longer than 8190 bytes, or a malformed header"
)


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    location: str  # path, query or header
    schema: JsonSchema
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """One documented response. ``body`` is a model, a schema, or None (no body)."""

    status: int
    description: str
    body: type[BaseModel] | JsonSchema | None = None
    media_type: str = "application/json"
    headers: tuple[Parameter, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiOperation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    answers: tuple[Answer, ...]
    body: type[BaseModel] | JsonSchema | None = None
    parameters: tuple[Parameter, ...] = ()
    description: str = ""
    # OpenAPI security requirements, e.g. ({"bearer": []},); None: the document's default.
    security: tuple[dict[str, list[str]], ...] | None = None


@dataclass
class Description:
    """What the application documents: its operations, and named schemas they refer to."""

    title: str
    version: str
    operations: list[ApiOperation] = field(default_factory=list)
    schemas: dict[str, JsonSchema] = field(default_factory=dict)
    # Models that schemas above refer to by name (``COMPONENTS + model.__name__``).
    models: list[type[BaseModel]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    # components.securitySchemes, and the requirement every operation has unless it says.
    security_schemes: dict[str, JsonSchema] = field(default_factory=dict)
    security: tuple[dict[str, list[str]], ...] = ()


DESCRIPTION = web.AppKey("description", Description)


def add_operation(app: web.Application, operation: ApiOperation, handler: Handler) -> None:
    """Serve ``handler`` at the operation's method and path, and document it."""
    app.router.add_route(operation.method, operation.path, handler)
    app[DESCRIPTION].operations.append(operation)


def path_parameter(name: str, description: str = "", pattern: str = NO_NUL_PATTERN) -> Parameter:
    """A path segment; by default any text PostgreSQL can hold (so no NUL)."""
    return Parameter(name, "path", {"type": "string", "pattern": pattern}, description)


def location_header(description: str) -> Parameter:
    return Parameter("Location", "header", {"type": "string"}, description)


def query(model: type[BaseModel]) -> tuple[Parameter, ...]:
    """A query model's fields as query parameters (every one optional)."""
    schema = model.model_json_schema(ref_template=COMPONENTS + "{model}")
    definitions = schema.get("$defs", {})
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        described = dict(_inline(prop, definitions))
        text = described.pop("description", "")
        described.pop("title", None)
        parameters.append(Parameter(name, "query", described, text))
    return tuple(parameters)


def _inline(schema: JsonSchema, definitions: Mapping[str, JsonSchema]) -> JsonSchema:
    """``schema`` with references to ``definitions`` replaced by their text (one level)."""
    if "$ref" in schema:
        return dict(definitions[schema["$ref"].removeprefix(COMPONENTS)])
    if "anyOf" in schema:
        return schema | {"anyOf": [_inline(s, definitions) for s in schema["anyOf"]]}
    return schema


def openapi_document(description: Description) -> dict[str, Any]:
    models = _models(description.operations, description.models)
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=COMPONENTS + "{model}"
    )
    schemas = dict(definitions.get("$defs", {})) | description.schemas
    paths: dict[str, dict[str, Any]] = {}
    for operation in description.operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    tags = sorted({operation.tag for operation in description.operations})
    components: dict[str, Any] = {"schemas": dict(sorted(schemas.items()))}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": description.title, "version": description.version},
        "tags": [{"name": tag, "description": description.tags.get(tag, "")} for tag in tags],
        "paths": dict(sorted(paths.items())),
        "components": components,
    }
    if description.security_schemes:
        components["securitySchemes"] = description.security_schemes
    if description.security:
        document["security"] = list(description.security)
    return document


def _models(
    operations: Iterable[ApiOperation], named: Iterable[type[BaseModel]]
) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {model.__name__: model for model in named}
    for operation in operations:
        bodies = [operation.body, *(answer.body for answer in operation.answers)]
        for body in bodies:
            if isinstance(body, type):
                found.setdefault(body.__name__, body)
    return list(found.values())


def _schema(body: type[BaseModel] | JsonSchema) -> JsonSchema:
    if isinstance(body, type):
        return {"$ref": COMPONENTS + body.__name__}
    return body


def _operation(operation: ApiOperation) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
    }
    if operation.description:
        described["description"] = operation.description
    if operation.security is not None:
        described["security"] = list(operation.security)
    parameters = [_parameter(p) for p in operation.parameters]
    if parameters:
        described["parameters"] = parameters
    if operation.body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(operation.body)}},
        }
    responses = {
        str(answer.status): _answer(answer) for answer in sorted(operation.answers, key=_status)
    }
    refused = responses.setdefault("400", {"description": "Bad request", "content": {}})
    refused["description"] += f"; {_HTTP_REFUSAL}"
    refused.setdefault("content", {}).setdefault("text/plain", {"schema": {"type": "string"}})
    described["responses"] = dict(sorted(responses.items()))
    return described


def _status(answer: Answer) -> int:
    return answer.status


def _parameter(parameter: Parameter) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": parameter.name,
        "in": parameter.location,
        "required": parameter.required or parameter.location == "path",
        "schema": parameter.schema,
    }
    if parameter.description:
        described["description"] = parameter.description
    return described


def _answer(answer: Answer) -> dict[str, Any]:
    described: dict[str, Any] = {"description": answer.description}
    if answer.body is not None:
        described["content"] = {answer.media_type: {"schema": _schema(answer.body)}}
    if answer.headers:
        described["headers"] = {
            header.name: {
                "description": header.description,
                "required": header.required,
                "schema": header.schema,
            }
            for header in answer.headers
        }
    return described
