"""`dccgate admin`: the admin HTTP API at a terminal, for operators and Users, with tables.

Usage
-----

Point the command at the gateway's HTTP port and give it a token::

    export DCCGATE_ADMIN_URL=http://127.0.0.1:8080   # the default
    export DCCGATE_TOKEN=dcg_...                      # an operator or a User token
    dccgate admin users list

The token is read from the environment only (`DCCGATE_TOKEN`, or the variable named by
`--token-env NAME`), never from a flag, so it does not land in shell history or `ps`. With
`dccgate run`, the first operator token is `DCCGATE_ADMIN_TOKEN`:
`dccgate admin --token-env DCCGATE_ADMIN_TOKEN users list`.

Options (before or after the sub-command):

    --url URL          the admin API (DCCGATE_ADMIN_URL, else http://127.0.0.1:8080)
    --token-env NAME   the environment variable holding the token (DCCGATE_TOKEN)
    --json             print the API's JSON answer instead of a table
    --timeout S        seconds to wait for an answer (10)

Sub-commands read `dccgate admin <resource> <verb> [args]`:

    users list
    users get USER_ID
    users set USER_ID [--name NAME] [--roles IS,GS] [--version N]
    users delete USER_ID [--version N]
    tokens issue USER_ID                  prints the secret once: store it now
    tokens list USER_ID
    tokens revoke USER_ID TOKEN_ID
    tokens issue-operator
    tokens list-operators
    tokens revoke-operator TOKEN_ID
    allocations get USER_ID
    allocations set USER_ID [--rate R] [--burst B] [--shadow|--no-shadow] [--version N]
    traffic get
    traffic set [--capacity C] [--threshold T] [--reserved 2.2,7.1] [--reserved-share S]
                [--shadow|--no-shadow] [--default-rate R] [--default-burst B]
                [--no-default-allocation] [--version N]
    adt get USER_ID|dcc
    adt set USER_ID|dcc --file values.json|values.toml|- [--version N]
    exclusions get
    exclusions set CODE[,CODE...] [--version N]
    exclusions add CODE[,CODE...]
    exclusions remove CODE[,CODE...]
    storm-policy get
    storm-policy set --file policy.json|policy.toml|- [--version N]
    quarantine list [--user USER_ID]
    quarantine release REQUEST_ID
    quarantine delete REQUEST_ID
    audit [--limit N] [--key-prefix P] [--by WHO] [--since-ms MS] [--until-ms MS]
    get PATH                              any GET, e.g. `get /openapi.json`; prints JSON
    put PATH (--json '{...}' | --file F)  any PUT; `post` and `delete PATH` likewise

A PATH without a leading `/` is under `/v1/` (`get users` is `GET /v1/users`).

Changing only some fields never clobbers another operator's change: a `set` with flags
(`users`, `allocations`, `traffic`) and `exclusions set|add|remove` first GET the item,
change the fields given, and PUT with the version they read; if someone changed it in
between, the API refuses with 409 and you run the command again. `--version N` sends your
own version instead. A `set --file` replaces the whole item (with `--version N`, only if
it is still at version N). A file is TOML if its name ends in `.toml`, else JSON; it holds
the body itself, e.g. for `adt set`::

    thresholds = [{ srv = "7.2", window_s = 3600, max = 500 }]
    value_rules = [{ srv = "2.2", field = "amount", min = 0, max = 500 }]

`tokens issue` writes the secret alone on stdout (so `T=$(dccgate admin tokens issue ID)`
works) and its details and a warning on stderr: the secret is stored nowhere and cannot be
shown again, only revoked and reissued.

Exit codes: 0 done; 1 the API refused (its message and HTTP status on stderr) or could not
be reached; 2 a usage error (a bad flag, no token, an unreadable file).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import re
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

__all__ = [
    "DEFAULT_URL",
    "TOKEN_ENV",
    "URL_ENV",
    "AdminCliError",
    "AdminClient",
    "ApiAnswerError",
    "Transport",
    "TransportError",
    "add_admin_parser",
    "add_codes",
    "api_path",
    "cell",
    "dict_table",
    "format_fields",
    "format_table",
    "iso_ms",
    "merge",
    "remove_codes",
    "run_admin",
    "traffic_changes",
    "urllib_transport",
]

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "DCCGATE_ADMIN_URL"
TOKEN_ENV = "DCCGATE_TOKEN"  # noqa: S105 - the name of a variable, not a secret
_DEFAULT_TIMEOUT_S = 10.0
_PROG = "dccgate admin"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


# --- errors -----------------------------------------------------------------------------


class AdminCliError(Exception):
    """A failure to report on stderr, with the exit code to return (1, or 2 for usage)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ApiAnswerError(AdminCliError):
    """The API answered with an error status; `message` is its `{"error": ...}` text."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status
        self.api_message = message


class TransportError(Exception):
    """No HTTP answer at all: the reason (connection refused, timed out, not HTTP...)."""

    def __init__(self, reason: str, *, timed_out: bool = False, not_http: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.not_http = not_http


# --- HTTP -------------------------------------------------------------------------------


class Transport(Protocol):
    """Sends one HTTP request and returns (status, body); raises TransportError when there
    is no answer. Tests pass a fake; the command uses `urllib_transport`."""

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout_s: float,
    ) -> tuple[int, bytes]: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would resend the Authorization header to wherever a redirect points.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def urllib_transport(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout_s: float,
) -> tuple[int, bytes]:
    """One request with the standard library: no redirects followed, errors as answers."""
    # run_admin lets only http:// and https:// through (_check_url).
    request = urllib.request.Request(  # noqa: S310
        url, data=body, headers=dict(headers), method=method
    )
    try:
        with _OPENER.open(request, timeout=timeout_s) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:  # an answer with an error status
        with exc:
            location = exc.headers.get("Location") if 300 <= exc.code < 400 else None
            if location:
                return exc.code, json.dumps({"error": f"redirected to {location}"}).encode()
            return exc.code, bytes(exc.read())
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, TimeoutError)
        raise TransportError(str(exc.reason), timed_out=timed_out) from exc
    except TimeoutError as exc:
        raise TransportError("timed out", timed_out=True) from exc
    except http.client.HTTPException as exc:
        raise TransportError(f"not an HTTP answer ({exc!r})", not_http=True) from exc
    except OSError as exc:
        raise TransportError(str(exc) or type(exc).__name__) from exc


def _segment(value: str) -> str:
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
        timeout_s: float = _DEFAULT_TIMEOUT_S,
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
            raise _unreachable(self.base_url, self.timeout_s, exc) from None
        if status >= 300:
            raise ApiAnswerError(method, path, status, _error_text(status, raw))
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise AdminCliError(
                f"{method} {path}: the answer is not JSON; is {self.base_url} the dccgate "
                "admin API? (--url / DCCGATE_ADMIN_URL)"
            ) from None

    def read_for_update(self, path: str) -> tuple[dict[str, Any], int]:
        """The item at `path` without its version, and that version; ({}, 0) if there is
        none yet (version 0 makes the PUT create it only if still absent)."""
        try:
            doc = self.call("GET", path)
        except ApiAnswerError as exc:
            if exc.status == 404:
                return {}, 0
            raise
        doc = _object(doc, path)
        version = doc.pop("version", 0)
        return doc, int(version)


def _error_text(status: int, raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return _printable(doc["error"])
    if status == 404:  # not an API answer: the router knows no such path
        return "no such path (the API's paths: `dccgate admin get /openapi.json`)"
    text = raw.decode("utf-8", "replace").strip()
    return _printable(text[:300]) or "(no message)"


def _unreachable(base_url: str, timeout_s: float, exc: TransportError) -> AdminCliError:
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


def _object(doc: Any, path: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise AdminCliError(f"GET {path}: expected a JSON object, got {type(doc).__name__}")
    return doc


# --- pure helpers: merge and formatting -------------------------------------------------


def merge(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`current` (without its `version`) with every change that is not None applied."""
    out = {k: v for k, v in current.items() if k != "version"}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


