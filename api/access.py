"""Who may call which route, and requests a page on another origin must not be able to send.

Every route the application serves is classified here, by method and path. A route no
rule covers needs an operator token (and a unit test fails), so a route added later is
never open by accident.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import SystemRoute

from api.errors import Handler
from api.openapi import Description
from api.tenancy import TENANT_HEADER, requested_tenant
from batchline.settings import Settings
from batchline.tenants import is_tenant_name
from batchline.tokens import Role, TokenTable

log = logging.getLogger(__name__)


class Open(StrEnum):
    ALWAYS = "open"  # no data behind it: probes, the docs page, the console's shell
    METRICS = "metrics"  # open unless BATCHLINE_METRICS_PUBLIC=false, then operator
    OPENAPI = "openapi"  # open unless BATCHLINE_OPENAPI_PUBLIC=false, then any token


Access = Role | Open

_READ = frozenset({"GET"})
_WRITE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ANY = _READ | _WRITE


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str]
    path: str  # the path itself and everything below it
    access: Access

    def covers(self, method: str, path: str) -> bool:
        return method in self.methods and (path == self.path or path.startswith(self.path + "/"))


# First match wins. The README's table of routes and roles says the same.
RULES: tuple[Rule, ...] = (
    Rule(_READ, "/health", Open.ALWAYS),
    Rule(_READ, "/ready", Open.ALWAYS),
    Rule(_READ, "/docs", Open.ALWAYS),
    Rule(_READ, "/console", Open.ALWAYS),  # the page; its data calls carry a token
    Rule(_READ, "/metrics", Open.METRICS),
    Rule(_READ, "/openapi.json", Open.OPENAPI),
    Rule(_ANY, "/ops", Role.OPERATOR),  # dead letters show payloads
    Rule(frozenset({"DELETE"}), "/api/v1/batch-inserts", Role.OPERATOR),
    Rule(frozenset({"POST", "PUT"}), "/api/v1/batch-inserts", Role.PRODUCER),
    Rule(_READ, "/api/v1/batch-inserts", Role.READER),
    Rule(frozenset({"POST"}), "/instance-storage/instances/bulk", Role.PRODUCER),
    Rule(_WRITE, "/data", Role.PRODUCER),
    Rule(_READ, "/data", Role.READER),
    Rule(_READ, "/entity", Role.READER),
)


def classify(method: str, path: str) -> Access | None:
    """The access a route declares; None when no rule covers it."""
    method = "GET" if method == "HEAD" else method
    return next((rule.access for rule in RULES if rule.covers(method, path)), None)


def required_roles(access: Access | None, settings: Settings) -> frozenset[Role]:
    """Roles of which a token must hold one; empty: no token needed."""
    if access is None:
        return frozenset({Role.OPERATOR})
    if access is Open.ALWAYS:
        return frozenset()
    if access is Open.METRICS:
        return frozenset() if settings.metrics_public else frozenset({Role.OPERATOR})
    if access is Open.OPENAPI:
        return frozenset() if settings.openapi_public else frozenset(Role)
    assert isinstance(access, Role)
    return frozenset({access})


def _route_path(request: web.Request) -> str | None:
    route = request.match_info.route
    if isinstance(route, SystemRoute) or route.resource is None:
        return None  # 404 and 405: nothing behind them to protect
    return route.resource.canonical


def _bearer(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        reason=message, headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="batchline"'}
    )


def authentication_middleware(settings: Settings, tokens: TokenTable) -> Middleware:
    """Bearer tokens against the route's roles: 401 without a known token, 403 without a
    role the route needs. Errors are raised for the error middleware, which answers in the
    front door's own format."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = _route_path(request)
        if path is None:
            return await handler(request)
        access = classify(request.method, path)
        if access is None:
            log.error("route %s %s has no declared role; operators only", request.method, path)
        needed = required_roles(access, settings)
        if not needed:
            return await handler(request)
        presented = _bearer(request)
        if presented is None:
            raise _unauthorized("An Authorization: Bearer token is required")
        token = tokens.find(presented)
        if token is None:
            raise _unauthorized("The bearer token is not valid")
        if not token.roles & needed:
            wanted = " or ".join(sorted(needed))
            raise web.HTTPForbidden(reason=f"This needs the {wanted} role")
        tenant = requested_tenant(request)
        if not token.may_act_for(tenant):
            named = tenant if is_tenant_name(tenant) else f"in {TENANT_HEADER}"
            raise web.HTTPForbidden(reason=f"This token may not act for tenant {named}")
        response = await handler(request)
        if Role.OPERATOR in needed and request.method != "GET":
            # Operators delete and replay: say who (the token's name, never the token).
            log.info(
                "%s %s by token %s: %s", request.method, request.path, token.name, response.status
            )
        return response

    return middleware


def middlewares(settings: Settings) -> list[Middleware]:
    """Authentication when tokens are configured. Cross-site writes are refused by
    ``api.requests.json_bodies`` (JSON only), which runs after it."""
    tokens = settings.api_token_table()
    if not tokens:
        return []
    return [authentication_middleware(settings, tokens)]


def authentication_summary(settings: Settings) -> str:
    """One line for start-up logs saying whether the API asks for tokens."""
    if not settings.api_token_table():
        return (
            "authentication is off: anyone who reaches the API may write, read and operate"
            " (configure BATCHLINE_API_TOKENS to require tokens)"
        )
    return "authentication is on: bearer tokens from BATCHLINE_API_TOKENS"


BEARER_SCHEME = "bearerToken"


def openapi_security_scheme() -> dict[str, object]:
    return {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `batchline token create ROLE`, needed when"
        " BATCHLINE_API_TOKENS is configured. Roles: producer, reader, operator.",
    }


def describe_security(description: Description, settings: Settings) -> None:
    """Declare the bearer scheme in /openapi.json, and on each operation whether it needs a
    token and of which role."""
    description.security_schemes[BEARER_SCHEME] = openapi_security_scheme()
    described = []
    for operation in description.operations:
        roles = required_roles(classify(operation.method, operation.path), settings)
        if not roles:
            described.append(replace(operation, security=()))
            continue
        needs = f"Needs a token with the {' or '.join(sorted(roles))} role."
        text = f"{operation.description}\n\n{needs}" if operation.description else needs
        described.append(replace(operation, security=({BEARER_SCHEME: []},), description=text))
    description.operations[:] = described
