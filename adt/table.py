"""ADT values compiled for one owner (a User, or the DCC): ids resolved, `shadow` settled,
exceptions attached to their thresholds, rules grouped by SRV for the hot path.

Compiling is also the full validation of values that need their owner: derived ids must be
unique, DCC-wide thresholds name one SRV, exceptions name this table's thresholds. Build a
table to validate values before publishing them (the admin API), then hand the values to
`AdtEngine`, which builds its own.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from adt.config import ALL_SRVS, AdtValues, Threshold, ValueRule
from adt.decision import Breach, BreachKind
from adt.errors import AdtConfigError
from adt.exception_windows import RaisedLimit, compile_exceptions, limit_at
from adt.values import ValueCheck

__all__ = ["AdtTable", "CountRule", "Scope", "counter_key", "format_window"]

Scope = Literal["user", "dcc"]

_SHADOW_NOTE = " (shadow mode: not enforced)"


def format_window(window_s: int) -> str:
    """A window length for a reason text: "1 h", "1 day", "90 s"."""
    for unit_s, one, many in ((86_400, "day", "days"), (3_600, "h", "h"), (60, "min", "min")):
        if window_s % unit_s == 0:
            n = window_s // unit_s
            return f"{n} {one if n == 1 else many}"
    return f"{window_s} s"


class CountRule(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A compiled count threshold. `key`: "<srv>/<window_s>", the counter it reads.

    A table is kept per User with values, so a rule keeps no string it can make when asked
    (`id` when derived, `key`), and is not tracked by the garbage collector (gc=False: it
    holds strings, numbers and a tuple of named tuples, never a cycle).
    """

    given_id: str | None = None
    """The threshold's own id, or None: `id` is then derived from the owner, SRV and window."""
    user_id: str | None = None
    """The owning User, None for a DCC-wide rule (for a derived `id`)."""
    kind: BreachKind
    owner: str  # "User <id>" or "all Users", for reason texts
    srv: str
    window_s: int
    max: int
    shadow: bool
    raised: tuple[RaisedLimit, ...] = ()
    rank: int = 0
    """Its position in its table's `count_rules` (usage views and snapshots keep that
    order): kept here so a key made on first use finds its rules' ranks without a scan."""

    @property
    def id(self) -> str:
        """The rule's id: its own, else "user:<User ID>:<srv>:<window_s>" for a User's and
        "dcc:<srv>:<window_s>" for a DCC-wide one."""
        if self.given_id is not None:
            return self.given_id
        return _derived_id(self.user_id, self.srv, self.window_s)

    @property
    def key(self) -> str:
        """The counter this threshold reads (`counter_key`): computed when asked, not kept,
        as a table is kept per User with values (tens of bytes a threshold)."""
        return counter_key(self.srv, self.window_s)

    def limit_at(self, now_s: float) -> tuple[int, str | None]:
        """(the max in force at `now_s`, the exception id that raised it or None)."""
        if not self.raised:
            return self.max, None
        return limit_at(self.max, self.raised, now_s)

    def breach(self, observed: int, limit: int, exception_id: str | None) -> Breach:
        """The breach when this request would be number `observed` in the window."""
        what = "all SRVs" if self.srv == ALL_SRVS else f"SRV {self.srv}"
        label = "User ADT" if self.kind == "user_adt" else "DCC-wide ADT"
        reason = (
            f"{label} {self.id}: this would be request {observed} of {what} for "
            f"{self.owner} within {format_window(self.window_s)}; the limit is {limit}"
        )
        if exception_id is not None:
            reason += f" (raised from {self.max} by exception {exception_id})"
        if self.shadow:
            reason += _SHADOW_NOTE
        return Breach(
            kind=self.kind,
            rule=self.id,
            observed=observed,
            limit=limit,
            reason=reason,
            shadow=self.shadow,
        )


def counter_key(srv: str, window_s: int) -> str:
    """The key of the counter a threshold reads: "<srv>/<window_s>", e.g. "7.2/3600"."""
    return f"{srv}/{window_s}"