def iso_ms(ms: int | None) -> str:
    """Milliseconds since the epoch as UTC ISO 8601, e.g. 2025-01-31T12:00:00.250Z."""
    if ms is None:
        return "-"
    dt = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _printable(text: str) -> str:
    # Values come from other people (names, ADT fields, audit `by`): a terminal escape
    # sequence in one must not reach the operator's terminal.
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def cell(value: object) -> str:
    """One value as table text: numbers without a needless `.0`, lists comma-joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, list):
        return ",".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return _printable(json.dumps(value, separators=(",", ":")))
    return _printable(str(value))


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, empty: str = "(none)"
) -> str:
    """Rows under upper-case headers, columns left-aligned two spaces apart; `empty` if
    there are no rows."""
    if not rows:
        return empty + "\n"
    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = [headers, *text]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def format_fields(pairs: Sequence[tuple[str, object]]) -> str:
    """`NAME  value` lines, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "".join(f"{name.ljust(width)}  {cell(value)}".rstrip() + "\n" for name, value in pairs)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _load_file(name: str, stdin: TextIO) -> dict[str, Any]:
    """A JSON or TOML object from a file (`-`: JSON on stdin); usage errors exit 2."""
    try:
        text = stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise AdminCliError(f"cannot read {name}: {exc.strerror or exc}", exit_code=2) from None
    try:
        doc: Any = tomllib.loads(text) if name.endswith(".toml") else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if name.endswith(".toml") else "JSON (name it *.toml for TOML)"
        raise AdminCliError(f"{name} is not valid {kind}: {exc}", exit_code=2) from None
    if not isinstance(doc, dict):
        raise AdminCliError(f"{name} must hold one JSON object (the body)", exit_code=2)
    return doc


# --- commands ---------------------------------------------------------------------------


@dataclass
class _Ctx:
    client: AdminClient
    out: TextIO
    err: TextIO
    stdin: TextIO
    as_json: bool

    def show(self, doc: Any, render: Callable[[], str]) -> int:
        self.out.write(json.dumps(doc, indent=2) + "\n" if self.as_json else render())
        return 0

    def note(self, message: str) -> None:
        self.err.write(f"{_PROG}: {message}\n")


