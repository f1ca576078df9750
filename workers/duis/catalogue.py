"""The DUIS Service Reference Variant (SRV) catalogue: which SRVs exist and who may send them.

The facts live in `srv_catalogue.toml` next to this module (DOMAIN.md section 2.3); this
module turns that file into frozen `Srv` records and refuses a malformed file with an error
that names the SRV and the key to fix.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from broker.schemas import USER_ROLES

__all__ = ["SIGNED_PRE_COMMAND_ELEMENT", "CatalogueError", "Srv", "load_catalogue"]

_PACKAGED_NAME = "srv_catalogue.toml"

SIGNED_PRE_COMMAND_ELEMENT = "SignedPreCommand"
"""The `sr:Body` child of every Signed Pre-Command (CV 5, 6, 7), whatever its SRV: the
GBCS command the User signed, in `GBCSPayload` (DUIS Schema V5.4, type SignedPreCommand)."""

# Command Variant sets (DOMAIN.md section 2.2). Built once: `allowed_command_variants` hands
# out these shared objects, so asking for them on the hot path allocates nothing.
_CV_NON_DEVICE: frozenset[int] = frozenset({8})
_CV_CRITICAL: frozenset[int] = frozenset({4, 5, 6, 7})
_CV_DEVICE: frozenset[int] = frozenset({1, 2, 3})

# "4.1.1", "8.2", "14.1": dot-separated decimal numbers, at least two of them.
_SRV_KEY = re.compile(r"[0-9]+(?:\.[0-9]+)+")


class CatalogueError(ValueError):
    """The SRV catalogue file is unreadable or malformed; the message names what to fix."""


class Srv(msgspec.Struct, frozen=True, kw_only=True):
    """One DUIS Service Reference Variant, e.g. 4.1.1 "Read Instantaneous Import Registers".

    `roles` holds the User Role abbreviations (DOMAIN.md section 1) allowed to send it;
    empty when no User Role may.
    """

    srv: str
    name: str
    body_element: str
    """The local name of the one child of `sr:Body` a request for this SRV carries
    (e.g. `ReadInstantaneousImportRegisters`); a Signed Pre-Command (CV 5-7) carries
    `SIGNED_PRE_COMMAND_ELEMENT` instead."""
    critical: bool
    non_device: bool
    schedulable: bool
    roles: frozenset[str]

    @property
    def allowed_command_variants(self) -> frozenset[int]:
        """The Command Variants (DOMAIN.md section 2.2) this SRV may be sent with.

        - A non-device SRV is answered by the DCC's Non-Device Service: CV 8 only.
        - A critical SRV goes first to Transform as CV 4; the User signs the returned
          Pre-Command and sends it as CV 5 (over the WAN), 6 (local delivery) or 7 (both).
        - Any other (non-critical device) SRV: CV 1 (WAN), 2 (local delivery) or 3 (both).

        Non-device is tested first; the catalogue has no SRV that is both.
        """
        if self.non_device:
            return _CV_NON_DEVICE
        if self.critical:
            return _CV_CRITICAL
        return _CV_DEVICE


class _Row(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One `[srv."X.Y"]` table as written in the TOML file, before the role check."""

    name: Annotated[str, Meta(min_length=1)]
    body_element: Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9]{0,99}$")]
    critical: bool
    non_device: bool
    schedulable: bool
    roles: list[str]


def load_catalogue(path: Path | None = None) -> Mapping[str, Srv]:
    """Load the SRV catalogue, keyed by SRV (e.g. "4.1.1").

    path: a TOML file in the shape of the packaged `srv_catalogue.toml`; default None, the
    packaged file, parsed once per process and shared (the mapping is read-only).

    Raises CatalogueError when the file cannot be read or parsed, has no SRVs, or a row has
    a missing, unknown or mistyped key or an unknown User Role.
    """
    if path is None:
        return _load_packaged()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"cannot read SRV catalogue {path}: {exc}") from exc
    return _parse(text, source=str(path))


@functools.cache
def _load_packaged() -> Mapping[str, Srv]:
    resource = resources.files(__package__).joinpath(_PACKAGED_NAME)
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(
            f"cannot read the packaged SRV catalogue {_PACKAGED_NAME}: {exc}; "
            "reinstall dccgate (the file is package data of workers.duis)"
        ) from exc
    return _parse(text, source=f"packaged {_PACKAGED_NAME}")


def _parse(text: str, *, source: str) -> Mapping[str, Srv]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"SRV catalogue {source} is not valid TOML: {exc}") from exc
    extra = sorted(set(document) - {"srv"})
    if extra:
        raise CatalogueError(
            f"SRV catalogue {source}: unexpected top-level key(s) {extra}; "
            'only [srv."X.Y"] tables belong there'
        )
    table = document.get("srv")
    if not isinstance(table, dict) or not table:
        raise CatalogueError(f'SRV catalogue {source} has no [srv."X.Y"] tables')
    catalogue = {key: _parse_row(key, value, source=source) for key, value in table.items()}
    return MappingProxyType(catalogue)


def _parse_row(key: str, value: Any, *, source: str) -> Srv:
    where = f"SRV catalogue {source}, SRV {key!r}"
    if not _SRV_KEY.fullmatch(key):
        raise CatalogueError(f'{where}: the key must look like "4.1.1" (dot-separated numbers)')
    try:
        row = msgspec.convert(value, _Row)
    except msgspec.ValidationError as exc:
        # msgspec names the key, e.g. "Object missing required field `critical`".
        raise CatalogueError(f"{where}: {exc}") from exc
    unknown = sorted(set(row.roles) - USER_ROLES)
    if unknown:
        raise CatalogueError(
            f"{where}: key 'roles' has unknown User Role(s) {unknown}; "
            f"known roles: {', '.join(sorted(USER_ROLES))}"
        )
    if len(set(row.roles)) != len(row.roles):
        raise CatalogueError(f"{where}: key 'roles' lists a User Role twice: {row.roles}")
    return Srv(
        srv=key,
        name=row.name,
        body_element=row.body_element,
        critical=row.critical,
        non_device=row.non_device,
        schedulable=row.schedulable,
        roles=frozenset(row.roles),
    )
