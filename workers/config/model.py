"""The configuration model: what operators and Users configure, as API bodies and as the
values of `dcc.control` records.

Each kind of item lives at a key on `dcc.control` (`allocations/<user_id>`, `traffic`, ...)
and at a path of the admin API. Bodies are msgspec Structs with their limits declared, so a
bad value is refused at decode time with a message naming the field; unknown fields are
refused too (a typo must not be silently ignored in a national system's configuration).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta, Struct

from adt import AdtConfigError, AdtTable, AdtValues
from workers.duis.catalogue import load_catalogue
from workers.duis.certificates import UserCertificates

__all__ = [
    "KINDS",
    "MAX_RESPONSE_URL_CHARS",
    "MONTH_PATTERN",
    "USER_ID_PATTERN",
    "AdtValues",
    "Allocation",
    "Exclusions",
    "Forecast",
    "ForecastAllocations",
    "Kind",
    "Mp102Rule",
    "RegionCapacity",
    "RegionalCapacity",
    "StormParams",
    "StormPolicy",
    "Traffic",
    "User",
    "kind_of_key",
    "response_url_problem",
    "validate_item",
]

USER_ID_PATTERN = "^[0-9A-F]{2}(-[0-9A-F]{2}){7}$"
_USER_ID_RE = re.compile(USER_ID_PATTERN)
MONTH_PATTERN = "^[0-9]{4}-(0[1-9]|1[0-2])$"
_MONTH_RE = re.compile(MONTH_PATTERN)
Role = Literal["IS", "ES", "GS", "ED", "GT", "RSA", "OU", "LC"]  # LC: broker.schemas
_Srv = Annotated[str, Meta(pattern=r"^(\*|[0-9]{1,2}(\.[0-9]{1,2}){1,2})$", max_length=8)]
_SrvExact = Annotated[str, Meta(pattern=r"^[0-9]{1,2}(\.[0-9]{1,2}){1,2}$", max_length=8)]
_Rate = Annotated[float, Meta(ge=0, le=1_000_000)]
_Field = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
_AlertCode = Annotated[str, Meta(pattern=r"^([0-9A-F]{4}|N[0-9]{1,4}|[A-Z]{1,4}[0-9]{1,4})$")]
_WindowS = Annotated[int, Meta(ge=1, le=31 * 24 * 3600)]
_Region = Literal["north", "central", "south"]
_Count = Annotated[int, Meta(ge=1, le=10_000_000)]


MAX_RESPONSE_URL_CHARS = 2048
"""The longest response_url a User may register."""


def response_url_problem(url: str) -> str | None:
    """Why `url` cannot be a User's response endpoint, or None: it must be an absolute
    http(s) URL with a host, no user name or password, no fragment, no whitespace or
    control characters, and at most MAX_RESPONSE_URL_CHARS characters."""
    if len(url) > MAX_RESPONSE_URL_CHARS:
        return f"is longer than {MAX_RESPONSE_URL_CHARS} characters"
    if any(c <= " " or c == "\x7f" or not c.isascii() for c in url):
        return "holds a space, a control or a non-ASCII character; percent-encode it"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must start with https:// (or http://)"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry credentials (user:password@); the endpoint authenticates us by TLS"
    if parts.fragment or url.endswith("#"):
        return "must not have a #fragment"
    if port == 0:
        return "has port 0"
    return None


class _Body(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class User(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A DCC User: `PUT /v1/users/{user_id}`."""

    name: Annotated[str, Meta(min_length=1, max_length=200)]
    roles: Annotated[list[Role], Meta(min_length=1, max_length=8)]
    response_url: (
        Annotated[
            str,
            Meta(
                max_length=MAX_RESPONSE_URL_CHARS,
                pattern="^https?://",
                description="Where the User's answers are pushed as DUIS sr:Response XML "
                "(POST); http or https, no credentials, no fragment.",
            ),
        ]
        | None
    ) = None
    """Where `dccgate worker deliver` POSTs this User's answers as DUIS sr:Response XML
    (docs/duis-ingress.md); http or https, no credentials; null: answers are not pushed."""

    def __post_init__(self) -> None:
        if self.response_url is not None:
            problem = response_url_problem(self.response_url)
            if problem is not None:
                raise ValueError(f"response_url {problem}")


