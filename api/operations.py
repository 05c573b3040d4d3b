"""Operations: /health, /ready, /metrics, /openapi.json and a docs page.

The docs page is Swagger UI, served from the assets the ``swagger-ui-py`` package ships: it
works on a machine that reaches no CDN, and links the raw description for when script is off.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from api import keys
from api.openapi import DESCRIPTION, Answer, ApiOperation, add_operation, openapi_document
from api.responses import json_response
from sql import db

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
DOCS_ASSETS = "/docs/assets"
TAG = "operations"

_DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>batchline API</title>
<link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{DOCS_ASSETS}/favicon-32x32.png"></head>
<body>
<p style="font-family: sans-serif; margin: 1em 2em">The OpenAPI description this page shows:
<a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a></p>
<div id="ui"></div>
<script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "{OPENAPI_PATH}", dom_id: "#ui"}});</script>
</body></html>"""


def swagger_ui_assets() -> Path:
    """The folder of Swagger UI's files inside the installed ``swagger-ui-py`` package."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


async def health(_request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.StreamResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(db.ping(request.app[keys.POOL]), 3)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        checks["database"] = f"unavailable: {exc}"
    try:
        await request.app[keys.PRODUCER].ping()
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        checks["broker"] = f"unavailable: {exc}"
    ok = all(value == "ok" for value in checks.values())
    return json_response(
        {"status": "ready" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[keys.METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(openapi_document(request.app[DESCRIPTION]))


async def docs(_request: web.Request) -> web.StreamResponse:
    return web.Response(text=_DOCS_PAGE, content_type="text/html")


def add_routes(app: web.Application) -> None:
    app[DESCRIPTION].tags[TAG] = "Health, readiness and metrics."
    add_operation(
        app,
        ApiOperation(
            "GET", "/health", "health", "The process is up", TAG, (Answer(200, "Up", Health),)
        ),
        health,
    )
    add_operation(
        app,
        ApiOperation(
            "GET",
            "/ready",
            "ready",
            "The database and the broker answer",
            TAG,
            (
                Answer(200, "Ready", Readiness),
                Answer(503, "Not ready: which check failed", Readiness),
            ),
        ),
        ready,
    )
    add_operation(
        app,
        ApiOperation(
            "GET",
            "/metrics",
            "metrics",
            "Prometheus metrics",
            TAG,
            (Answer(200, "Prometheus text format", {"type": "string"}, media_type="text/plain"),),
        ),
        metrics,
    )
    # The description and its page are not operations of the API.
    app.router.add_get(OPENAPI_PATH, openapi)
    app.router.add_get(DOCS_PATH, docs)
    app.router.add_static(DOCS_ASSETS, swagger_ui_assets())
