"""The TOML configuration file (`--config FILE`): the starting configuration.

Items in the file are written to `dcc.control` when the admin service starts, as version
1 by `config-file`, but only where that key has never been set: once an item is changed
through the API, the API's value is the truth and the file's is ignored (with a notice).
So the file seeds a fresh cluster and documents a deployment; it never silently undoes an
operator's change. Example: docs/examples/dccgate.toml.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import msgspec

from workers.config.codes import ResponseCodes
from workers.config.explain import describe
from workers.config.model import (
    KINDS,
    AdtValues,
    Allocation,
    Exclusions,
    Mp102Rule,
    RegionalCapacity,
    StormPolicy,
    Traffic,
    User,
)

__all__ = ["ConfigFile", "ConfigFileError", "load_config_file"]

log = logging.getLogger(__name__)


class ConfigFileError(ValueError):
    """The configuration file cannot be used; the message names the key and the fix."""


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class AdminSection(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[admin]`: the first operator token, as its SHA-256 (hex) so the file holds no
    secret. `DCCGATE_TOKEN` in the environment works too."""

    token_sha256: str | None = None


class AdtSection(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[adt.users."<user id>"]` and `[adt.dcc]`."""

    users: dict[str, AdtValues] = msgspec.field(default_factory=dict)
    dcc: AdtValues | None = None


class AlertsSection(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[alerts.exclusions]`, `[alerts.storm-policy]`, `[alerts.regional-capacity]` and
    `[alerts.mp102]`."""

    exclusions: Exclusions | None = None
    storm_policy: StormPolicy | None = msgspec.field(default=None, name="storm-policy")
    regional_capacity: RegionalCapacity | None = msgspec.field(
        default=None, name="regional-capacity"
    )
    mp102: Mp102Rule | None = None


class ConfigFile(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole file."""

    admin: AdminSection = msgspec.field(default_factory=AdminSection)
    codes: ResponseCodes = msgspec.field(default_factory=ResponseCodes)
    users: dict[str, User] = msgspec.field(default_factory=dict)
    allocations: dict[str, Allocation] = msgspec.field(default_factory=dict)
    adt: AdtSection = msgspec.field(default_factory=AdtSection)
    alerts: AlertsSection = msgspec.field(default_factory=AlertsSection)
    traffic: Traffic | None = None

    def items(self) -> dict[str, msgspec.Struct]:
        """Every configured item by its dcc.control key."""
        out: dict[str, msgspec.Struct] = {}
        for user_id, user in self.users.items():
            out[KINDS["users"].key(user_id)] = user
        for user_id, allocation in self.allocations.items():
            out[KINDS["allocations"].key(user_id)] = allocation
        for user_id, values in self.adt.users.items():
            out[KINDS["adt.users"].key(user_id)] = values
        singles = {
            "adt.dcc": self.adt.dcc,
            "alerts.exclusions": self.alerts.exclusions,
            "alerts.storm-policy": self.alerts.storm_policy,
            "alerts.regional-capacity": self.alerts.regional_capacity,
            "alerts.mp102": self.alerts.mp102,
            "traffic": self.traffic,
        }
        out.update({KINDS[k].key(): v for k, v in singles.items() if v is not None})
        return out


def load_config_file(path: Path) -> ConfigFile:
    """Read and validate `path`; raise ConfigFileError naming what is wrong and where."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    try:
        config = msgspec.toml.decode(raw, type=ConfigFile)
    except msgspec.ValidationError as exc:
        raise ConfigFileError(
            f"{path}: {describe(exc, ConfigFile)} (`$` is the top of the file)"
        ) from exc
    except msgspec.DecodeError as exc:
        raise ConfigFileError(f"{path} is not valid TOML: {exc}") from exc
    except RecursionError:
        raise ConfigFileError(
            f"{path}: arrays or tables nested too deeply to read; flatten them"
        ) from None
    from workers.config.model import kind_of_key, validate_item

    for key, body in config.items().items():
        found = kind_of_key(key)
        if found is None:
            user_id = key.partition("/")[2]
            raise ConfigFileError(
                f"{path}: {user_id!r} is not a User ID; write it as 8 hyphen-separated "
                "upper-case hex octets, like 90-B3-D5-1F-30-01-00-00"
            )
        try:
            validate_item(found[0], found[1], body)
        except ValueError as exc:
            raise ConfigFileError(f"{path}: {key}: {exc}") from None
    sha = config.admin.token_sha256
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise ConfigFileError(
            f"{path}: admin.token_sha256 must be 64 lower-case hex digits, e.g. the output of "
            '`printf %s "$TOKEN" | sha256sum`'
        )
    return config


def token_sha256(token: str) -> str:
    """SHA-256 of a token as the config file expects it."""
    return hashlib.sha256(token.encode()).hexdigest()