class Allocation(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A User's capacity allocation under SECMP0067: `PUT /v1/allocations/{user_id}`."""

    rate_per_s: _Rate
    burst: Annotated[int, Meta(ge=1, le=1_000_000)]
    shadow: bool = False
    """Compute and count throttling decisions for this User but throttle nothing."""


class ForecastAllocations(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Derive the allocation of a User with no explicit one from its forecast for the
    current month (docs/forecasts.md): rate_per_s = the month's forecast total x
    peak_hour_share / 3600 x headroom_ratio, burst = rate_per_s x burst_s (at least 1)."""

    peak_hour_share: Annotated[float, Meta(gt=0, le=1)] = 0.004
    headroom_ratio: Annotated[float, Meta(ge=1, le=100)] = 1.5
    burst_s: Annotated[float, Meta(gt=0, le=3600)] = 1.0


class Traffic(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """System traffic management (SECMP0067): `PUT /v1/traffic`."""

    capacity_per_s: Annotated[float, Meta(gt=0, le=10_000_000)]
    operating_threshold_per_s: Annotated[float, Meta(gt=0, le=10_000_000)]
    reserved_srvs: list[_SrvExact] = msgspec.field(default_factory=list)
    reserved_share: Annotated[float, Meta(ge=0, lt=1)] = 0.0
    shadow: bool = False
    default_allocation: Allocation | None = None
    """The allocation of a User that has none; None means such Users are never throttled."""
    exit_margin_ratio: Annotated[float, Meta(ge=0, lt=1)] = 0.05
    """Hysteresis: once active, traffic management switches off only after the load has
    stayed under operating_threshold_per_s x (1 - exit_margin_ratio) for exit_hold_s."""
    exit_hold_s: Annotated[float, Meta(ge=0, le=3600)] = 1.0
    """Seconds the load must stay under the exit level before traffic management switches
    off (see exit_margin_ratio); 0 switches it off at the first view under that level."""
    allocations_from_forecasts: ForecastAllocations | None = None
    """When set, a User with a forecast for the current month and no explicit allocation
    gets one derived from the forecast; null: such Users get default_allocation."""

    def __post_init__(self) -> None:
        if self.operating_threshold_per_s > self.capacity_per_s:
            raise ValueError(
                f"operating_threshold_per_s ({self.operating_threshold_per_s:g}) must not "
                f"exceed capacity_per_s ({self.capacity_per_s:g})"
            )


class Exclusions(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Alert codes never throttled by storm protection (SECMP0062):
    `PUT /v1/alerts/exclusions`."""

    alert_codes: Annotated[list[_AlertCode], Meta(max_length=10_000)]


class StormParams(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Storm thresholds: above `max_alerts` in `window_s`, forward one copy per `period_s`."""

    window_s: _WindowS
    max_alerts: Annotated[int, Meta(ge=1, le=1_000_000)]
    period_s: _WindowS


class StormPolicy(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Alert-storm parameters, a default and per alert code: `PUT /v1/alerts/storm-policy`."""

    default: StormParams
    per_code: dict[_AlertCode, StormParams] = msgspec.field(default_factory=dict)


class RegionCapacity(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One CSP region's capacity for forwarded alerts: `rate_per_s` with bursts of `burst`;
    above it up to `max_queued` normal and `max_priority_queued` priority alerts wait."""

    rate_per_s: Annotated[float, Meta(gt=0, le=10_000_000)]
    burst: _Count
    max_queued: _Count = 100_000
    max_priority_queued: _Count = 100_000


class RegionalCapacity(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Forwarded-alert capacity per CSP region, priority first:
    `PUT /v1/alerts/regional-capacity`. Regions not listed are not limited."""

    regions: dict[_Region, RegionCapacity]
    unknown_region: _Region | None = None
    """The region whose capacity carries alerts with no region; None: not limited."""
    high_priority_codes: Annotated[list[_AlertCode], Meta(max_length=10_000)] = msgspec.field(
        default_factory=list
    )
    """Alert codes released first, besides the excluded codes."""

    def __post_init__(self) -> None:
        if self.unknown_region is not None and self.unknown_region not in self.regions:
            raise ValueError(
                f"unknown_region {self.unknown_region!r} has no capacity in regions "
                f"{sorted(self.regions)}; add it to regions or leave unknown_region null"
            )


_Codes = Annotated[list[_AlertCode], Meta(min_length=1, max_length=100)]


class Mp102Rule(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The MP102 rule: outage alerts after an 11.3 Activate Firmware are held, and dropped
    if a restore alert follows: `PUT /v1/alerts/mp102`. Off unless `enabled`."""

    enabled: bool = False
    watch_s: Annotated[int, Meta(ge=1, le=7 * 24 * 3600)] = 1800
    hold_s: Annotated[int, Meta(ge=1, le=24 * 3600)] = 600
    outage_codes: _Codes = msgspec.field(default_factory=lambda: ["AD1"])
    restore_codes: _Codes = msgspec.field(default_factory=lambda: ["8F35", "8F36"])
    max_watched: _Count = 100_000
    max_held: _Count = 100_000

    def __post_init__(self) -> None:
        both = sorted(set(self.outage_codes) & set(self.restore_codes))
        if both:
            raise ValueError(
                f"codes {both} are both outage_codes and restore_codes; remove them from one"
            )


_ForecastCount = Annotated[int, Meta(ge=0, le=1_000_000_000)]
MAX_FORECAST_TOTAL = 10_000_000_000
"""Most Service Requests one User may forecast for one month, all SRVs together: ten times
the whole GB hub's monthly traffic of recent years (DOMAIN.md section 9); more is a typo."""


class Forecast(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A User's forecast of its Service Requests for one month, per SRV (SEC H3.24):
    `PUT /v1/forecasts/{user_id}/{YYYY-MM}`. SRVs not listed are forecast as 0."""

    counts: Annotated[dict[_SrvExact, _ForecastCount], Meta(max_length=1000)]
    note: Annotated[str, Meta(max_length=500)] = ""

    def __post_init__(self) -> None:
        total = sum(self.counts.values())
        if total > MAX_FORECAST_TOTAL:
            raise ValueError(
                f"the counts add up to {total:,} Service Requests in one month, more than "
                f"{MAX_FORECAST_TOTAL:,}; check for a typo (counts are per month, not per year)"
            )


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of configuration item.

    name: the key prefix on dcc.control (`allocations`), or the whole key for singletons.
    body: its Struct type.
    per_user: keyed by User ID (`allocations/<user_id>`) rather than a singleton.
    user_writable: a User may change its own item (besides operators).
    user_readable: a User may read its own item.
    per_month: per User and month (`forecasts/<user_id>/<YYYY-MM>`); implies per_user.
    """

    name: str
    body: type[Struct]
    per_user: bool
    user_readable: bool
    user_writable: bool
    per_month: bool = False

    def key(self, user_id: str | None = None, month: str | None = None) -> str:
        """The dcc.control key of this kind's item (for `user_id` if per User, and
        `month`, YYYY-MM, if per month)."""
        if self.per_user:
            if user_id is None:
                raise ValueError(f"{self.name} items are per User; give a User ID")
            if self.per_month:
                if month is None:
                    raise ValueError(f"{self.name} items are per month; give a YYYY-MM month")
                return f"{self.name}/{user_id}/{month}"
            return f"{self.name}/{user_id}"
        return self.name


KINDS: Mapping[str, Kind] = {
    k.name: k
    for k in (
        Kind("users", User, per_user=True, user_readable=True, user_writable=False),
        Kind("allocations", Allocation, per_user=True, user_readable=True, user_writable=False),
        Kind("adt.users", AdtValues, per_user=True, user_readable=True, user_writable=True),
        Kind("adt.dcc", AdtValues, per_user=False, user_readable=False, user_writable=False),
        Kind(
            "alerts.exclusions",
            Exclusions,
            per_user=False,
            user_readable=False,
            user_writable=False,
        ),
        Kind(
            "alerts.storm-policy",
            StormPolicy,
            per_user=False,
            user_readable=False,
            user_writable=False,
        ),
        Kind("traffic", Traffic, per_user=False, user_readable=False, user_writable=False),
        Kind(
            "alerts.regional-capacity",
            RegionalCapacity,
            per_user=False,
            user_readable=False,
            user_writable=False,
        ),
        Kind("alerts.mp102", Mp102Rule, per_user=False, user_readable=False, user_writable=False),
        Kind(
            "forecasts",
            Forecast,
            per_user=True,
            user_readable=True,
            user_writable=True,
            per_month=True,
        ),
        # Written only by POST/DELETE /v1/users/{id}/certificates (routes_certificates),
        # which check the key-separation control; there is no PUT.
        Kind(
            "certificates",
            UserCertificates,
            per_user=True,
            user_readable=True,
            user_writable=False,
        ),
    )
}


def kind_of_key(key: str) -> tuple[Kind, str | None] | None:
    """The kind and User ID of a dcc.control key, or None for a key of no known kind."""
    name, _, user_id = key.partition("/")
    kind = KINDS.get(name)
    if kind is None or kind.per_user != bool(user_id):
        return None
    if kind.per_month:
        user_id, _, month = user_id.partition("/")
        if not _MONTH_RE.fullmatch(month):
            return None
    if user_id and not _USER_ID_RE.fullmatch(user_id):
        return None
    return kind, user_id or None


def validate_item(kind: Kind, user_id: str | None, body: Any) -> None:
    """Checks that need the item's owner (raise ValueError naming the problem): ADT values
    compile for their User or for the DCC (derived rule ids unique, exception windows
    naming real thresholds, no "*" threshold DCC-wide); a forecast names only SRVs of the
    DUIS catalogue."""
    if kind.body is Forecast:
        catalogue = load_catalogue()
        unknown = sorted(srv for srv in body.counts if srv not in catalogue)
        if unknown:
            raise ValueError(
                f"unknown SRVs {unknown[:10]}: forecast only DUIS Service Reference Variants "
                "(e.g. 4.1.1; the list: workers/duis/srv_catalogue.toml)"
            )
    if kind.body is AdtValues:
        try:
            if user_id is None:
                AdtTable.for_dcc(body)
            else:
                AdtTable.for_user(user_id, body)
        except AdtConfigError as exc:
            raise ValueError(str(exc)) from None


def decode_body(kind: Kind, raw: bytes | str) -> Any:
    """Decode and validate a body of `kind`; raises msgspec.ValidationError / DecodeError."""
    return msgspec.json.decode(raw, type=kind.body)