class AdtTable(msgspec.Struct, frozen=True, kw_only=True):
    """One owner's compiled ADT values; build with `for_user` or `for_dcc`.

    counts_by_srv: srv (or "*") -> its count rules, shortest window first.
    values_by_srv: srv -> its value checks, in the order given.
    """

    scope: Scope
    user_id: str | None
    values: AdtValues
    count_rules: tuple[CountRule, ...]
    value_checks: tuple[ValueCheck, ...]
    counts_by_srv: dict[str, tuple[CountRule, ...]]
    values_by_srv: dict[str, tuple[ValueCheck, ...]]

    @classmethod
    def for_user(cls, user_id: str, values: AdtValues) -> AdtTable:
        """A User's own ADT values (SEC G6 (a)); raise AdtConfigError if they do not hold."""
        if not isinstance(user_id, str) or not user_id:
            raise AdtConfigError(f"user_id must be a non-empty User ID, got {user_id!r}")
        return _compile("user", user_id, values)

    @classmethod
    def for_dcc(cls, values: AdtValues) -> AdtTable:
        """The DCC-wide ADT values (SEC G6 (b)); raise AdtConfigError if they do not hold."""
        return _compile("dcc", None, values)

    def rule(self, rule_id: str) -> CountRule | ValueCheck | None:
        """The rule with this id, or None."""
        for rule in self.count_rules:
            if rule.id == rule_id:
                return rule
        for check in self.value_checks:
            if check.id == rule_id:
                return check
        return None


def _derived_id(user_id: str | None, srv: str, window_s: int) -> str:
    if user_id is not None:
        return f"user:{user_id}:{srv}:{window_s}"
    return f"dcc:{srv}:{window_s}"


def _threshold_id(scope: Scope, user_id: str | None, t: Threshold) -> str:
    if t.id is not None:
        return t.id
    return _derived_id(user_id if scope == "user" else None, t.srv, t.window_s)


def _value_rule_id(scope: Scope, user_id: str | None, r: ValueRule) -> str:
    if r.id is not None:
        return r.id
    if scope == "user":
        return f"user:{user_id}:value:{r.srv}:{r.field}"
    return f"value:{r.srv}:{r.field}"


def _compile(scope: Scope, user_id: str | None, values: AdtValues) -> AdtTable:
    ids: dict[str, str] = {}

    def claim(rule_id: str, where: str) -> None:
        other = ids.setdefault(rule_id, where)
        if other != where:
            raise AdtConfigError(
                f"{other} and {where} have the same id {rule_id}; give one of them an explicit "
                "unique id"
            )

    owner = f"User {user_id}" if scope == "user" else "all Users"
    kind: BreachKind = "user_adt" if scope == "user" else "dcc_adt"
    plain: list[CountRule] = []
    for i, t in enumerate(values.thresholds):
        if scope == "dcc" and t.srv == ALL_SRVS:
            raise AdtConfigError(
                f'thresholds[{i}]: srv "*" is for User thresholds only; a DCC-wide ADT counts '
                "one SRV across all Users (SEC G6 (b)(i), communications of a particular "
                "type), and the total across all SRVs is traffic management's system "
                "operating threshold (SECMP0067); give one threshold per SRV"
            )
        rule_id = _threshold_id(scope, user_id, t)
        claim(rule_id, f"thresholds[{i}]")
        plain.append(
            CountRule(
                given_id=t.id,
                user_id=user_id if scope == "user" else None,
                kind=kind,
                owner=owner,
                srv=t.srv,
                window_s=t.window_s,
                max=t.max,
                shadow=values.shadow or t.shadow,
                rank=i,
            )
        )
    checks: list[ValueCheck] = []
    for i, r in enumerate(values.value_rules):
        rule_id = _value_rule_id(scope, user_id, r)
        claim(rule_id, f"value_rules[{i}]")
        checks.append(
            ValueCheck(
                id=rule_id,
                srv=r.srv,
                field=r.field,
                min=r.min,
                max=r.max,
                max_days_ahead=r.max_days_ahead,
                shadow=values.shadow or r.shadow,
            )
        )
    raised = compile_exceptions(
        values.exceptions, {r.id: r.max for r in plain}, {c.id for c in checks}
    )
    rules = tuple(
        msgspec.structs.replace(r, raised=raised[r.id]) if r.id in raised else r for r in plain
    )
    counts_by_srv: dict[str, list[CountRule]] = {}
    for rule in sorted(rules, key=lambda rule: rule.window_s):
        counts_by_srv.setdefault(rule.srv, []).append(rule)
    values_by_srv: dict[str, list[ValueCheck]] = {}
    for c in checks:
        values_by_srv.setdefault(c.srv, []).append(c)
    return AdtTable(
        scope=scope,
        user_id=user_id,
        values=values,
        count_rules=rules,
        value_checks=tuple(checks),
        counts_by_srv={srv: tuple(rs) for srv, rs in counts_by_srv.items()},
        values_by_srv={srv: tuple(cs) for srv, cs in values_by_srv.items()},
    )
