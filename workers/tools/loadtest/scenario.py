"""Load-test scenarios: the model, the TOML parser and the built-in scenarios.

A scenario is a TOML file (docs/loadtest.md describes every field) or the name of a
built-in one shipped under `workers/tools/loadtest/scenarios/`. Decoding is strict: an unknown
field, a value out of range, an unknown SRV, region or User is refused with a message that
names the field, the line where it can be found, and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from workers.config.configfile import ConfigFile
from workers.config.model import USER_ID_PATTERN, kind_of_key, validate_item
from workers.duis import Srv, load_catalogue

__all__ = [
    "BUILT_IN",
    "AlertStorm",
    "Background",
    "FirmwareCampaign",
    "Fleet",
    "Installs",
    "Latency",
    "Region",
    "Regions",
    "RunawayUser",
    "Scenario",
    "ScenarioError",
    "ScenarioUser",
    "load_scenario",
    "parse_scenario",
    "role_for",
]

BUILT_IN = ("install-day", "alert-storm", "runaway-user", "firmware-campaign", "noisy-neighbour")

RegionName = Literal["north", "central", "south"]
Role = Literal["IS", "ES", "GS", "ED", "GT", "RSA", "OU"]
UserId = Annotated[str, Meta(pattern=USER_ID_PATTERN)]
_Rate = Annotated[float, Meta(ge=0, le=1_000_000)]
_Share = Annotated[float, Meta(ge=0, le=1)]
_Seconds = Annotated[float, Meta(ge=0, le=86_400)]
_Count = Annotated[int, Meta(ge=0, le=10_000_000)]
_Ms = Annotated[float, Meta(gt=0, le=600_000)]
_AlertCode = Annotated[str, Meta(pattern=r"^([0-9A-F]{4}|N[0-9]{1,4}|[A-Z]{1,4}[0-9]{1,4})$")]


class ScenarioError(ValueError):
    """A scenario cannot be used; the message names the field, the line and the fix."""


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ScenarioUser(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[[users]]`: a DCC User taking part. Registered on the gateway (`users/<id>`)."""

    id: UserId
    name: str = ""
    roles: Annotated[list[Role], Meta(min_length=1, max_length=7)]


