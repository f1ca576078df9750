"""The web console: plain HTML, CSS and JavaScript served by the admin process at `/ui/`.

The console is a client of the admin API and nothing more: it signs in with a token (kept
in the browser tab's sessionStorage, sent as `Authorization: Bearer`, never in a URL) and
calls the same `/v1/...` routes as `dccgate admin`, so the API decides who may see and do
what. Its files are package data (`static/`), read once at start-up into an allow-list:
a path that is not one of them is 404, so no path can reach outside the folder. Every
answer carries a strict Content-Security-Policy (scripts and styles from this origin only,
no inline code, no framing), `X-Frame-Options: DENY` and `nosniff` (docs/console.md).
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

__all__ = ["CONSOLE_FILES", "SECURITY_HEADERS", "install_console"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONSOLE_FILES = (
    "index.html",
    "console.css",
    "console.js",
    "api.js",
    "views.js",
    "forecasts.js",
    "icon.svg",
)
"""Every file the console serves, from `workers/admin/ui/static/`."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__).joinpath("static")
    files: dict[str, tuple[bytes, str]] = {}
    for name in CONSOLE_FILES:
        suffix = name[name.rfind(".") :]
        files[name] = (folder.joinpath(name).read_bytes(), _TYPES[suffix])
    return files


def install_console(app: web.Application) -> None:
    """Serve the console at `/ui/` (`/` and `/ui` redirect there) on `app`."""
    files = _load()

    async def page(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        found = files.get(name)
        if found is None:
            return web.Response(status=404, text="no such console file", headers=SECURITY_HEADERS)
        body, content_type = found
        headers = {**SECURITY_HEADERS, "Content-Type": content_type}
        return web.Response(body=body, headers=headers)

    async def to_console(_: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/", headers=SECURITY_HEADERS)

    app.router.add_get("/", to_console)
    app.router.add_get("/ui", to_console)
    app.router.add_get("/ui/", page)
    app.router.add_get("/ui/{name}", page)
