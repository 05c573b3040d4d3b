"""The tenant a request acts for (``X-Okapi-Tenant``), and whether it may see a batch."""

from __future__ import annotations

from aiohttp import web

from api import keys
from sql.batches import BatchHeader
from streams.envelopes import INSTANCE_ENTITY

TENANT_HEADER = "X-Okapi-Tenant"


def requested_tenant(request: web.Request) -> str:
    """The header's tenant, else the default one (unchecked: see ``Tenants.refusal``)."""
    return request.headers.get(TENANT_HEADER) or request.app[keys.SETTINGS].default_tenant


def batch_tenant(header: BatchHeader, default_tenant: str) -> str | None:
    """The tenant a batch belongs to; None for batches of no tenant (activities, entities).

    An instance chunk produced to Kafka without a tenant is written for the default one.
    ``batches.page`` says the same in SQL.
    """
    if header.options.tenant is not None:
        return header.options.tenant
    return default_tenant if header.entity == INSTANCE_ENTITY else None
