"""The admin API client: JSON in, JSON out, error answers raised as AdminCliError."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from workers.tools.admin_cli.errors import AdminCliError, ApiAnswerError, TransportError
from workers.tools.admin_cli.formatting import printable
from workers.tools.admin_cli.transport import Transport, urllib_transport

__all__ = ["DEFAULT_TIMEOUT_S", "ENVELOPE_KEYS", "AdminClient", "as_object", "segment"]

DEFAULT_TIMEOUT_S = 10.0
ENVELOPE_KEYS = frozenset({"version", "source", "note"})
"""Keys of a configuration answer that are not the item's fields (the same as
`workers.config.defaults.ENVELOPE_KEYS`, which this light module does not import)."""


def segment(value: str) -> str:
    """One path segment, percent-encoded (a RequestID's colons stay as they are)."""
    return urllib.parse.quote(value, safe=":")


class AdminClient:
    """The admin API over a transport: JSON in, JSON out, error answers raised.

    base_url: the gateway's HTTP address, e.g. http://127.0.0.1:8080.
    token: the bearer token (operator or User).
    timeout_s: seconds to wait for each answer.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: Transport = urllib_transport,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s
        self._transport = transport

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The decoded JSON answer of `method path`; raises ApiAnswerError on 4xx/5xx."""
        if query:
            given = {k: str(v) for k, v in query.items() if v is not None}
            if given:
                path = f"{path}?{urllib.parse.urlencode(given)}"
        all_headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        url = self.base_url + path
        try:
            status, raw = self._transport(
                method, url, headers=all_headers, body=data, timeout_s=self.timeout_s
            )
        except TransportError as exc:
            raise unreachable(self.base_url, self.timeout_s, exc) from None
        if status >= 300:
            raise ApiAnswerError(method, path, status, error_text(status, raw))
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise AdminCliError(
                f"{method} {path}: the answer is not JSON; is {self.base_url} the dccgate "
                "admin API? (--url / DCCGATE_ADMIN_URL)"
            ) from None

    def call_text(
        self, path: str, *, accept: str, query: Mapping[str, object] | None = None
    ) -> str:
        """The text answer (e.g. CSV) of `GET path`; raises ApiAnswerError on 4xx/5xx."""
        if query:
            given = {k: str(v) for k, v in query.items() if v is not None}
            if given:
                path = f"{path}?{urllib.parse.urlencode(given)}"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": accept}
        try:
            status, raw = self._transport(
                "GET", self.base_url + path, headers=headers, body=None, timeout_s=self.timeout_s
            )
        except TransportError as exc:
            raise unreachable(self.base_url, self.timeout_s, exc) from None
        if status >= 300:
            raise ApiAnswerError("GET", path, status, error_text(status, raw))
        return raw.decode("utf-8", "replace")

    def read_for_update(self, path: str) -> tuple[dict[str, Any], int]:
        """The fields of the item in force at `path` (the built-in default's if it was never
        set), and its version; ({}, 0) if there is none (version 0 makes the PUT create it
        only if still absent). The answer's `source` and `note` are not fields."""
        try:
            doc = self.call("GET", path)
        except ApiAnswerError as exc:
            if exc.status == 404:
                return {}, 0
            raise
        doc = as_object(doc, path)
        version = doc.get("version", 0)
        return {k: v for k, v in doc.items() if k not in ENVELOPE_KEYS}, int(version)


def error_text(status: int, raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return printable(doc["error"])
    if status == 404:  # not an API answer: the router knows no such path
        return "no such path (the API's paths: `dccgate admin get /openapi.json`)"
    text = raw.decode("utf-8", "replace").strip()
    return printable(text[:300]) or "(no message)"


def unreachable(base_url: str, timeout_s: float, exc: TransportError) -> AdminCliError:
    if exc.timed_out:
        return AdminCliError(
            f"no answer from {base_url} within {timeout_s:g} s: is it the gateway's HTTP "
            "port (not Kafka's), and is the gateway not stuck? (a longer wait: --timeout S)"
        )
    if exc.not_http:
        return AdminCliError(
            f"{base_url} did not answer in HTTP ({exc.reason}): give the gateway's HTTP "
            "port with --url or DCCGATE_ADMIN_URL (not the Kafka port)"
        )
    return AdminCliError(
        f"cannot reach the admin API at {base_url} ({exc.reason}): is the gateway running? "
        "Start one with `dccgate run`, or point at yours with --url or DCCGATE_ADMIN_URL"
    )


def as_object(doc: Any, path: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise AdminCliError(f"GET {path}: expected a JSON object, got {type(doc).__name__}")
    return doc
