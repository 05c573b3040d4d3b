"""The operator console at ``/console``: a page and its scripts, shipped inside the package.

Hand-written HTML, CSS and JavaScript modules (no build step, nothing from the internet).
The shell holds no data, so it is served to anyone; every figure it shows comes from the
public API, called from the browser with the operator's bearer token when one is needed.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

BASE = "/console"
_ASSETS = "console_static"
_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
# Only the console's own files run: no inline script, no other origin, no framing.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
CONSOLE_ASSETS = web.AppKey("console_assets", dict[str, tuple[bytes, str]])


def _load_assets() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("api").joinpath(_ASSETS)
    assets: dict[str, tuple[bytes, str]] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in _TYPES:
            assets[item.name] = (item.read_bytes(), _TYPES[suffix])
    return assets


def _asset(request: web.Request, name: str) -> web.Response:
    found = request.app[CONSOLE_ASSETS].get(name)
    if found is None:
        raise web.HTTPNotFound(text=f"no console file {name}")
    body, content_type = found
    return web.Response(body=body, content_type=content_type, headers=_HEADERS)


async def shell(request: web.Request) -> web.StreamResponse:
    """The console page (its views are routed in the browser)."""
    return _asset(request, "index.html")


async def asset(request: web.Request) -> web.StreamResponse:
    """A script, style sheet or icon of the console."""
    return _asset(request, request.match_info["name"])


async def to_shell(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(BASE + "/")


def add_routes(app: web.Application) -> None:
    app[CONSOLE_ASSETS] = _load_assets()
    app.router.add_get(BASE, to_shell)
    app.router.add_get(BASE + "/", shell)
    app.router.add_get(BASE + "/{name}", asset)
