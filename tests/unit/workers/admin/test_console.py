"""The web console's files: served from the allow-list only, with their content types and
the security headers; and the rules its code keeps (no inline code, no HTML from data)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from workers.admin.ui import CONSOLE_FILES, SECURITY_HEADERS, install_console

Client = TestClient[web.Request, web.Application]
STATIC = resources.files("workers.admin.ui").joinpath("static")


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application()
    install_console(app)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_root_and_ui_redirect_to_the_console(client: Client) -> None:
    for path in ("/", "/ui"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == "/ui/"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ui/", "text/html"),
        ("/ui/index.html", "text/html"),
        ("/ui/console.js", "text/javascript"),
        ("/ui/api.js", "text/javascript"),
        ("/ui/views.js", "text/javascript"),
        ("/ui/forecasts.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ],
)
async def test_each_file_has_its_type_and_the_security_headers(
    client: Client, path: str, content_type: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == content_type
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../app.py",
        "/ui/%2e%2e/app.py",
        "/ui/..%2fapp.py",
        "/ui/%2e%2e%2f__init__.py",
        "/ui/static/index.html",
        "/ui/__init__.py",
        "/ui/index.html%00.js",
        "/ui/nope.js",
        "/ui/INDEX.HTML",
    ],
)
async def test_no_path_outside_the_allow_list_is_served(client: Client, path: str) -> None:
    response = await client.get(path, allow_redirects=False)
    assert response.status in (404, 302)
    body = await response.read()
    assert b"import" not in body
    assert b"<html" not in body


def _read(name: str) -> str:
    return STATIC.joinpath(name).read_text(encoding="utf-8")


def test_every_static_file_is_served_and_every_served_file_exists() -> None:
    on_disk = {p.name for p in STATIC.iterdir() if p.is_file()}
    assert on_disk == set(CONSOLE_FILES)


def test_the_page_has_no_inline_code_and_no_external_assets() -> None:
    html = _read("index.html")
    # Every script has a src and no body; no style attribute or element; no event handler.
    assert re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S) == [""]
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    for name in CONSOLE_FILES:
        # An SVG names its XML namespace with a URL; that is not fetched.
        text = _read(name).replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), name
        assert "@import" not in text


@pytest.mark.parametrize("name", [n for n in CONSOLE_FILES if n.endswith(".js")])
def test_scripts_never_write_html_from_data(name: str) -> None:
    code = _read(name)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "localStorage"):  # fmt: skip
        assert sink not in code, f"{name} uses {sink}"
    assert "sessionStorage" in _read("api.js")


def test_every_tab_has_its_view_and_the_console_knows_it() -> None:
    html = _read("index.html")
    console = _read("console.js")
    tabs = re.findall(r'class="tab[^"]*" data-view="([a-z]+)"', html)
    assert "forecasts" in tabs
    views = re.search(r"const VIEWS = \[([^\]]*)\]", console)
    assert views is not None
    for tab in tabs:
        assert f'<section id="view-{tab}"' in html, tab
        assert f'"{tab}"' in views.group(1), tab


def test_the_csv_report_is_fetched_with_the_token_in_a_header_not_a_url() -> None:
    forecasts = _read("forecasts.js")
    api = _read("api.js")
    # The CSV goes through fetchBlob, which puts the token in the Authorization header...
    assert 'fetchBlob(withQuery("/v1/reports/sr-variance", { month, format: "csv" })' in forecasts
    blob = api[api.index("export async function fetchBlob") :]
    assert "headers.Authorization = `Bearer ${secret}`" in blob
    assert 'credentials: "omit"' in blob
    # ...and is offered from a Blob URL, revoked later; no query names the token.
    assert "URL.createObjectURL" in forecasts
    assert "URL.revokeObjectURL" in forecasts
    for code in (forecasts, api):
        assert not re.search(r"withQuery\([^)]*token", code)
        assert "access_token" not in code
