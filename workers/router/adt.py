"""Anomaly detection (SEC G6, Appendix AA) in the router: values from `dcc.control`.

The decisions are `adt.AdtEngine`'s (pure). This module keeps the engine's tables in step
with the configuration: each User's ADT values and the DCC-wide ones, recompiled only for
the items whose version changed.
"""

from __future__ import annotations

import logging

from adt import AdtEngine, AdtValues
from workers.config.snapshot import ConfigSnapshot

__all__ = ["AdtControl"]

log = logging.getLogger(__name__)

_USERS = "adt.users/"


class AdtControl:
    """The router's ADT engine and the configuration versions it was built from.

    `configured` is False while no ADT values exist at all: the router then skips the
    check entirely.
    """

    def __init__(self, engine: AdtEngine | None = None) -> None:
        self.engine = engine or AdtEngine()
        self.configured = False
        self._versions: dict[str, int] = {}

    def apply(self, snapshot: ConfigSnapshot) -> None:
        """Take a new configuration (a control-reader listener)."""
        seen: set[str] = set()
        for key, item in snapshot.items.items():
            if not (key.startswith(_USERS) or key == "adt.dcc"):
                continue
            seen.add(key)
            if self._versions.get(key) == item.version:
                continue
            if key == "adt.dcc":
                self.engine.set_dcc_values(item.body)
            else:
                self.engine.set_user_values(key[len(_USERS) :], item.body)
            self._versions[key] = item.version
        for key in set(self._versions) - seen:
            if key == "adt.dcc":
                self.engine.set_dcc_values(AdtValues())
            else:
                self.engine.set_user_values(key[len(_USERS) :], None)
            del self._versions[key]
        was, self.configured = self.configured, bool(self._versions)
        if was != self.configured:
            log.info("anomaly detection %s", "on" if self.configured else "off (no ADT values)")
