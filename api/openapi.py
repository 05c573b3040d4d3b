"""``/openapi.json``: every route the application serves, with request schemas where known."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from api.batch_inserts import RetryRequest
from api.dlq import ReplayRequest
from batchline.activity import Activity

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
            "required": ["code", "message"],
        }
    },
}

_REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/batch-inserts"): {
        "type": "object",
        "properties": {"activities": {"type": "array", "items": Activity.model_json_schema()}},
        "required": ["activities"],
        "additionalProperties": False,
    },
    ("PUT", "/api/v1/batch-inserts/{batch_id}"): RetryRequest.model_json_schema(),
    ("POST", "/ops/dlq/replays"): ReplayRequest.model_json_schema(),
    ("POST", "/instance-storage/instances/bulk"): {
        "type": "object",
        "properties": {
            "recordsFileName": {"type": "string"},
            "publishEvents": {"type": "boolean", "default": True},
        },
        "required": ["recordsFileName"],
        "additionalProperties": False,
    },
}


def openapi_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource is not None else ""
        handler = route.handler
        summary = (handler.__doc__ or handler.__name__.replace("_", " ")).strip().splitlines()[0]
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "default": {
                    "description": "Error",
                    "content": {"application/json": {"schema": _ERROR_SCHEMA}},
                }
            },
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ]
        if parameters:
            operation["parameters"] = parameters
        body = _REQUEST_BODIES.get((route.method, path))
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "batchline", "version": "0.1.0"},
        "paths": dict(sorted(paths.items())),
    }