class Latency(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A log-normal round-trip time to a device, given by its median and 99th percentile."""

    median_ms: _Ms
    p99_ms: _Ms

    @property
    def sigma(self) -> float:
        """The log-normal's sigma: p99 = median * exp(2.326 sigma)."""
        return math.log(self.p99_ms / self.median_ms) / 2.326


class Region(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[regions.<name>]`: one CSP region of the simulated network."""

    devices: _Count = 1000
    """Installed devices in the region: targets of background reads, sources of alerts."""
    latency: Latency = msgspec.field(default_factory=lambda: Latency(median_ms=150.0, p99_ms=600.0))
    install_failure_rate: _Share = 0.0
    """Share of installs that fail: each device command fails with the probability that
    gives this rate over the WAN commands of one install (see `install.WAN_COMMANDS`)."""
    installs_per_s: _Rate = 0.0
    """Installs started per second (Poisson arrivals)."""


class Regions(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[regions]`: the three CSP regions (DOMAIN.md section 1)."""

    north: Region = msgspec.field(default_factory=Region)
    central: Region = msgspec.field(default_factory=Region)
    south: Region = msgspec.field(default_factory=Region)

    def items(self) -> list[tuple[RegionName, Region]]:
        """(name, region) in the fixed order north, central, south."""
        return [("north", self.north), ("central", self.central), ("south", self.south)]


class Fleet(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[fleet]`: who receives the installed devices' alerts."""

    supplier: UserId
    """The supplier (IS/GS) receiving device alerts."""
    network_operator: UserId | None = None
    """The electricity distributor (ED) receiving power-outage alerts (AD1); default: the
    supplier."""


class Installs(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[installs]`: the Install & Commission traffic; rates are per region."""

    user: UserId
    """The installing supplier: needs roles IS and GS (dual-fuel installs)."""
    step_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 10.0
    """A step with no answer after this long fails the install."""
    max_retries: Annotated[int, Meta(ge=0, le=1000)] = 20
    """Throttled submissions of one step retried (after `retry_after_ms`) before it fails."""


class Background(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[background]`: everyday traffic."""

    readers: list[UserId] = msgspec.field(default_factory=list)
    """Users sending on-demand reads (4.1.1), in turn."""
    on_demand_reads_per_s: _Rate = 0.0
    profile_user: UserId | None = None
    """The User whose DCC-scheduled profile reads (4.8.1) run in half-hourly bursts."""
    profile_reads_per_burst: _Count = 0
    profile_period_s: Annotated[float, Meta(gt=0, le=86_400)] = 1800.0
    """Scenario seconds between bursts (compressed by `time_compression`)."""
    profile_first_at_s: _Seconds = 1.0
    """Real seconds after the start of the first burst (then one every compressed period)."""
    profile_burst_spread_s: Annotated[float, Meta(ge=0, le=3600)] = 1.0
    """Real seconds over which one burst is spread."""
    alerts_per_device_per_hour: _Rate = 0.0
    """Steady device alerts, per device per scenario hour (compressed)."""
    alert_codes: list[_AlertCode] = msgspec.field(default_factory=lambda: ["8F35", "8F1F"])


class AlertStorm(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[[faults.alert_storm]]`: rogue devices repeating one alert."""

    devices: Annotated[int, Meta(ge=1, le=100_000)] = 1
    region: RegionName = "north"
    alert_code: _AlertCode = "8F1F"
    rate_per_s: Annotated[float, Meta(gt=0, le=1_000_000)]
    """Alerts per second, per rogue device."""
    start_s: _Seconds = 0.0
    duration_s: _Seconds = 5.0


class RunawayUser(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[[faults.runaway_user]]`: a User's system looping one request type."""

    user: UserId
    srv: str = "7.2"
    rate_per_s: Annotated[float, Meta(gt=0, le=1_000_000)]
    start_s: _Seconds = 0.0
    duration_s: _Seconds = 5.0


class FirmwareCampaign(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[[faults.firmware_campaign]]`: 11.1 Update Firmware then 11.3 Activate Firmware
    (critical: CV 4 then CV 5) over installed devices, and the false power-outage alerts
    (AD1, then the 8F36 restore) some meters raise after activation (MP102)."""

    user: UserId
    region: RegionName = "south"
    devices: Annotated[int, Meta(ge=1, le=1_000_000)]
    rate_per_s: Annotated[float, Meta(gt=0, le=100_000)]
    """Devices started per second."""
    start_s: _Seconds = 0.0
    failure_rate: _Share = 0.0
    """Share of activations (11.3 CV 5) that fail on the device."""
    false_outage_share: _Share = 0.0
    """Share of activated meters that raise AD1 then, `outage_s` later, 8F36."""
    outage_s: Annotated[float, Meta(ge=0, le=3600)] = 1.0


class Faults(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[faults]`: what goes wrong."""

    alert_storm: list[AlertStorm] = msgspec.field(default_factory=list)
    runaway_user: list[RunawayUser] = msgspec.field(default_factory=list)
    firmware_campaign: list[FirmwareCampaign] = msgspec.field(default_factory=list)


class Scenario(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole scenario file."""

    name: str
    description: str = ""
    duration_s: Annotated[float, Meta(gt=0, le=86_400)] = 20.0
    """Default run length in real seconds (`--duration` overrides)."""
    seed: int = 1
    time_compression: Annotated[float, Meta(ge=1, le=100_000)] = 60.0
    """Scenario seconds per real second, for the half-hourly bursts and per-hour rates."""
    users: list[ScenarioUser] = msgspec.field(default_factory=list)
    regions: Regions = msgspec.field(default_factory=Regions)
    fleet: Fleet | None = None
    installs: Installs | None = None
    background: Background = msgspec.field(default_factory=Background)
    faults: Faults = msgspec.field(default_factory=Faults)
    gateway: ConfigFile = msgspec.field(default_factory=ConfigFile)
    """Gateway configuration applied before the run, in the shape of a dccgate
    configuration file (docs/examples/dccgate.toml): allocations, traffic, ADT values,
    storm policy and exclusions."""

    def user(self, user_id: str) -> ScenarioUser:
        """The scenario User with `user_id` (parsing guarantees it exists)."""
        return next(u for u in self.users if u.id == user_id)

    def gateway_items(self) -> dict[str, msgspec.Struct]:
        """Every dcc.control item to apply: the Users, then the `gateway` section."""
        from workers.config.model import User

        items: dict[str, msgspec.Struct] = {
            f"users/{u.id}": User(name=u.name or u.id, roles=list(u.roles)) for u in self.users
        }
        items.update(self.gateway.items())
        return items


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path; raises ScenarioError."""
    if name_or_path in BUILT_IN:
        resource = resources.files(__package__).joinpath("scenarios", f"{name_or_path}.toml")
        return parse_scenario(resource.read_text(encoding="utf-8"), source=name_or_path)
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(
            f"{name_or_path!r} is neither a built-in scenario ({', '.join(BUILT_IN)}) nor a "
            f"readable file: {exc.strerror}"
        ) from None
    return parse_scenario(text, source=str(path))


_PATH_KEY = re.compile(r"`\$((?:\.[A-Za-z_][\w-]*|\[\d+\]|\[.+?\])*)`")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")


def _line_of(text: str, message: str) -> int | None:
    """The line of the TOML text most likely meant by a msgspec error message: the last
    key of its `$.a.b[0].c` path, or the unknown field it names."""
    names: list[str] = []
    unknown = _UNKNOWN_FIELD.search(message)
    if unknown:
        names.append(unknown.group(1))
    path = _PATH_KEY.search(message)
    if path:
        names += [p for p in re.findall(r"\.([A-Za-z_][\w-]*)", path.group(1))][::-1]
    for name in names:
        key = re.compile(
            rf"^\s*(\[\[?[^\]]*\b{re.escape(name)}\b[^\]]*\]\]?|{re.escape(name)}\s*=)"
        )
        for n, line in enumerate(text.splitlines(), start=1):
            if key.match(line):
                return n
    return None


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Decode and check a scenario's TOML text; raises ScenarioError naming what is wrong.

    source: how to name the scenario in messages (a path or a built-in's name).
    """
    try:
        scenario = msgspec.toml.decode(text.encode(), type=Scenario)
    except msgspec.ValidationError as exc:
        line = _line_of(text, str(exc))
        where = f"{source}, line {line}" if line else source
        raise ScenarioError(f"{where}: {exc} (`$` is the top of the file)") from None
    except msgspec.DecodeError as exc:
        raise ScenarioError(f"{source} is not valid TOML: {exc}") from None
    problems = _check(scenario, load_catalogue())
    if problems:
        raise ScenarioError(f"{source}: " + "; ".join(problems))
    return scenario


def role_for(srv: Srv, roles: list[str]) -> str | None:
    """The first of `roles` that may send `srv`, or None."""
    return next((r for r in roles if r in srv.roles), None)


def _check(s: Scenario, catalogue: Mapping[str, Srv]) -> list[str]:
    """Checks across fields: Users referenced exist and may send what they are asked to."""
    problems: list[str] = []
    users = {u.id: u for u in s.users}
    if len(users) != len(s.users):
        problems.append("users: a User ID is listed twice")

    def need(field: str, user_id: str | None, srv: str | None = None) -> None:
        if user_id is None:
            return
        user = users.get(user_id)
        if user is None:
            problems.append(f"{field}: User {user_id} is not in [[users]]; add it there")
            return
        if srv is not None:
            entry = catalogue[srv]
            if role_for(entry, list(user.roles)) is None:
                problems.append(
                    f"{field}: User {user_id} has roles {', '.join(user.roles)}, none of which "
                    f"may send SRV {srv} ({entry.name}); eligible: {', '.join(sorted(entry.roles))}"
                )

    if s.fleet is not None:
        need("fleet.supplier", s.fleet.supplier)
        need("fleet.network_operator", s.fleet.network_operator)
    if s.installs is not None:
        user = users.get(s.installs.user)
        need("installs.user", s.installs.user)
        if user is not None and not {"IS", "GS"} <= set(user.roles):
            problems.append(
                f"installs.user: User {user.id} needs roles IS and GS for dual-fuel installs, "
                f"has {', '.join(user.roles)}"
            )
    if any(r.installs_per_s > 0 for _, r in s.regions.items()) and s.installs is None:
        problems.append("regions: installs_per_s is set but there is no [installs] section")
    needs_fleet = (
        s.background.alerts_per_device_per_hour > 0
        or s.faults.alert_storm
        or s.faults.firmware_campaign
    )
    if needs_fleet and s.fleet is None:
        problems.append("alerts are generated but there is no [fleet] section naming the supplier")
    for n, reader in enumerate(s.background.readers):
        need(f"background.readers[{n}]", reader, "4.1.1")
    if s.background.on_demand_reads_per_s > 0 and not s.background.readers:
        problems.append("background.on_demand_reads_per_s is set but background.readers is empty")
    need("background.profile_user", s.background.profile_user, "4.8.1")
    if s.background.profile_reads_per_burst > 0 and s.background.profile_user is None:
        problems.append("background.profile_reads_per_burst is set but profile_user is not")
    for n, r in enumerate(s.faults.runaway_user):
        field = f"faults.runaway_user[{n}]"
        if r.srv not in catalogue:
            problems.append(
                f"{field}.srv: {r.srv!r} is not a known DUIS Service Reference Variant "
                "(written like 7.2 or 4.1.1; see workers/duis/srv_catalogue.toml)"
            )
        else:
            need(field + ".user", r.user, r.srv)
    for n, c in enumerate(s.faults.firmware_campaign):
        need(f"faults.firmware_campaign[{n}].user", c.user, "11.3")
        need(f"faults.firmware_campaign[{n}].user", c.user, "11.1")
    for name, region in s.regions.items():
        if region.latency.p99_ms < region.latency.median_ms:
            problems.append(
                f"regions.{name}.latency: p99_ms ({region.latency.p99_ms:g}) is below "
                f"median_ms ({region.latency.median_ms:g})"
            )
    for key, body in s.gateway.items().items():
        found = kind_of_key(key)
        if found is None:
            problems.append(f"gateway: {key!r} does not name a User ID (8 hex octets)")
            continue
        try:
            validate_item(found[0], found[1], body)
        except ValueError as exc:
            problems.append(f"gateway.{key}: {exc}")
    return problems
