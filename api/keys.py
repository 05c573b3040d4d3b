"""Typed keys for what the application holds."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from api.completion import CompletionWaiter
from api.dlq_tasks import ReplayTasks
from batchline.entities.schema import Registry
from batchline.metrics import Metrics
from batchline.settings import Settings
from streams.producer import AsyncProducer

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
PRODUCER = web.AppKey("producer", AsyncProducer)
WAITER = web.AppKey("waiter", CompletionWaiter)
METRICS = web.AppKey("metrics", Metrics)
DLQ_REPLAYS = web.AppKey("dlq_replays", ReplayTasks)
ENTITIES = web.AppKey("entities", Registry)
