"""What `AdtEngine.check` answers: pass, or quarantine with the breach that caused it.

The three kinds follow SEC G6 (a), (b)(i) and (b)(ii) and map to the response codes of
`workers/config/codes.py` (`quarantined_<kind>`): `user_adt` Q1, `dcc_adt` Q2, `data_value` Q3.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["PASS", "AdtDecision", "Breach", "BreachKind"]

BreachKind = Literal["user_adt", "dcc_adt", "data_value"]


class Breach(msgspec.Struct, frozen=True, kw_only=True):
    """One rule a request breaks.

    kind: which ADT (see the module docstring). rule: the rule id. observed: what was seen:
    for a count, the number this request would have in the window; for a value, the body
    value (or its text when it has the wrong type). limit: the max (or min) it was held to,
    None when there is no number to compare (wrong type). reason: for the User and the
    operator; names the rule, the observed value and the limit. shadow: the rule is in
    shadow mode, so this breach did not quarantine.
    """

    kind: BreachKind
    rule: str
    observed: int | float | str
    limit: int | float | None
    reason: str
    shadow: bool = False


class AdtDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The ADT answer for one request.

    outcome: "pass" or "quarantine". breach: the first enforcing breach when quarantined
    (data values are checked first, then the User's counts, then the DCC-wide counts).
    shadow_breaches: every shadow rule this request breaks, whatever the outcome: the
    requests those rules "would quarantine".
    """

    outcome: Literal["pass", "quarantine"] = "pass"
    breach: Breach | None = None
    shadow_breaches: tuple[Breach, ...] = ()

    @property
    def quarantined(self) -> bool:
        """True when the request must go to quarantine instead of being processed."""
        return self.outcome == "quarantine"

    @property
    def would_quarantine(self) -> bool:
        """True when at least one shadow rule would have quarantined the request."""
        return bool(self.shadow_breaches)


PASS = AdtDecision()
"""The shared answer for a request that breaks no rule (no allocation on the hot path)."""