Handler = Callable[[_Ctx, argparse.Namespace], int]


def _uid(value: str) -> str:
    return value.strip().upper()


def _codes(value: str) -> list[str]:
    return [code.upper() for code in _split(value)]


def _nothing_to_change(flags: str) -> AdminCliError:
    return AdminCliError(f"nothing to change: give {flags}", exit_code=2)


def _update(
    ctx: _Ctx,
    path: str,
    changes: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]],
    version: int | None,
    *,
    clear: Sequence[str] = (),
) -> dict[str, Any]:
    """GET `path`, apply `changes` (or `changes(current)`) and set the `clear` fields to
    null, then PUT with the version read (or `version` if given). An item the changes
    leave as it was is not written: no new version, no audit record."""
    current, read_version = ctx.client.read_for_update(path)
    body = merge(current, changes(current) if callable(changes) else changes)
    body.update(dict.fromkeys(clear))
    if current and body == current and version is None:
        ctx.note(f"no change: {path} stays at version {read_version}")
        return {**current, "version": read_version}
    body["version"] = read_version if version is None else version
    try:
        return _object(ctx.client.call("PUT", path, body=body), path)
    except ApiAnswerError as exc:
        if exc.status == 422 and not current:
            exc.message += f" ({path} did not exist yet: a new one needs every required field)"
        raise


def _put_whole(ctx: _Ctx, path: str, doc: dict[str, Any], version: int | None) -> Any:
    if version is not None:
        doc = {**doc, "version": version}
    return ctx.client.call("PUT", path, body=doc)


# users


def _user_fields(user_id: str, doc: Mapping[str, Any]) -> str:
    return format_fields(
        [
            ("USER ID", user_id),
            ("NAME", doc.get("name")),
            ("ROLES", doc.get("roles")),
            ("VERSION", doc.get("version")),
        ]
    )


