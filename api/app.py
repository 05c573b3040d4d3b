"""The application factory: ``create_app(settings)``; resources live in ``cleanup_ctx``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import version

from aiohttp import web

from api import (
    access,
    batch_failures,
    batch_inserts,
    console,
    dlq,
    entity_data,
    instance_bulk,
    keys,
    operations,
    overview,
)
from api.completion import CompletionWaiter
from api.errors import ErrorRenderer, Handler, error_middleware
from api.openapi import DESCRIPTION, Description
from api.requests import json_bodies
from batchline.entities.schema import load_registry
from batchline.metrics import Metrics
from batchline.settings import Settings
from sql import db
from streams.producer import AsyncProducer


def create_app(settings: Settings, metrics: Metrics | None = None) -> web.Application:
    renderers: dict[str, ErrorRenderer] = {}
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            counted_responses,
            error_middleware(renderers),
            *access.middlewares(settings),
            json_bodies,
        ],
    )
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = metrics or Metrics()
    app[keys.ENTITIES] = load_registry(settings.entities_dir)
    app[DESCRIPTION] = Description("batchline", version("batchline"))
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_producer)
    operations.add_routes(app)
    batch_inserts.add_routes(app)
    batch_failures.add_routes(app)
    dlq.add_routes(app)
    overview.add_routes(app)
    console.add_routes(app)
    instance_bulk.add_routes(app, renderers)
    entity_data.add_routes(app)
    renderers["/data"] = renderers["/entity"] = entity_data.render_error
    access.describe_security(app[DESCRIPTION], settings)
    return app


@web.middleware
async def counted_responses(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``batchline_http_responses_total`` by method and status, errors included."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[keys.METRICS].http_responses.labels(request.method, str(status)).inc()


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    url = settings.require_database_url()
    # LISTEN has a connection of its own (CompletionWaiter); the replay lock, the one
    # session-level lock, is released or ends its connection (sql.replay_runs).
    pool = await db.create_pool(url, max_size=settings.db_pool_max_size, session_state_free=True)
    waiter = CompletionWaiter(pool, url)
    await waiter.start()
    app[keys.POOL] = pool
    app[keys.WAITER] = waiter
    yield
    await waiter.close()
    await pool.close()


async def _producer(app: web.Application) -> AsyncIterator[None]:
    producer = AsyncProducer(app[keys.SETTINGS].librdkafka_producer_config())
    app[keys.PRODUCER] = producer
    yield
    await producer.close()
