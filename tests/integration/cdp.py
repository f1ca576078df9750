"""Headless Debian chromium driven over the DevTools protocol (aiohttp's WebSocket client,
no browser download): navigate, click at an element's centre with real mouse events, type,
read the page, and take screenshots. Console errors and CSP violations are collected so a
test can fail on them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]
SCREENSHOTS_ENV = "DCCGATE_CONSOLE_SCREENSHOTS"
"""A folder to copy every screenshot into, to look at them (they are in tmp_path too)."""


def chromium_path() -> str:
    """Debian's chromium; skipped where it is missing and cannot be installed (not root),
    failed where it must be there (root or CI)."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found:
        return found
    message = "Debian chromium is not installed: `apt-get install chromium`"
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(message + "; as root `make test` installs it, so this must not skip here")
    pytest.skip(message)


class Page:
    """One browser tab over a DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, shots: Path) -> None:
        self._ws = ws
        self._shots = shots
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.problems: list[str] = []
        """Console errors, uncaught exceptions and CSP violations, as text."""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            doc = json.loads(msg.data)
            if "id" in doc:
                future = self._waiting.pop(doc["id"], None)
                if future is not None and not future.done():
                    future.set_result(doc)
                continue
            self._event(doc.get("method", ""), doc.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            self.problems.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.problems.append(f"console.error: {params.get('args')}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error" and entry.get("source") != "network":
                self.problems.append(f"log: {entry.get('text')}")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (an error answer fails the test)."""
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        await self._ws.send_str(json.dumps({"id": self._next_id, "method": method,
                                            "params": params}))  # fmt: skip
        doc = await asyncio.wait_for(future, 30)
        assert "error" not in doc, f"{method}: {doc['error']}"
        result: dict[str, Any] = doc["result"]
        return result

    async def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, f"{expression}: {result['exceptionDetails']}"
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 20, what: str = "") -> Any:
        """Wait until `expression` is truthy; its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if loop.time() > deadline:
                text = await self.eval("document.body.innerText")
                raise AssertionError(f"not true in {timeout_s} s: {what or expression}\n{text}")
            await asyncio.sleep(0.1)

    async def goto(self, url: str) -> None:
        """Open `url` and wait until the page has loaded."""
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of `selector`'s element."""
        box = await self.wait_for(
            f"""(() => {{
                const e = document.querySelector({json.dumps(selector)});
                if (!e || e.offsetParent === null && getComputedStyle(e).position !== 'fixed')
                    return null;
                e.scrollIntoView({{block: 'center'}});
                const r = e.getBoundingClientRect();
                return r.width > 0 && r.height > 0 ? [r.x + r.width / 2, r.y + r.height / 2]
                                                   : null;
            }})()""",
            what=f"{selector} to be visible",
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def type_into(self, selector: str, text: str) -> None:
        """Click `selector`, clear it, and type `text` as keyboard input."""
        await self.click(selector)
        await self.eval(f"document.querySelector({json.dumps(selector)}).select()")
        await self.send("Input.insertText", text=text)

    async def select(self, selector: str, value: str) -> None:
        """Choose `value` in a <select> (as the keyboard would) and announce the change."""
        await self.eval(
            f"""(() => {{ const s = document.querySelector({json.dumps(selector)});
                s.value = {json.dumps(value)};
                s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()"""
        )

    async def text(self, selector: str) -> str:
        """The visible text of `selector`'s element."""
        value = await self.eval(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''")
        return str(value)

    async def visible(self, selector: str) -> bool:
        """Whether `selector`'s element is rendered."""
        return bool(
            await self.eval(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                " return !!e && e.getClientRects().length > 0; })()"
            )
        )

    async def screenshot(self, name: str) -> Path:
        """A PNG of the viewport, saved as `name` (and copied to $DCCGATE_CONSOLE_SCREENSHOTS)."""
        result = await self.send("Page.captureScreenshot", format="png")
        return _save(self._shots / name, base64.b64decode(result["data"]))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


def _save(path: Path, png: bytes) -> Path:
    path.write_bytes(png)
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)
    return path


def _launch(profile: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _debugger_port(profile: Path, proc: subprocess.Popen[bytes]) -> int:
    active = profile / "DevToolsActivePort"
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited with {proc.returncode}")
        if active.exists() and active.read_text().strip():
            return int(active.read_text().splitlines()[0])
        await asyncio.sleep(0.1)
    raise AssertionError("chromium did not open its DevTools port in 30 s")


@contextlib.asynccontextmanager
async def browser_page(tmp_path: Path, width: int = 1400, height: int = 900) -> AsyncIterator[Page]:
    """A fresh headless chromium (its own profile) and its first tab, `width` x `height`."""
    proc = _launch(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        port = await _debugger_port(tmp_path / "chromium-profile", proc)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(url, max_msg_size=0) as ws:
                page = Page(ws, tmp_path)
                try:
                    for domain in ("Page", "Runtime", "Log"):
                        await page.send(f"{domain}.enable")
                    await page.send(
                        "Emulation.setDeviceMetricsOverride",
                        width=width, height=height, deviceScaleFactor=1, mobile=False,
                    )  # fmt: skip
                    yield page
                finally:
                    await page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
