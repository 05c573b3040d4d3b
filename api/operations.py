"""Operations: /health, /ready, /metrics, /openapi.json and a docs page."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from api import keys
from api.openapi import openapi_document
from api.responses import json_response
from sql import db

_DOCS_PAGE = """<!doctype html>
<html><head><title>batchline API</title><meta charset="utf-8">
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


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
    return json_response(openapi_document(request.app))


async def docs(_request: web.Request) -> web.StreamResponse:
    return web.Response(text=_DOCS_PAGE, content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
