"""Hostile records for the gateway's two inputs, as a broken or compromised sender writes them
(issue 12): a seeded generator of whole Service Requests and device alerts, written with
tests/integration/hostile_json.py, and the configuration the fuzz run puts in force.

Every generated record carries what an answer to it could be matched by: a Service
Request's `tag` is its `request_id` exactly as the router would echo it (unique across a
run), or None when no answer is possible (no string request_id to echo); an alert's `tag` is
its `raised_at_ms` (unique), or None when it cannot be decoded. `expect` is the dead-letter
kind the record must get, where that is certain whatever the gateway's other decisions are
(a tombstone, or the first hazard `broker.wire_guard.json_problem` must report), found by
`hostile_json.expected_kind`: a slow reference, not the guard's code.

Reproducible: one seed gives the same records (only `Generator.now`, the base of the dates
in bodies and of the ADT exception window, moves with the clock).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.integration.hostile_json import (
    CONTROL_TEXT,
    DIGITS_5000,
    EXTREME_NUMBERS,
    FINE_ESCAPES,
    FORGED_HEADERS,
    INVALID_UTF8,
    LONE_SURROGATES,
    NOT_NUMBERS,
    NUMBER_STRINGS,
    ODD_HEADERS,
    RAW_CONTROL,
    SEQ_HEADER,
    Json,
    Obj,
    Raw,
    Style,
    dumps,
    expected_kind,
    nested,
)
from throttling import normalize_alert_code
from workers.duis import load_catalogue

# --- the world the generated records live in -------------------------------------------------

USER_MAIN = "90-B3-D5-1F-30-01-00-00"
"""Every rule kind configured for it, an allocation it does not reach."""
USER_NOISY = "90-B3-D5-1F-30-02-00-00"
"""A small allocation: throttled (T1) once the system is busy."""
USER_SHADOW = "90-B3-D5-1F-30-03-00-00"
"""Shadow allocation and shadow ADT values: counted, never held back."""
USER_FW = "90-B3-D5-1F-30-04-00-00"
"""Sends the 11.3 Activate Firmware requests the MP102 rule watches."""
USER_GHOST = "90-B3-D5-1F-30-0F-00-00"
"""Never registered (E1)."""
ROLES = ["IS", "ES", "GS", "ED", "GT", "RSA", "OU"]
REGISTERED = {
    USER_MAIN: ROLES,
    USER_NOISY: ["IS", "GS", "ED"],
    USER_SHADOW: ROLES,
    USER_FW: ["IS", "GS"],
}
CATALOGUE = load_catalogue()
SRVS = sorted(CATALOGUE)


def device(i: int) -> str:
    """The i-th device ID (EUI-64)."""
    octets = (0x00, 0xDB, (i >> 24) & 0xFF, (i >> 16) & 0xFF, 0, 0, (i >> 8) & 0xFF, i & 0xFF)
    return "-".join(f"{o:02X}" for o in octets)


FW_DEVICES = [device(0x7700 + i) for i in range(8)]
"""The devices whose firmware is activated (11.3) before their outage alerts arrive."""

ALERT_CODES = ["8F1C", "8F1D", "8F1F", "8F35", "8F36", "8F3F", "8F43", "8F72", "8F73", "AD1",
               "N24", "0x8f1d", "8f1c", " 8F1C ", "ZZZZ"]  # fmt: skip


def gateway_config(now: dt.datetime) -> list[tuple[str, object]]:
    """(admin API path, body) of every rule kind, as the fuzz run configures them: value
    rules on every SRV, thresholds with an exception window, traffic management with
    allocations (one shadow), the storm policy and exclusions, regional capacity, MP102."""
    iso = "%Y-%m-%dT%H:%M:%SZ"
    value_rules: list[dict[str, object]] = []
    for srv in SRVS:
        value_rules.append({"srv": srv, "field": "amount", "min": 0, "max": 500})
        value_rules.append({"srv": srv, "field": "activation_datetime", "max_days_ahead": 30})
    value_rules += [
        {"srv": srv, "field": "price", "min": 0, "max": 100, "shadow": True} for srv in SRVS[:20]
    ]
    main_adt = {
        "thresholds": [
            {"srv": "*", "window_s": 3600, "max": 300},
            {"srv": "7.2", "window_s": 60, "max": 5},
            {"srv": "4.1.1", "window_s": 3600, "max": 20, "shadow": True},
        ],
        "value_rules": value_rules,
        "exceptions": [
            {
                "id": "fuzz-campaign",
                "start": (now - dt.timedelta(hours=1)).strftime(iso),
                "end": (now + dt.timedelta(hours=1)).strftime(iso),
                "thresholds": {f"user:{USER_MAIN}:7.2:60": 8},
                "reason": "a campaign during the fuzz run",
            }
        ],
    }
    shadow_adt = {
        "shadow": True,
        "thresholds": [{"srv": "*", "window_s": 3600, "max": 10}],
        "value_rules": [{"srv": srv, "field": "amount", "min": 0, "max": 5} for srv in SRVS],
    }
    dcc_adt = {
        "thresholds": [
            {"srv": "1.1.1", "window_s": 3600, "max": 3},
            {"srv": "6.2.1", "window_s": 3600, "max": 10},
        ],
        "value_rules": [{"srv": srv, "field": "credit", "min": -1000, "max": 1000} for srv in SRVS],
    }
    items: list[tuple[str, object]] = [
        (f"/v1/users/{user}", {"name": f"fuzz {user}", "roles": roles})
        for user, roles in REGISTERED.items()
    ]
    items += [
        ("/v1/traffic", {
            "capacity_per_s": 100_000, "operating_threshold_per_s": 1,
            "reserved_srvs": ["2.2", "2.5", "7.1", "8.1.1"], "reserved_share": 0.1,
            "default_allocation": {"rate_per_s": 50, "burst": 20},
        }),
        (f"/v1/allocations/{USER_MAIN}", {"rate_per_s": 100_000, "burst": 100_000}),
        (f"/v1/allocations/{USER_NOISY}", {"rate_per_s": 5, "burst": 5}),
        (f"/v1/allocations/{USER_SHADOW}", {"rate_per_s": 5, "burst": 5, "shadow": True}),
        (f"/v1/allocations/{USER_FW}", {"rate_per_s": 1000, "burst": 1000}),
        (f"/v1/adt/users/{USER_MAIN}", main_adt),
        (f"/v1/adt/users/{USER_SHADOW}", shadow_adt),
        ("/v1/adt/dcc", dcc_adt),
        ("/v1/alerts/exclusions", {"alert_codes": ["8F3F", "8F35", "8F36"]}),
        ("/v1/alerts/storm-policy", {
            "default": {"window_s": 1, "max_alerts": 3, "period_s": 1},
            "per_code": {"8F1F": {"window_s": 2, "max_alerts": 1, "period_s": 1}},
        }),
        ("/v1/alerts/regional-capacity", {
            "regions": {
                "north": {"rate_per_s": 300, "burst": 30},
                "central": {"rate_per_s": 100_000, "burst": 100_000},
            },
            "unknown_region": "north",
            "high_priority_codes": ["AD1", "8F3F"],
        }),
        ("/v1/alerts/mp102", {
            "enabled": True, "watch_s": 600, "hold_s": 2, "outage_codes": ["AD1"],
            "restore_codes": ["8F35", "8F36"],
        }),
    ]  # fmt: skip
    return items


# --- records -------------------------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    """One generated record, and (once sent) where it landed."""

    index: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int | None
    tag: str | int | None
    shape: list[str]
    expect: str | None = None
    recipients: list[str] | None = None
    """Alerts: the recipients as decoded (None: not a list of strings)."""
    storm_key: tuple[str, str] | None = None
    """Alerts: (device ID, canonical alert code), when both are strings."""
    partition: int = -1
    offset: int = -1

    def describe(self, limit: int = 300) -> str:
        """The record for a failure message: index, shape, key, headers, value (cut)."""
        value = self.value
        shown = "None (tombstone)" if value is None else repr(value[:limit])
        if value is not None and len(value) > limit:
            shown += f"... ({len(value)} bytes)"
        key = None if self.key is None else self.key[:80]
        headers = [(k[:40], None if v is None else v[:40]) for k, v in self.headers]
        return (
            f"#{self.index} at partition {self.partition} offset {self.offset}, shapes "
            f"{self.shape}, key {key!r}, headers {headers}, value {shown}"
        )


class _Unset:
    pass


_UNSET = _Unset()


@dataclass(slots=True)
class _Draft:
    members: Obj
    key: bytes | None
    tag: str | int | None
    serial: int
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int | None = None
    shape: list[str] = field(default_factory=list)
    whole: bytes | _Unset | None = _UNSET  # the value as is, instead of `members`
    style: Style = field(default_factory=Style)
    recipients: list[str] | None = None
    storm_key: tuple[str, str] | None = None

    def put(self, name: str, value: Json) -> None:
        """Set member `name` (replacing the first of that name) and keep what answers and
        outputs are matched by in step with it."""
        self.members.set(name, value)
        self.track(name, value)

    def track(self, name: str, value: Json) -> None:
        if name == "request_id":
            self.tag = value if isinstance(value, str) else None
        elif name == "raised_at_ms":
            # The generator's own number, or one no decoder takes as an int >= 0.
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                self.tag = value
            else:
                self.tag = None
        elif name == "recipients":
            if isinstance(value, list) and all(isinstance(r, str) for r in value):
                self.recipients = [r for r in value if isinstance(r, str)]
            else:
                self.recipients = None
        elif name in ("device_id", "alert_code"):
            dev, code = self.members.get("device_id"), self.members.get("alert_code")
            if isinstance(dev, str) and isinstance(code, str):
                self.storm_key = (dev, normalize_alert_code(code))
            else:
                self.storm_key = None

    def names(self) -> list[str]:
        return [k for k, _ in self.members.pairs if isinstance(k, str)]

    def body(self) -> Obj | None:
        """The body as an `Obj` (converted in place), or None when it is not an object."""
        body = self.members.get("body")
        if isinstance(body, dict):
            body = Obj(list(body.items()))
            self.members.set("body", body)
        return body if isinstance(body, Obj) else None


_Mutation = Callable[[random.Random, _Draft, "Generator"], None]


class Generator:
    """Seeded hostile Service Requests and device alerts (issue 12's shapes, and more).

    One instance makes one run: request_ids, COUNTERs and `raised_at_ms` are unique across
    it, and the number of 1 MB records is capped (`big_records`).
    """

    def __init__(self, seed: int, *, big_records: int = 10) -> None:
        self.rng = random.Random(seed)
        self.serial = 0
        self.finished = 0
        self.big_left = big_records
        self.empty_rid_used = False
        self.now = dt.datetime.now(dt.UTC)

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    # --- Service Requests --------------------------------------------------------------------

    def request(
        self,
        *,
        user: str | None = None,
        srv: str | None = None,
        cv: int | None = None,
        role: str | None = None,
        target: str | None = None,
        body: dict[str, Json] | None = None,
    ) -> _Draft:
        """A well-formed Service Request draft (random where not given); COUNTERs rise."""
        rng = self.rng
        n = self.next_serial()
        user = (
            user
            or rng.choices(
                [USER_MAIN, USER_NOISY, USER_SHADOW, USER_GHOST], weights=[80, 10, 8, 2]
            )[0]
        )
        srv = srv or rng.choice(SRVS)
        entry = CATALOGUE[srv]
        if cv is None:
            cv = rng.choice(sorted(entry.allowed_command_variants))
        if role is None:
            role = rng.choice(sorted(entry.roles) or ROLES)
        target = target or device(rng.randrange(200))
        rid = f"{user}:{target}:{1_000_000 + n}"
        members = Obj([
            ("request_id", rid), ("user_role", role), ("srv", srv), ("command_variant", cv),
            ("body", self._body() if body is None else body),
        ])  # fmt: skip
        if rng.random() < 0.5:
            members.pairs.append(("region", rng.choice(["north", "central", "south", None])))
        if rng.random() < 0.2:
            members.pairs.append(("xml", "<sr><a b='1'>x</a></sr>"))
        if rng.random() < 0.5:
            rng.shuffle(members.pairs)
        draft = _Draft(members, user.encode(), rid, n)
        draft.shape.append(f"{user[-8:]} srv {srv} cv {cv} role {role}")
        return draft

    def _body(self) -> dict[str, Json]:
        rng = self.rng
        body: dict[str, Json] = {}
        if rng.random() < 0.5:
            body["amount"] = rng.choice([0, 1, 120, 499.5, 500, 501, -1, 9000, 0.25, 250])
        if rng.random() < 0.2:
            days = rng.choice([1, 3, 29, 31, 90, -5])
            body["activation_datetime"] = (self.now + dt.timedelta(days=days)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        if rng.random() < 0.1:
            body["activation_datetime"] = rng.choice(
                ["next tuesday", "2025-13-45", "", "9999-12-31T23:59:59-23:59", 20250601]
            )
        if rng.random() < 0.2:
            body["price"] = rng.choice([1.5, 150, -3])
        if rng.random() < 0.2:
            body["credit"] = rng.choice([0, 999, 1001, -1001])
        if rng.random() < 0.2:
            body["schedule"] = [{"t": i, "v": [i, str(i)]} for i in range(rng.randrange(4))]
        if rng.random() < 0.1:
            body["currency"] = "GBP"
        return body

    def srv_matrix(self) -> list[Sent]:
        """Every SRV of the catalogue with every command variant 1 to 8 (eligible roles),
        a fifth of them with a harmless change (escapes, headers, extra fields...)."""
        out = []
        for srv in SRVS:
            for cv in range(1, 9):
                draft = self.request(srv=srv, cv=cv)
                if self.rng.random() < 0.2:
                    self.rng.choice(_HARMLESS)(self.rng, draft, self)
                out.append(self.finish(draft))
        return out

    def firmware_activations(self) -> list[Sent]:
        """11.3 Activate Firmware (CV 5, to the device) for each of FW_DEVICES."""
        return [
            self.finish(self.request(user=USER_FW, srv="11.3", cv=5, role="IS", target=d, body={}))
            for d in FW_DEVICES
        ]

    def hostile_request(self) -> Sent:
        """A Service Request with one to three hostile changes."""
        rng = self.rng
        draft = self.request()
        k = rng.choices([1, 2, 3], weights=[60, 30, 10])[0]
        for mutation in _in_order(rng.choices(_REQUEST_MUTATIONS, weights=_REQUEST_WEIGHTS, k=k)):
            mutation(rng, draft, self)
        return self.finish(draft)

    # --- device alerts ------------------------------------------------------------------------

    def alert(
        self,
        *,
        dev: str | None = None,
        code: str | None = None,
        recipients: list[str] | None = None,
        region: str | _Unset | None = _UNSET,
    ) -> _Draft:
        """A well-formed device alert draft; `raised_at_ms` is unique (the tag)."""
        rng = self.rng
        n = self.next_serial()
        dev = dev or device(rng.randrange(24))
        code = code or rng.choice(ALERT_CODES)
        if recipients is None:
            pool = [USER_MAIN, USER_NOISY, USER_SHADOW, USER_FW]
            recipients = rng.sample(pool, rng.randint(1, 3))
        raised = 1_700_000_000_000 + n
        reg = (
            rng.choice(["north", "central", "south", None])
            if isinstance(region, _Unset)
            else region
        )
        members = Obj([
            ("device_id", dev), ("alert_code", code), ("recipients", list(recipients)),
            ("region", reg), ("raised_at_ms", raised), ("payload", f"payload {n}"),
        ])  # fmt: skip
        if rng.random() < 0.3:
            members.drop("region")
        if rng.random() < 0.5:
            rng.shuffle(members.pairs)
        draft = _Draft(members, dev.encode(), raised, n)
        draft.recipients = list(recipients)
        draft.storm_key = (dev, normalize_alert_code(code))
        draft.shape.append(f"alert {dev[-5:]} {code!r}")
        return draft

    def plain_alert(self) -> Sent:
        """A well-formed alert (storms come from these: few devices, few codes)."""
        draft = self.alert()
        if self.rng.random() < 0.2:
            self.rng.choice(_HARMLESS)(self.rng, draft, self)
        return self.finish(draft)

    def hostile_alert(self) -> Sent:
        """A device alert with one to three hostile changes."""
        rng = self.rng
        draft = self.alert()
        k = rng.choices([1, 2, 3], weights=[60, 30, 10])[0]
        for mutation in _in_order(rng.choices(_ALERT_MUTATIONS, weights=_ALERT_WEIGHTS, k=k)):
            mutation(rng, draft, self)
        return self.finish(draft)

    def outage_scenario(self) -> list[Sent]:
        """Per firmware device: a power outage alert (AD1), then for half of them the
        supply-restored alert (8F35) at once (MP102: the outage was a false alarm)."""
        out: list[Sent] = []
        for i, dev in enumerate(FW_DEVICES):
            out.append(self.finish(
                self.alert(dev=dev, code="AD1", recipients=[USER_FW], region="south")
            ))  # fmt: skip
            if i % 2 == 0:
                out.append(self.finish(
                    self.alert(dev=dev, code="8F35", recipients=[USER_FW], region="south")
                ))  # fmt: skip
        return out

    # --- both ---------------------------------------------------------------------------------

    def finish(self, draft: _Draft, *, seq_header: bool | None = None) -> Sent:
        """Write the draft out as a record."""
        self.finished += 1
        index = self.finished
        if isinstance(draft.whole, _Unset):
            value: bytes | None = dumps(draft.members, draft.style)
        else:
            value = draft.whole
        headers = list(draft.headers)
        if seq_header if seq_header is not None else self.rng.random() < 0.8:
            headers.append((SEQ_HEADER, str(index).encode()))
        return Sent(
            index=index,
            key=draft.key,
            value=value,
            headers=headers,
            timestamp_ms=draft.timestamp_ms,
            tag=draft.tag,
            shape=draft.shape,
            expect=expected_kind(value),
            recipients=draft.recipients,
            storm_key=draft.storm_key,
        )


# --- what can be done to a record ------------------------------------------------------------

# Members no placement below overwrites: the alert's tag must stay a number nothing else has.
_KEEP = ("raised_at_ms",)


def _unique(d: _Draft, name: str, value: Json) -> Json:
    # A string put where the request_id goes is made unique: answers are matched by it.
    return f"{value}#{d.serial}" if name == "request_id" and isinstance(value, str) else value


def _has_big(d: _Draft) -> bool:
    return any(shape.startswith("1 MB") for shape in d.shape)


def _anywhere(rng: random.Random, d: _Draft, value: Json, what: str) -> None:
    """Put `value` in a random place: a known field, a body field, an unknown field, a list,
    or (a JSON string) a key."""
    where = rng.choice(["field", "body", "unknown", "list", "key"])
    body = d.body() if where == "body" else None
    if where == "field":
        name = rng.choice([n for n in d.names() if n not in _KEEP])
        d.put(name, _unique(d, name, value))
    elif body is not None:
        body.set(rng.choice(["amount", "price", "note", "activation_datetime", "credit"]), value)
    elif where == "list":
        big = (
            isinstance(value, Raw | str)
            and len(value if isinstance(value, str) else value.text) > 10_000
        )
        d.put(
            f"x_list_{rng.randrange(99)}", [1, "a", value] if big else [1, "a", value, {"k": value}]
        )
    elif where == "key" and isinstance(value, Raw) and value.text.startswith(b'"'):
        d.members.pairs.append((value, 1))
    else:
        where = "unknown"
        d.put(rng.choice(["unknown", "x_extra", "_meta", "payload_ext"]), value)
    d.shape.append(f"{what} in {where}")


def _invalid_utf8(rng: random.Random, d: _Draft, g: Generator) -> None:
    text = rng.choice(INVALID_UTF8)
    if rng.random() < 0.2:
        d.key = rng.choice([b"\xff", b"U\xfe"])  # a key is not JSON: only the value counts
        d.shape.append("invalid UTF-8 key")
        return
    _anywhere(rng, d, Raw(text), f"invalid UTF-8 {text!r}")


def _deep(rng: random.Random, d: _Draft, g: Generator) -> None:
    depth = rng.choice([33, 64, 257, 1000, 1000, 5000, 100_000])
    if _has_big(d):
        depth = min(depth, 1000)  # the record stays below a broker's 1 MB limit
    kind = rng.choice(["array", "object", "mixed"])
    text = nested(depth, kind=kind)
    if rng.random() < 0.15:
        text = b"[" * depth  # never closed
    _anywhere(rng, d, Raw(text), f"nesting {depth} deep ({kind})")


def _shallow(rng: random.Random, d: _Draft, g: Generator) -> None:
    # Brackets in a string are text, however many: not nesting.
    n = rng.choice([40, 1000, 50_000])
    if _has_big(d):
        n = min(n, 1000)
    _anywhere(rng, d, "[" * n + "{" * n, f"{n} brackets in a string")
    if rng.random() < 0.5:
        _anywhere(rng, d, Raw(nested(rng.choice([5, 20, 29]))), "shallow nesting")


def _duplicate(rng: random.Random, d: _Draft, g: Generator) -> None:
    names = d.names()
    choice = rng.choice(["top", "escaped", "body", "nested", "unicode"])
    if choice == "top" and names:
        name = rng.choice(names)
        d.members.pairs.append((name, "4.1.1" if name == "srv" else d.members.get(name)))
    elif choice == "escaped" and names:
        name = rng.choice(names)
        escaped = f"\\u{ord(name[0]):04x}{name[1:]}"
        d.members.pairs.append((Raw(json.dumps(escaped).encode().replace(b"\\\\", b"\\")),
                                rng.choice(["7.2", 1])))  # fmt: skip
    elif choice == "body":
        d.put("body", Obj([("amount", 1), ("price", 2), ("amount", 9000)]))
    elif choice == "nested":
        d.put("x_nested", [1, {"a": [Obj([("k", 1), ("k", 2)])]}])
    else:
        d.put("x_uni", Obj([("\u00e9", 1), (Raw(b'"\\u00e9"'), 2)]))
    d.shape.append(f"duplicate key ({choice})")


def _extreme_number(rng: random.Random, d: _Draft, g: Generator) -> None:
    if rng.random() < 0.2:
        text = rng.choice(NOT_NUMBERS)
        _anywhere(rng, d, Raw(text), f"not a number {text[:12]!r}")
        return
    text = rng.choice(EXTREME_NUMBERS)
    where = rng.random()
    body = d.body() if where < 0.5 else None
    if body is not None:
        body.set(rng.choice(["amount", "credit", "price"]), Raw(text))
        d.shape.append(f"body number {text[:12]!r}")
    elif where < 0.7 and ("command_variant" in d.names() or "throttled_alert_count" in d.names()):
        name = "command_variant" if "command_variant" in d.names() else "throttled_alert_count"
        d.put(name, Raw(text))
        d.shape.append(f"{name} {text[:12]!r}")
    else:
        _anywhere(rng, d, rng.choice([Raw(text), rng.choice(NUMBER_STRINGS)]), "number")


def _big(rng: random.Random, d: _Draft, g: Generator) -> None:
    if g.big_left <= 0 or _has_big(d) or len(dumps(d.members)) > 20_000:
        _control(rng, d, g)  # one big value per record: it stays below a broker's 1 MB limit
        return
    g.big_left -= 1
    # 1 MB: with the other shapes' big key and headers still below Apache Kafka's default
    # message.max.bytes (1,048,588), so `--broker kafka` takes every record too.
    size = 1_000_000
    choice = rng.choice(["body", "xml", "unknown", "payload", "array"])
    blob: Json = Raw(b"[" + b"7," * (size // 2 - 1) + b"7]") if choice == "array" else "x" * size
    if choice == "body":
        d.put("body", {"blob": blob, "amount": 1})
    elif choice == "xml" and "user_role" in d.names():
        d.put("xml", blob)
    elif choice == "payload" and "payload" in d.names():
        # 400 KB: a storm's snapshot holds its latest alert and a copy of it, and above 1 MB
        # Apache Kafka refuses the snapshot (test_hostile_records.py has that bug's test).
        d.put("payload", "p" * 400_000)
    else:
        choice = "unknown"
        d.put("x_big", blob)
    d.shape.append(f"1 MB {choice}")


def _control(rng: random.Random, d: _Draft, g: Generator) -> None:
    # NUL and control characters in every string of the record (valid JSON escapes); in
    # every key too, but for the top level's (a tainted field name is an unknown field).
    extra = rng.choice(CONTROL_TEXT)

    def taint(value: Json) -> Json:
        if isinstance(value, str):
            return value + extra
        if isinstance(value, list):
            return [taint(v) for v in value]
        if isinstance(value, dict):
            return {k + extra: taint(v) for k, v in value.items()}
        if isinstance(value, Obj):
            return Obj([(k + extra if isinstance(k, str) else k, taint(v)) for k, v in value.pairs])
        return value

    pairs = list(d.members.pairs)
    d.members = Obj([])
    for k, v in pairs:
        if isinstance(k, str):
            d.put(k, taint(v))
        else:
            d.members.pairs.append((k, taint(v)))
    if rng.random() < 0.3:
        d.members.pairs.append(("\x00" + extra, "\x00"))
    d.shape.append(f"control characters {extra!r} in every string")


def _raw_control(rng: random.Random, d: _Draft, g: Generator) -> None:
    text = rng.choice(RAW_CONTROL)
    _anywhere(rng, d, Raw(text), f"raw control character {text!r}")


def _surrogate(rng: random.Random, d: _Draft, g: Generator) -> None:
    if rng.random() < 0.35:
        text, decoded = rng.choice(FINE_ESCAPES)
        d.put("x_escape", Raw(text))
        d.shape.append(f"fine escape {text!r} ({decoded!r})")
        return
    text = rng.choice(LONE_SURROGATES)
    _anywhere(rng, d, Raw(text), f"lone surrogate {text!r}")


_ARABIC_INDIC_DIGITS = "".join(chr(0x0660 + i) for i in range(10))
_EXTRA_NAMES = ["", "__proto__", "constructor", "\x00", "k" * 10_000, "request_id ", "SRV",
                "body2", "\u00e9", "\U0001f600", "throttled_alert_count"]  # fmt: skip


def _odd_request_id(rng: random.Random, d: _Draft, g: Generator) -> None:
    if "request_id" not in d.names():
        return
    n = g.next_serial()
    user = USER_MAIN if d.key is None else d.key.decode(errors="replace")
    target = device(n % 200)
    arabic = str(n).translate(str.maketrans("0123456789", _ARABIC_INDIC_DIGITS))
    wide_user = user.replace("-", "\uff0d")
    variants: list[str] = [
        f"{user.lower()}:{target}:{n}",
        f"{user}:{target}:0{n}",
        f"{user}:{target}:{2**64 + n}",
        f"{user}:{device(0x10000 + n)}:{2**64 - 1}",  # the largest COUNTER: valid
        f"{user}:{target}:-{n}",
        f"{user}:{target}:{arabic}",
        f"{wide_user}:{target}:{n}",
        f" {user}:{target}:{n} ",
        f"{user}:{target}:{n}:extra",
        f"{user}:{n}",
        f"::{n}",
        f"{user}:{target}:{n}\x00",
        "A" * 10_000 + str(n),
        f"{user}:{target}:{n}\U0001f600",
        f"{user}\u2236{target}\u2236{n}",
    ]
    if not g.empty_rid_used:
        variants.append("")
    choice: Json = rng.choice(variants)
    if choice == "":
        g.empty_rid_used = True
    if rng.random() < 0.15:
        non_strings: list[Json] = [n, None, [f"{user}:{target}:{n}"], {"id": n}, True, 1.5]
        choice = rng.choice(non_strings)
    d.put("request_id", choice)
    d.shape.append(f"odd request_id {str(choice)[:50]!r}")


def _missing(rng: random.Random, d: _Draft, g: Generator) -> None:
    name = rng.choice(d.names())
    d.members.drop(name)
    d.track(name, None)
    d.shape.append(f"missing {name}")


def _extra(rng: random.Random, d: _Draft, g: Generator) -> None:
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(_EXTRA_NAMES)
        if name in d.names():
            continue
        values: list[Json] = [None, 1, "x", [], {}, {"a": [1, {"b": None}]}, True, 1.5e300]
        value = rng.choice(values)
        d.put(name, value)
        d.shape.append(f"extra field {name[:20]!r}")


def _null(rng: random.Random, d: _Draft, g: Generator) -> None:
    name = rng.choice(d.names())
    d.put(name, None)
    d.shape.append(f"{name} null")


def _wrong_type(rng: random.Random, d: _Draft, g: Generator) -> None:
    name = rng.choice(d.names())
    values: list[Json] = [4.1, "1", [], [1, 2], {}, "x", True, False, -1, "north"]
    value = _unique(d, name, rng.choice(values))
    d.put(name, value)
    d.shape.append(f"{name} = {value!r}")


def _odd_key(rng: random.Random, d: _Draft, g: Generator) -> None:
    d.key = rng.choice([None, b"", b"\xff\xfe", USER_NOISY.encode(), b"k" * 10_000,
                        b"90-B3-D5-1F-30-01-00-00\x00", USER_MAIN.lower().encode()])  # fmt: skip
    d.shape.append(f"record key {None if d.key is None else d.key[:30]!r}")


def _tombstone(rng: random.Random, d: _Draft, g: Generator) -> None:
    d.whole = None
    d.tag = None
    d.shape.append("tombstone")


def _garbage(rng: random.Random, d: _Draft, g: Generator) -> None:
    encoded = dumps(d.members)
    choices: list[tuple[str, bytes, bool]] = [
        ("empty", b"", False),
        ("spaces", b" \n\t ", False),
        ("null", b"null", False),
        ("array", b"[" + encoded + b"]", False),
        ("number", b"1", False),
        ("string", json.dumps(encoded.decode(errors="replace")).encode(), False),
        ("bom", b"\xef\xbb\xbf" + encoded, True),
        ("trailing", encoded + b" trailing", True),
        ("two objects", encoded + encoded, True),
        ("truncated", encoded[: max(1, len(encoded) // 2)], False),
        ("random bytes", bytes(rng.randrange(256) for _ in range(64)), False),
        ("padded", b"  \n" + encoded + b"\n  ", True),
    ]
    name, value, answerable = rng.choice(choices)
    d.whole = value
    if not answerable:
        d.tag = None if isinstance(d.tag, str) else d.tag
        d.recipients = None
    d.shape.append(f"garbage: {name}")


def _headers(rng: random.Random, d: _Draft, g: Generator) -> None:
    picked = rng.sample(FORGED_HEADERS, rng.randint(1, 4))
    picked += rng.sample(ODD_HEADERS, rng.randint(0, 4))
    if rng.random() < 0.1:
        picked += [(f"x-many-{i}", b"v") for i in range(200)]
    d.headers.extend(picked)
    d.shape.append(f"headers {[k[:20] for k, _ in picked[:6]]}")


def _timestamp(rng: random.Random, d: _Draft, g: Generator) -> None:
    # Past ones of any age, and one a minute ahead: Apache Kafka 4 refuses a record more than
    # an hour ahead (message.timestamp.after.max.ms), so no producer gets such a one in.
    now_ms = int(g.now.timestamp() * 1000)
    d.timestamp_ms = rng.choice([0, 1, now_ms - 400 * 86_400_000, now_ms + 60_000])
    d.shape.append(f"timestamp {d.timestamp_ms}")


def _escapes(rng: random.Random, d: _Draft, g: Generator) -> None:
    d.style = Style(rng=rng, escape_p=rng.choice([0.1, 0.5, 1.0]), spaces=rng.random() < 0.5)
    d.shape.append(f"escaped p={d.style.escape_p} spaces={d.style.spaces}")


def _replay(rng: random.Random, d: _Draft, g: Generator) -> None:
    # A COUNTER lower than one already accepted for the pair (a new request_id all the same).
    rid = d.members.get("request_id")
    if isinstance(rid, str) and rid.count(":") == 2:
        user, target, _ = rid.split(":")
        # Serials are unique and below every COUNTER `request` gives (1,000,000 and up).
        d.put("request_id", f"{user}:{target}:{g.next_serial()}")
        d.shape.append("replayed COUNTER")


def _alert_recipients(rng: random.Random, d: _Draft, g: Generator) -> None:
    options: list[tuple[str, Json]] = [
        ("none", []),
        ("one empty", [""]),
        ("empties", ["", ""]),
        ("duplicates", [USER_MAIN, USER_MAIN, USER_NOISY]),
        ("many", [f"user-{i}" for i in range(40)]),
        ("NUL", [USER_MAIN + "\x00"]),
        ("non-strings", [1, None, USER_MAIN]),
        ("a string", USER_MAIN),
        ("null", None),
        ("mixed empty", ["", USER_SHADOW]),
    ]
    name, value = rng.choice(options)
    d.put("recipients", value)
    if rng.random() < 0.2 and name == "duplicates":
        d.members.set("recipients", Raw(b'["\\u0039\\u0030-B3-D5-1F-30-01-00-00","' +
                                        USER_MAIN.encode() + b'"]'))  # fmt: skip
        d.recipients = [USER_MAIN, USER_MAIN]
        name = "escaped duplicates"
    d.shape.append(f"recipients {name}")


def _alert_device(rng: random.Random, d: _Draft, g: Generator) -> None:
    dev = rng.choice(["", "00-db-00-00-00-00-00-01", "00:DB:00:00:00:00:00:01", "x" * 1000,
                      "00DB000000000001", " 00-DB-00-00-00-00-00-02 ", "\u00e9\u00e9"])  # fmt: skip
    d.put("device_id", dev)
    d.shape.append(f"device_id {dev[:30]!r}")


def _alert_code(rng: random.Random, d: _Draft, g: Generator) -> None:
    code = rng.choice(["", "0X8F35", "0x", "ad1", " 8f3f", "N" * 300, "8F35\n", "\u00df"])
    d.put("alert_code", code)
    d.shape.append(f"alert_code {code[:20]!r}")


def _alert_throttled_fields(rng: random.Random, d: _Draft, g: Generator) -> None:
    d.put("throttled_alert_count", rng.choice([0, 5, None]))
    d.put("throttled_alert_sequence_id", rng.choice(["forged", None, ""]))
    d.shape.append("inbound throttled_* fields")


def _alert_region(rng: random.Random, d: _Draft, g: Generator) -> None:
    region: Json = rng.choice(["NORTH", "west", "", 5, None, "north\x00"])
    d.put("region", region)
    d.shape.append(f"region {region!r}")


def _alert_raised_at(rng: random.Random, d: _Draft, g: Generator) -> None:
    value: Json = rng.choice([-1, "1", 1.5, Raw(b"1e400"), Raw(b"-1e400"), Raw(DIGITS_5000),
                              Raw(b"NaN"), None, [], True])  # fmt: skip
    d.put("raised_at_ms", value)
    d.shape.append(f"raised_at_ms {str(value)[:20]!r}")


def _in_order(mutations: list[_Mutation]) -> list[_Mutation]:
    """At most one change of the whole value (tombstone, garbage), and it comes last."""
    whole = [m for m in mutations if m in (_tombstone, _garbage)]
    return [m for m in mutations if m not in whole] + whole[-1:]


_HARMLESS: list[_Mutation] = [_escapes, _headers, _extra, _timestamp, _shallow]

_COMMON: list[tuple[_Mutation, int]] = [
    (_invalid_utf8, 10),
    (_deep, 8),
    (_shallow, 3),
    (_duplicate, 9),
    (_extreme_number, 12),
    (_big, 1),
    (_control, 8),
    (_raw_control, 3),
    (_surrogate, 6),
    (_missing, 5),
    (_extra, 6),
    (_null, 4),
    (_wrong_type, 6),
    (_odd_key, 5),
    (_tombstone, 2),
    (_garbage, 4),
    (_headers, 10),
    (_timestamp, 3),
    (_escapes, 8),
]
_REQUEST_ONLY: list[tuple[_Mutation, int]] = [(_odd_request_id, 12), (_replay, 3)]
_ALERT_ONLY: list[tuple[_Mutation, int]] = [
    (_alert_recipients, 10),
    (_alert_device, 5),
    (_alert_code, 5),
    (_alert_throttled_fields, 4),
    (_alert_region, 4),
    (_alert_raised_at, 3),
]
_REQUEST_MUTATIONS = [m for m, _ in _COMMON + _REQUEST_ONLY]
_REQUEST_WEIGHTS = [w for _, w in _COMMON + _REQUEST_ONLY]
_ALERT_MUTATIONS = [m for m, _ in _COMMON + _ALERT_ONLY]
_ALERT_WEIGHTS = [w for _, w in _COMMON + _ALERT_ONLY]