def _users_list(ctx: _Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/users")
    users: dict[str, Any] = doc.get("users", {})
    rows = [
        (uid, u.get("name"), u.get("roles"), u.get("version")) for uid, u in sorted(users.items())
    ]
    return ctx.show(
        doc,
        lambda: format_table(("USER ID", "NAME", "ROLES", "VERSION"), rows, empty="no Users"),
    )


def _users_get(ctx: _Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", f"/v1/users/{_segment(args.user_id)}")
    return ctx.show(doc, lambda: _user_fields(args.user_id, doc))


def _users_set(ctx: _Ctx, args: argparse.Namespace) -> int:
    roles = None if args.roles is None else [r.upper() for r in _split(args.roles)]
    if args.name is None and roles is None:
        raise _nothing_to_change("--name and/or --roles")
    path = f"/v1/users/{_segment(args.user_id)}"
    doc = _update(ctx, path, {"name": args.name, "roles": roles}, args.version)
    return ctx.show(doc, lambda: _user_fields(args.user_id, doc))


def _users_delete(ctx: _Ctx, args: argparse.Namespace) -> int:
    headers = {} if args.version is None else {"If-Match": f'"{args.version}"'}
    doc = ctx.client.call("DELETE", f"/v1/users/{_segment(args.user_id)}", headers=headers)
    return ctx.show(doc, lambda: f"deleted User {args.user_id}\n")


# tokens

_TOKEN_HEADERS = ("TOKEN ID", "ROLE", "USER ID", "CREATED (UTC)", "CREATED BY")


def _token_row(t: Mapping[str, Any]) -> tuple[object, ...]:
    return (
        t.get("token_id"),
        t.get("role"),
        t.get("user_id"),
        iso_ms(t.get("created_at_ms")),
        t.get("created_by"),
    )


def _show_issued(ctx: _Ctx, doc: Mapping[str, Any]) -> int:
    whose = f"User {doc.get('user_id')}" if doc.get("user_id") else "an operator"
    revoke = (
        f"tokens revoke {doc.get('user_id')} {doc.get('token_id')}"
        if doc.get("user_id")
        else f"tokens revoke-operator {doc.get('token_id')}"
    )
    ctx.note(
        f"issued token {doc.get('token_id')} for {whose}. WARNING: the secret "
        f"{'in the JSON' if ctx.as_json else 'below'} is shown only this once and stored "
        f"nowhere: keep it now. It cannot be shown again, only revoked (`{revoke}`)."
    )
    ctx.err.flush()
    return ctx.show(doc, lambda: f"{doc.get('token')}\n")


def _tokens_issue(ctx: _Ctx, args: argparse.Namespace) -> int:
    return _show_issued(ctx, ctx.client.call("POST", f"/v1/users/{_segment(args.user_id)}/tokens"))


def _tokens_issue_operator(ctx: _Ctx, args: argparse.Namespace) -> int:
    return _show_issued(ctx, ctx.client.call("POST", "/v1/operators/tokens"))


def _show_tokens(ctx: _Ctx, doc: Mapping[str, Any]) -> int:
    rows = [_token_row(t) for t in doc.get("tokens", [])]
    return ctx.show(doc, lambda: format_table(_TOKEN_HEADERS, rows, empty="no tokens"))


def _tokens_list(ctx: _Ctx, args: argparse.Namespace) -> int:
    return _show_tokens(ctx, ctx.client.call("GET", f"/v1/users/{_segment(args.user_id)}/tokens"))


def _tokens_list_operators(ctx: _Ctx, args: argparse.Namespace) -> int:
    return _show_tokens(ctx, ctx.client.call("GET", "/v1/operators/tokens"))


def _tokens_revoke(ctx: _Ctx, args: argparse.Namespace) -> int:
    path = f"/v1/users/{_segment(args.user_id)}/tokens/{_segment(args.token_id)}"
    doc = ctx.client.call("DELETE", path)
    return ctx.show(doc, lambda: f"revoked token {args.token_id} of User {args.user_id}\n")


def _tokens_revoke_operator(ctx: _Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("DELETE", f"/v1/operators/tokens/{_segment(args.token_id)}")
    return ctx.show(doc, lambda: f"revoked operator token {args.token_id}\n")


# allocations


def _allocation_fields(user_id: str, doc: Mapping[str, Any]) -> str:
    return format_fields(
        [
            ("USER ID", user_id),
            ("RATE/S", doc.get("rate_per_s")),
            ("BURST", doc.get("burst")),
            ("SHADOW", doc.get("shadow")),
            ("VERSION", doc.get("version")),
        ]
    )


def _allocations_get(ctx: _Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", f"/v1/allocations/{_segment(args.user_id)}")
    return ctx.show(doc, lambda: _allocation_fields(args.user_id, doc))


def _allocations_set(ctx: _Ctx, args: argparse.Namespace) -> int:
    changes = {"rate_per_s": args.rate, "burst": args.burst, "shadow": args.shadow}
    if all(v is None for v in changes.values()):
        raise _nothing_to_change("--rate, --burst and/or --shadow/--no-shadow")
    path = f"/v1/allocations/{_segment(args.user_id)}"
    doc = _update(ctx, path, changes, args.version)
    return ctx.show(doc, lambda: _allocation_fields(args.user_id, doc))


# traffic


def _default_allocation(value: Any) -> str:
    if not isinstance(value, dict):
        return "none (a User without an allocation is never throttled)"
    shadow = " (shadow)" if value.get("shadow") else ""
    return f"{cell(value.get('rate_per_s'))}/s, burst {cell(value.get('burst'))}{shadow}"


def _traffic_fields(doc: Mapping[str, Any]) -> str:
    return format_fields(
        [
            ("CAPACITY/S", doc.get("capacity_per_s")),
            ("OPERATING THRESHOLD/S", doc.get("operating_threshold_per_s")),
            ("RESERVED SRVS", doc.get("reserved_srvs")),
            ("RESERVED SHARE", doc.get("reserved_share")),
            ("SHADOW", doc.get("shadow")),
            ("DEFAULT ALLOCATION", _default_allocation(doc.get("default_allocation"))),
            ("VERSION", doc.get("version")),
        ]
    )


def traffic_changes(args: argparse.Namespace, current: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `traffic set` changes, `default_allocation` merged into the current one."""
    changes: dict[str, Any] = {
        "capacity_per_s": args.capacity,
        "operating_threshold_per_s": args.threshold,
        "reserved_srvs": None if args.reserved is None else _split(args.reserved),
        "reserved_share": args.reserved_share,
        "shadow": args.shadow,
    }
    if args.default_rate is not None or args.default_burst is not None:
        base = current.get("default_allocation") or {}
        changes["default_allocation"] = merge(
            base, {"rate_per_s": args.default_rate, "burst": args.default_burst}
        )
    return changes


def _traffic_get(ctx: _Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/traffic")
    return ctx.show(doc, lambda: _traffic_fields(doc))


def _traffic_set(ctx: _Ctx, args: argparse.Namespace) -> int:
    default_given = args.default_rate is not None or args.default_burst is not None
    if args.no_default_allocation and default_given:
        raise AdminCliError(
            "--no-default-allocation and --default-rate/--default-burst contradict: give one",
            exit_code=2,
        )
    flags = (args.capacity, args.threshold, args.reserved, args.reserved_share, args.shadow)
    if all(v is None for v in flags) and not default_given and not args.no_default_allocation:
        raise _nothing_to_change("at least one of the flags of `traffic set --help`")
    clear = ("default_allocation",) if args.no_default_allocation else ()
    doc = _update(
        ctx, "/v1/traffic", lambda current: traffic_changes(args, current), args.version,
        clear=clear,
    )  # fmt: skip
    return ctx.show(doc, lambda: _traffic_fields(doc))


# adt


def _adt_path(scope: str) -> str:
    return "/v1/adt/dcc" if scope.lower() == "dcc" else f"/v1/adt/users/{_segment(_uid(scope))}"


def _adt_text(scope: str, doc: Mapping[str, Any]) -> str:
    head = format_fields(
        [
            ("SCOPE", "DCC-wide" if scope.lower() == "dcc" else f"User {_uid(scope)}"),
            ("SHADOW", doc.get("shadow")),
            ("VERSION", doc.get("version")),
        ]
    )
    thresholds = [
        (t.get("srv"), t.get("window_s"), t.get("max"), t.get("shadow"))
        for t in doc.get("thresholds", [])
    ]
    rules = [
        (
            r.get("srv"),
            r.get("field"),
            r.get("min"),
            r.get("max"),
            r.get("max_days_ahead"),
            r.get("shadow"),
        )
        for r in doc.get("value_rules", [])
    ]
    return (
        head
        + "\nTHRESHOLDS\n"
        + format_table(("SRV", "WINDOW S", "MAX", "SHADOW"), thresholds)
        + "\nVALUE RULES\n"
        + format_table(("SRV", "FIELD", "MIN", "MAX", "MAX DAYS AHEAD", "SHADOW"), rules)
    )


def _adt_get(ctx: _Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", _adt_path(args.scope))
    return ctx.show(doc, lambda: _adt_text(args.scope, doc))


def _adt_set(ctx: _Ctx, args: argparse.Namespace) -> int:
    values = _load_file(args.file, ctx.stdin)
    doc = _put_whole(ctx, _adt_path(args.scope), values, args.version)
    return ctx.show(doc, lambda: _adt_text(args.scope, doc))


# alert exclusions


def _exclusions_text(doc: Mapping[str, Any]) -> str:
    rows = [(code,) for code in doc.get("alert_codes", [])]
    return (
        format_fields([("VERSION", doc.get("version"))])
        + "\n"
        + format_table(("ALERT CODE",), rows, empty="(no alert code is excluded)")
    )


def _exclusions_get(ctx: _Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/alerts/exclusions")
    return ctx.show(doc, lambda: _exclusions_text(doc))


def _exclusions_change(
    ctx: _Ctx, new_codes: Callable[[list[str]], list[str]], version: int | None = None
) -> int:
    def changes(current: dict[str, Any]) -> dict[str, Any]:
        return {"alert_codes": new_codes(list(current.get("alert_codes", [])))}

    doc = _update(ctx, "/v1/alerts/exclusions", changes, version)
    return ctx.show(doc, lambda: _exclusions_text(doc))


def _exclusions_set(ctx: _Ctx, args: argparse.Namespace) -> int:
    codes = _codes(args.codes)
    return _exclusions_change(ctx, lambda _: codes, args.version)


def add_codes(current: list[str], codes: list[str]) -> list[str]:
    """`current` with each of `codes` not yet in it appended, in order."""
    out = list(current)
    for code in codes:
        if code not in out:
            out.append(code)
    return out


def remove_codes(current: list[str], codes: list[str]) -> list[str]:
    """`current` without `codes`; AdminCliError if one of them is not in it."""
    missing = [c for c in codes if c not in current]
    if missing:
        raise AdminCliError(
            f"not in the exclusion list: {', '.join(missing)} (see `exclusions get`)"
        )
    return [c for c in current if c not in codes]


def _exclusions_add(ctx: _Ctx, args: argparse.Namespace) -> int:
    codes = _codes(args.codes)
    return _exclusions_change(ctx, lambda current: add_codes(current, codes))


def _exclusions_remove(ctx: _Ctx, args: argparse.Namespace) -> int:
    codes = _codes(args.codes)
    return _exclusions_change(ctx, lambda current: remove_codes(current, codes))


# storm policy


def _storm_text(doc: Mapping[str, Any]) -> str:
    def row(code: str, p: Mapping[str, Any]) -> tuple[object, ...]:
        return (code, p.get("window_s"), p.get("max_alerts"), p.get("period_s"))

    rows = [row("(default)", doc.get("default") or {})]
    rows += [row(code, p) for code, p in sorted((doc.get("per_code") or {}).items())]
    return (
        format_fields([("VERSION", doc.get("version"))])
        + "\n"
        + format_table(("ALERT CODE", "WINDOW S", "MAX ALERTS", "PERIOD S"), rows)
    )


def _storm_get(ctx: _Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/alerts/storm-policy")
    return ctx.show(doc, lambda: _storm_text(doc))


def _storm_set(ctx: _Ctx, args: argparse.Namespace) -> int:
    policy = _load_file(args.file, ctx.stdin)
    doc = _put_whole(ctx, "/v1/alerts/storm-policy", policy, args.version)
    return ctx.show(doc, lambda: _storm_text(doc))


# quarantine

_QUARANTINE_FIRST = ("request_id", "user_id", "srv", "rule", "reason")


def dict_table(items: Sequence[Mapping[str, Any]], *, empty: str) -> str:
    """Items of a shape not fixed by the API as a table: known columns first, then the
    rest in order of appearance; `*_ms` columns as UTC times."""
    keys = [k for k in _QUARANTINE_FIRST if any(k in i for i in items)]
    for item in items:
        keys += [k for k in item if k not in keys]

    def header(key: str) -> str:
        return (key[:-3] + " (UTC)" if key.endswith("_ms") else key).replace("_", " ").upper()

    def value(item: Mapping[str, Any], key: str) -> object:
        v = item.get(key)
        return iso_ms(v) if key.endswith("_ms") and isinstance(v, int) else v

    rows = [[value(item, k) for k in keys] for item in items]
    return format_table([header(k) for k in keys], rows, empty=empty)


def _quarantine_list(ctx: _Ctx, args: argparse.Namespace) -> int:
    user = None if args.user is None else _uid(args.user)
    doc = ctx.client.call("GET", "/v1/quarantine", query={"user_id": user})
    items = doc.get("items", [])
    return ctx.show(doc, lambda: dict_table(items, empty="nothing is quarantined"))


def _quarantine_decide(decision: str) -> Handler:
    def decide(ctx: _Ctx, args: argparse.Namespace) -> int:
        path = f"/v1/quarantine/{_segment(args.request_id)}/{decision}"
        doc = ctx.client.call("POST", path)
        pairs = [(k.replace("_", " ").upper(), v) for k, v in (doc or {}).items()]
        return ctx.show(doc, lambda: format_fields(pairs) or f"{decision}d {args.request_id}\n")

    return decide


# audit


def _audit(ctx: _Ctx, args: argparse.Namespace) -> int:
    query = {
        "limit": args.limit,
        "key_prefix": args.key_prefix,
        "by": args.by,
        "since_ms": args.since_ms,
        "until_ms": args.until_ms,
    }
    doc = ctx.client.call("GET", "/v1/audit", query=query)
    rows = [
        (iso_ms(r.get("at_ms")), r.get("by"), r.get("action"), r.get("key"), r.get("version"))
        for r in doc.get("records", [])
    ]
    return ctx.show(
        doc,
        lambda: format_table(
            ("TIME (UTC)", "BY", "ACTION", "KEY", "VERSION"), rows, empty="no audit records"
        ),
    )


# escape hatch


def api_path(path: str) -> str:
    """`users` -> `/v1/users`; a path with a leading `/` is taken as it is."""
    return path if path.startswith("/") else "/v1/" + path


def _raw(method: str) -> Handler:
    def call(ctx: _Ctx, args: argparse.Namespace) -> int:
        body: dict[str, Any] | None = None
        if getattr(args, "body_json", None) is not None:
            try:
                body = json.loads(args.body_json)
            except ValueError as exc:
                raise AdminCliError(f"--json is not valid JSON: {exc}", exit_code=2) from None
        elif getattr(args, "file", None) is not None:
            body = _load_file(args.file, ctx.stdin)
        if method == "PUT" and body is None:
            raise AdminCliError("put needs a body: --json '{...}' or --file F", exit_code=2)
        doc = ctx.client.call(method, api_path(args.path), body=body)
        ctx.out.write(json.dumps(doc, indent=2) + "\n")
        return 0

    return call


# --- argument parsing -------------------------------------------------------------------


def _globals(*, json_flag: bool = True, suppress: bool = True) -> argparse.ArgumentParser:
    """The shared options, accepted before and after the sub-command. Below `admin` they
    default to SUPPRESS, so a leaf does not overwrite what was given before it."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--url",
        dest="admin_url",
        metavar="URL",
        default=default(None),
        help=f"the admin API ({URL_ENV}, else {DEFAULT_URL})",
    )
    p.add_argument(
        "--token-env",
        dest="admin_token_env",
        metavar="NAME",
        default=default(TOKEN_ENV),
        help=f"environment variable holding the token ({TOKEN_ENV}); never the token itself",
    )
    if json_flag:
        p.add_argument(
            "--json",
            dest="admin_json",
            action="store_true",
            default=default(False),
            help="print the API's JSON answer instead of a table",
        )
    p.add_argument(
        "--timeout",
        dest="admin_timeout_s",
        type=float,
        metavar="SECONDS",
        default=default(_DEFAULT_TIMEOUT_S),
        help=f"seconds to wait for an answer ({_DEFAULT_TIMEOUT_S:g})",
    )
    return p


def _version(p: argparse.ArgumentParser, what: str = "PUT") -> None:
    p.add_argument(
        "--version",
        type=int,
        metavar="N",
        help=f"{what} only if the item is still at version N (else HTTP 409)",
    )


def _shadow(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--shadow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"shadow mode: {what}; --no-shadow enforces (unchanged if neither)",
    )


def _file(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--file",
        required=True,
        metavar="F",
        help=f"{what}: JSON, or TOML if F ends in .toml; - reads JSON from stdin",
    )


class _Tree:
    """Builds `<resource> <verb>` parsers, each leaf with the shared options."""

    def __init__(self, sub: Any) -> None:
        self.top = sub
        self._parent = _globals()
        self._parent_no_json = _globals(json_flag=False)

    def resource(self, name: str, help_text: str) -> Any:
        p = self.top.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        return p.add_subparsers(dest="admin_verb", required=True, metavar="VERB")

    def leaf(
        self, sub: Any, name: str, handler: Handler, help_text: str, *, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        parent = self._parent if json_flag else self._parent_no_json
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text, parents=[parent], allow_abbrev=False
        )
        p.set_defaults(admin_handler=handler)
        return p


def add_admin_parser(sub: Any) -> argparse.ArgumentParser:  # noqa: PLR0915 - one flat list
    """Add `admin` and its sub-commands to `sub` (the `dccgate` sub-parsers action).

    Every dest is prefixed or specific so none collides with a Settings field, which
    `build_settings` would otherwise read as a flag.
    """
    admin: argparse.ArgumentParser = sub.add_parser(
        "admin",
        help="the admin API at a terminal: Users, tokens, allocations, audit, ...",
        description=(
            "Wrap the admin HTTP API. The token comes from DCCGATE_TOKEN (or --token-env "
            "NAME), never from a flag. `dccgate admin RESOURCE --help` lists the verbs."
        ),
        parents=[_globals(suppress=False)],
        # No abbreviations: `--token SECRET` must be refused, not read as --token-env.
        allow_abbrev=False,
    )
    t = _Tree(admin.add_subparsers(dest="admin_resource", required=True, metavar="RESOURCE"))

    users = t.resource("users", "DCC Users")
    t.leaf(users, "list", _users_list, "list Users (a User token sees itself)")
    p = t.leaf(users, "get", _users_get, "show a User")
    p.add_argument("user_id", type=_uid, metavar="USER_ID")
    p = t.leaf(users, "set", _users_set, "create a User or change the fields given")
    p.add_argument("user_id", type=_uid, metavar="USER_ID")
    p.add_argument("--name", help="the User's name")
    p.add_argument("--roles", metavar="IS,GS", help="comma-separated roles: IS ES GS ED GT RSA OU")
    _version(p)
    p = t.leaf(users, "delete", _users_delete, "delete a User")
    p.add_argument("user_id", type=_uid, metavar="USER_ID")
    _version(p, "delete")

    tokens = t.resource("tokens", "bearer tokens of Users and operators")
    p = t.leaf(tokens, "issue", _tokens_issue, "issue a token bound to a User (shown once)")
    p.add_argument("user_id", type=_uid, metavar="USER_ID")
    p = t.leaf(tokens, "list", _tokens_list, "list a User's tokens")
    p.add_argument("user_id", type=_uid, metavar="USER_ID")
    p = t.leaf(tokens, "revoke", _tokens_revoke, "revoke a User's token")
    p.add_argument("user_id", type=_uid, metavar="USER_ID")
    p.add_argument("token_id", metavar="TOKEN_ID")
    t.leaf(tokens, "issue-operator", _tokens_issue_operator, "issue an operator token (shown once)")
    t.leaf(tokens, "list-operators", _tokens_list_operators, "list operator tokens")
    p = t.leaf(tokens, "revoke-operator", _tokens_revoke_operator, "revoke an operator token")
    p.add_argument("token_id", metavar="TOKEN_ID")

    alloc = t.resource("allocations", "a User's capacity allocation (SECMP0067)")
    p = t.leaf(alloc, "get", _allocations_get, "show a User's allocation")
    p.add_argument("user_id", type=_uid, metavar="USER_ID")
    p = t.leaf(alloc, "set", _allocations_set, "set the fields given of a User's allocation")
    p.add_argument("user_id", type=_uid, metavar="USER_ID")
    p.add_argument("--rate", type=float, metavar="PER_S", help="requests per second")
    p.add_argument("--burst", type=int, metavar="N", help="requests allowed at once")
    _shadow(p, "count throttling decisions for this User, throttle nothing")
    _version(p)

    traffic = t.resource("traffic", "system traffic management (SECMP0067)")
    t.leaf(traffic, "get", _traffic_get, "show traffic management")
    p = t.leaf(traffic, "set", _traffic_set, "set the fields given of traffic management")
    p.add_argument("--capacity", type=float, metavar="PER_S", help="capacity, requests per s")
    p.add_argument("--threshold", type=float, metavar="PER_S", help="operating threshold per s")
    p.add_argument(
        "--reserved", metavar="2.2,7.1", help="reserved Service Reference Variants ('' for none)"
    )
    p.add_argument("--reserved-share", type=float, metavar="S", help="share kept for them, 0-1")
    _shadow(p, "compute throttling, throttle nothing")
    p.add_argument("--default-rate", type=float, metavar="PER_S", help="default allocation rate")
    p.add_argument("--default-burst", type=int, metavar="N", help="default allocation burst")
    p.add_argument(
        "--no-default-allocation",
        action="store_true",
        help="remove the default allocation (Users without one are never throttled)",
    )
    _version(p)

    adt = t.resource("adt", "Anomaly Detection Threshold values (a User's, or dcc)")
    p = t.leaf(adt, "get", _adt_get, "show ADT values")
    p.add_argument("scope", metavar="USER_ID|dcc")
    p = t.leaf(adt, "set", _adt_set, "replace ADT values from a file")
    p.add_argument("scope", metavar="USER_ID|dcc")
    _file(p, "the AdtValues body (thresholds, value_rules, shadow)")
    _version(p)

    excl = t.resource("exclusions", "alert codes never storm-throttled (SECMP0062)")
    t.leaf(excl, "get", _exclusions_get, "show the exclusion list")
    p = t.leaf(excl, "set", _exclusions_set, "replace the exclusion list")
    p.add_argument("codes", metavar="CODE[,CODE...]")
    _version(p)
    p = t.leaf(excl, "add", _exclusions_add, "add alert codes to the list")
    p.add_argument("codes", metavar="CODE[,CODE...]")
    p = t.leaf(excl, "remove", _exclusions_remove, "remove alert codes from the list")
    p.add_argument("codes", metavar="CODE[,CODE...]")

    storm = t.resource("storm-policy", "alert-storm parameters")
    t.leaf(storm, "get", _storm_get, "show the storm policy")
    p = t.leaf(storm, "set", _storm_set, "replace the storm policy from a file")
    _file(p, "the StormPolicy body (default, per_code)")
    _version(p)

    quarantine = t.resource("quarantine", "requests held by anomaly detection")
    p = t.leaf(quarantine, "list", _quarantine_list, "list quarantined requests")
    p.add_argument("--user", metavar="USER_ID", help="only this User's")
    p = t.leaf(quarantine, "release", _quarantine_decide("release"), "release for processing")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p = t.leaf(quarantine, "delete", _quarantine_decide("delete"), "delete a quarantined request")
    p.add_argument("request_id", metavar="REQUEST_ID")

    p = t.leaf(t.top, "audit", _audit, "the audit trail, newest first")
    p.add_argument("--limit", type=int, metavar="N", help="at most N records (100; up to 10000)")
    p.add_argument("--key-prefix", dest="key_prefix", metavar="P", help="e.g. allocations/")
    p.add_argument("--by", metavar="WHO", help="e.g. operator:bootstrap")
    p.add_argument("--since-ms", dest="since_ms", type=int, metavar="MS", help="from (epoch ms)")
    p.add_argument("--until-ms", dest="until_ms", type=int, metavar="MS", help="to (epoch ms)")

    p = t.leaf(t.top, "get", _raw("GET"), "GET any path; prints JSON")
    p.add_argument("path", metavar="PATH")
    for verb in ("put", "post"):
        p = t.leaf(t.top, verb, _raw(verb.upper()), f"{verb.upper()} any path; prints JSON",
                   json_flag=False)  # fmt: skip
        p.add_argument("path", metavar="PATH")
        body = p.add_mutually_exclusive_group(required=verb == "put")
        body.add_argument("--json", dest="body_json", metavar="'{...}'", help="the JSON body")
        body.add_argument("--file", metavar="F", help="the body: JSON, or TOML if *.toml")
    p = t.leaf(t.top, "delete", _raw("DELETE"), "DELETE any path; prints JSON")
    p.add_argument("path", metavar="PATH")
    return admin


# --- entry point ------------------------------------------------------------------------


def _check_url(url: str, err: TextIO) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AdminCliError(
            f"--url / {URL_ENV} must look like http://HOST:PORT, got {url!r}", exit_code=2
        )
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        err.write(f"{_PROG}: warning: the token goes to {parts.hostname} over plain HTTP\n")
    return url


def _token(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    name = getattr(args, "admin_token_env", TOKEN_ENV)
    if name.startswith("dcg_") or not _ENV_NAME.fullmatch(name):
        # Not echoed: it may be the secret itself, given where its name belongs.
        raise AdminCliError(
            "--token-env takes the NAME of an environment variable (like DCCGATE_TOKEN), "
            "never the token itself",
            exit_code=2,
        )
    token = environ.get(name, "").strip()
    if not token:
        hint = (
            " (with `dccgate run`, the first operator token is DCCGATE_ADMIN_TOKEN: "
            "--token-env DCCGATE_ADMIN_TOKEN)"
            if name == TOKEN_ENV
            else ""
        )
        raise AdminCliError(f"no token: set {name} to an operator or User token{hint}", exit_code=2)
    return token


def run_admin(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the `dccgate admin` sub-command parsed into `args`; returns the exit code.

    environ, transport, stdout, stderr, stdin: defaults are the process's own (tests
    inject theirs).
    """
    env = os.environ if environ is None else environ
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        url = _check_url(args.admin_url or env.get(URL_ENV) or DEFAULT_URL, err)
        timeout_s = float(args.admin_timeout_s)
        if not timeout_s > 0:
            raise AdminCliError("--timeout must be a positive number of seconds", exit_code=2)
        client = AdminClient(
            url,
            _token(args, env),
            timeout_s=timeout_s,
            transport=transport or urllib_transport,
        )
        ctx = _Ctx(
            client=client,
            out=out,
            err=err,
            stdin=sys.stdin if stdin is None else stdin,
            as_json=bool(getattr(args, "admin_json", False)),
        )
        handler: Handler = args.admin_handler
        return handler(ctx, args)
    except ApiAnswerError as exc:
        where = f" (the token in {args.admin_token_env})" if exc.status == 401 else ""
        err.write(f"{_PROG}: {exc.message}{where}\n")
        return exc.exit_code
    except AdminCliError as exc:
        err.write(f"{_PROG}: {exc.message}\n")
        return exc.exit_code
