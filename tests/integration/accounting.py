"""Per-record accounting of what the gateway did with the records a test sent.

A Service Request gets exactly one final outcome: an answer on `dcc.user.responses` (matched
by its `request_id`, unique per run) or a dead letter on `dcc.deadletter` (matched by the
`dccgate-dlq-topic`/`-partition`/`-offset` headers that name the input record). An accepted
request has exactly one forward on `dcc.sr.outbound` (its bytes as sent), a quarantined one
exactly one `quarantined` event on `dcc.sr.quarantine`, and nothing else has either.

A device alert gets exactly one of: a dead letter; forwarded at once (one record per
distinct non-empty recipient on `dcc.alerts.outbound`, found by its `raised_at_ms`, unique
per run); a storm's periodic copy (found the same way); suppressed by storm protection, which
no record names, so it is counted per storm key (device ID, canonical alert code): the
inputs of a key with no outcome of their own must number exactly the sum of its periodic
copies' `throttled_alert_count`; or dropped by the MP102 rule, which only the metric
`dccgate_alerts_mp102_dropped_total` counts, so the power-outage keys may come out short of
their copies by exactly that many, in total, and no other key may.

Every check adds a line to `problems` naming the input record (its bytes, cut) and what
happened to it; an empty list is a clean run.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from broker.schemas import DeviceAlert, UserResponse
from broker.topics import Topics
from tests.integration.hostile import Sent
from tests.integration.live_gateway import Header, Seen
from throttling import normalize_alert_code
from workers.alerts import BOUNDARY_HEADER, STORM_HEADER
from workers.runtime.headers import SRV_HEADER

OWN_PREFIX = "dccgate-"
DLQ_HEADERS = (
    "dccgate-dlq-kind",
    "dccgate-dlq-reason",
    "dccgate-dlq-service",
    "dccgate-dlq-topic",
    "dccgate-dlq-partition",
    "dccgate-dlq-offset",
    "dccgate-dlq-at-ms",
)


def _srv_shaped(value: bytes | None) -> bool:
    return (
        value is not None and re.fullmatch(rb"[0-9]{1,3}(?:\.[0-9]{1,3}){0,3}", value) is not None
    )


def _documented_kinds() -> frozenset[str]:
    """The kinds of docs/contract.md's table "Every kind of dead letter" (first column)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
    table = text.split("Every kind of dead letter", 1)[1].split("\n\n", 2)[1]
    return frozenset(re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M))


DLQ_KINDS = _documented_kinds()
"""Every dead-letter kind docs/contract.md documents: a kind the gateway writes that is not
there fails the accounting (the docs and the code cannot drift apart)."""

_JSON_WS = b" \t\r\n"
_decode_answer = msgspec.json.Decoder(UserResponse).decode
_decode_alert = msgspec.json.Decoder(DeviceAlert).decode


class _QuarantineEvent(msgspec.Struct):
    event: str
    id: str = ""
    request: msgspec.Raw = msgspec.Raw(b"null")


_decode_event = msgspec.json.Decoder(_QuarantineEvent).decode


def passed_on(headers: Iterable[Header]) -> list[Header]:
    """The headers a sender set that the gateway keeps: all but its own prefix's."""
    return [(k, v) for k, v in headers if not k.lower().startswith(OWN_PREFIX)]


def header(record: Seen, name: str) -> bytes | None:
    """The first value of header `name` on `record` (None if absent)."""
    return next((v for k, v in record.headers if k == name), None)


def dead_letters(records: Iterable[Seen], topic: str) -> dict[tuple[int, int], list[Seen]]:
    """Dead letters of records read from `topic`, by the (partition, offset) they name."""
    found: dict[tuple[int, int], list[Seen]] = collections.defaultdict(list)
    for dl in records:
        if header(dl, "dccgate-dlq-topic") != topic.encode():
            continue
        partition = int(header(dl, "dccgate-dlq-partition") or b"-1")
        offset = int(header(dl, "dccgate-dlq-offset") or b"-1")
        found[(partition, offset)].append(dl)
    return found


def kind(dl: Seen) -> str:
    """A dead letter's `dccgate-dlq-kind`."""
    return (header(dl, "dccgate-dlq-kind") or b"").decode()


def reason(dl: Seen) -> str:
    """A dead letter's `dccgate-dlq-reason`."""
    return (header(dl, "dccgate-dlq-reason") or b"").decode(errors="replace")


def check_dead_letter(dl: Seen, sent: Sent, problems: list[str]) -> None:
    """The dead letter carries the input byte for byte, the sender's headers less any that
    claim the gateway's prefix, and each dead-letter header exactly once."""
    if (dl.key, dl.value) != (sent.key, sent.value):
        problems.append(f"dead letter's key or value differs from the input: {sent.describe()}")
    own = [k for k, _ in dl.headers if k.lower().startswith(OWN_PREFIX)]
    if sorted(own) != sorted(DLQ_HEADERS):
        problems.append(
            f"dead letter's own headers are {own}, not each of {DLQ_HEADERS} once (a forged "
            f"header passed?): {sent.describe()}"
        )
    if passed_on(dl.headers) != passed_on(sent.headers):
        problems.append(f"dead letter's other headers differ from the input's: {sent.describe()}")
    if kind(dl) not in DLQ_KINDS:
        problems.append(f"dead letter kind {kind(dl)!r} is not documented: {sent.describe()}")


@dataclass
class RequestAccount:
    """What happened to each Service Request sent, and every problem found."""

    problems: list[str] = field(default_factory=list)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    """`dead letter: <kind>` or `<outcome> <code>`: how many records got each."""
    missing: list[Sent] = field(default_factory=list)
    """Records with no outcome yet."""
    answers: int = 0
    dead_letters: int = 0
    processing_errors: list[str] = field(default_factory=list)


def account_requests(
    sent: Sequence[Sent], records: dict[str, list[Seen]], topics: Topics
) -> RequestAccount:
    """Match every request sent to its answer or dead letter, its forward, its quarantine."""
    acc = RequestAccount()
    problems = acc.problems
    dls = dead_letters(records[topics.deadletter], topics.sr_inbound)
    answers: dict[str, list[tuple[Seen, UserResponse]]] = collections.defaultdict(list)
    for rec in records[topics.user_responses]:
        try:
            answer = _decode_answer(rec.value or b"")
        except msgspec.DecodeError as exc:
            problems.append(f"an answer that is not a UserResponse ({exc}): {rec.value!r:.300}")
            continue
        answers[answer.request_id].append((rec, answer))
        # An answer carries no header of the sender's; only the router's own `dccgate-srv`,
        # and only with an SRV-shaped value (never the sender's junk echoed).
        own = [(n, v) for n, v in rec.headers or () if n == SRV_HEADER and _srv_shaped(v)]
        if len(own) != len(rec.headers or ()) or len(own) > 1:
            problems.append(f"an answer carries headers {rec.headers!r:.200}: {answer}")
    forwards: dict[bytes | None, list[Seen]] = collections.defaultdict(list)
    for rec in records[topics.sr_outbound]:
        forwards[rec.value].append(rec)
    held: dict[str, list[_QuarantineEvent]] = collections.defaultdict(list)
    for rec in records[topics.sr_quarantine]:
        if rec.headers:
            problems.append(f"a quarantine record carries headers {rec.headers!r:.200}")
        event = _decode_event(rec.value or b"")
        if event.event == "quarantined":
            held[event.id].append(event)
    by_place = {(s.partition, s.offset): s for s in sent}
    tags = {s.tag for s in sent if isinstance(s.tag, str)}
    for place, found in dls.items():
        if place not in by_place:
            problems.append(f"dead letter naming {place}, which no test record is: {found}")
    for rid, got in answers.items():
        if rid not in tags:
            problems.append(
                f"{len(got)} answer(s) for request_id {rid!r:.120}, which no test record has: "
                f"{[a for _, a in got]!r:.600}"
            )
    for s in sent:
        mine_dl = dls.get((s.partition, s.offset), [])
        mine_answers = answers.get(s.tag, []) if isinstance(s.tag, str) else []
        n = len(mine_dl) + len(mine_answers)
        if n == 0:
            acc.missing.append(s)
            continue
        if n > 1:
            problems.append(
                f"{n} outcomes for one request: dead letters "
                f"{[(kind(d), reason(d)) for d in mine_dl]}, answers "
                f"{[(a.outcome, a.response_code, a.reason[:120]) for _, a in mine_answers]}; "
                f"input {s.describe()}"
            )
        for dl in mine_dl:
            acc.dead_letters += 1
            acc.outcomes[f"dead letter: {kind(dl)}"] += 1
            check_dead_letter(dl, s, problems)
            if kind(dl) == "processing_error":
                acc.processing_errors.append(f"{reason(dl)}; input {s.describe()}")
        for _, answer in mine_answers:
            acc.answers += 1
            acc.outcomes[f"{answer.outcome} {answer.response_code}"] += 1
        if s.expect is not None and [kind(d) for d in mine_dl] != [s.expect]:
            problems.append(
                f"expected one dead letter {s.expect}, got dead letters "
                f"{[(kind(d), reason(d)) for d in mine_dl]} and answers "
                f"{[(a.outcome, a.reason[:120]) for _, a in mine_answers]}: {s.describe()}"
            )
        accepted = sum(1 for _, a in mine_answers if a.outcome == "accepted")
        quarantined = sum(1 for _, a in mine_answers if a.outcome == "quarantined")
        fwd = forwards.get(s.value, []) if s.value is not None else []
        if len(fwd) != accepted:
            problems.append(
                f"{len(fwd)} forwards for a request answered accepted {accepted} time(s): "
                f"{s.describe()}"
            )
        for rec in fwd:
            if passed_on(s.headers) != list(rec.headers):
                problems.append(
                    f"forward headers {[k for k, _ in rec.headers][:10]} are not the sender's "
                    f"less the gateway's prefix: {s.describe()}"
                )
        events = held.get(s.tag, []) if isinstance(s.tag, str) else []
        if len(events) != quarantined:
            problems.append(
                f"{len(events)} quarantine events for a request answered quarantined "
                f"{quarantined} time(s): {s.describe()}"
            )
        for event in events:
            # A JSON reader of the log (msgspec's Raw, so the quarantine service too) gets
            # the request without the whitespace around it: that much may differ.
            if s.value is None or bytes(event.request) != s.value.strip(_JSON_WS):
                problems.append(f"the quarantine holds other bytes than sent: {s.describe()}")
    return acc


@dataclass
class AlertAccount:
    """What happened to each device alert sent, and every problem found."""

    problems: list[str] = field(default_factory=list)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    missing: list[Sent] = field(default_factory=list)
    """Alerts with no outcome (neither named by an output nor counted by a storm)."""
    dead_letters: int = 0
    at_once: int = 0
    periodic: int = 0
    suppressed: int = 0
    """The sum of the periodic copies' `throttled_alert_count`."""
    unaccounted: int = 0
    """Outage alerts no output names and no storm counts: MP102's to drop."""
    storms: int = 0
    processing_errors: list[str] = field(default_factory=list)


def _storm_key(alert: DeviceAlert) -> tuple[str, str]:
    return (alert.device_id, normalize_alert_code(alert.alert_code))


def account_alerts(
    sent: Sequence[Sent],
    records: dict[str, list[Seen]],
    topics: Topics,
    *,
    outage_codes: frozenset[str],
) -> AlertAccount:
    """Match every alert sent to its dead letter, forwards and storm copies (see module)."""
    acc = AlertAccount()
    problems = acc.problems
    dls = dead_letters(records[topics.deadletter], topics.alerts_inbound)
    at_once: dict[int, list[Seen]] = collections.defaultdict(list)
    at_once_alerts: dict[int, DeviceAlert] = {}
    copies: dict[tuple[str | None, bytes | None, bytes | None], DeviceAlert] = {}
    for rec in records[topics.alerts_outbound]:
        try:
            alert = _decode_alert(rec.value or b"")
        except msgspec.DecodeError as exc:
            problems.append(f"an outbound alert that does not decode ({exc}): {rec.value!r:.300}")
            continue
        copy_kind = header(rec, STORM_HEADER)
        own = sorted(k for k, _ in rec.headers if k.lower().startswith(OWN_PREFIX))
        want = sorted([STORM_HEADER, BOUNDARY_HEADER]) if copy_kind is not None else []
        if own != want or len(rec.headers) != len(want):
            problems.append(f"outbound alert headers {rec.headers!r:.300} (expected {want})")
        if copy_kind is None:
            at_once[alert.raised_at_ms].append(rec)
            at_once_alerts[alert.raised_at_ms] = alert
            if alert.throttled_alert_count is not None or alert.throttled_alert_sequence_id:
                problems.append(f"an alert forwarded at once carries throttled_* fields: {alert}")
        else:
            copies.setdefault(
                (alert.throttled_alert_sequence_id, header(rec, BOUNDARY_HEADER), copy_kind),
                alert,
            )
    periodic = {k: a for k, a in copies.items() if k[2] == b"periodic"}
    finals = {k[0]: a for k, a in copies.items() if k[2] == b"final"}
    periodic_tags: dict[int, DeviceAlert] = {}
    suppressed_by_key: collections.Counter[tuple[str, str]] = collections.Counter()
    totals_by_storm: collections.Counter[str | None] = collections.Counter()
    for (seq, _, _), alert in periodic.items():
        if alert.raised_at_ms in periodic_tags:
            problems.append(f"one alert is the periodic copy of two boundaries: {alert}")
        periodic_tags[alert.raised_at_ms] = alert
        suppressed_by_key[_storm_key(alert)] += alert.throttled_alert_count or 0
        totals_by_storm[seq] += alert.throttled_alert_count or 0
    acc.storms = len({k[0] for k in copies})
    for seq in {k[0] for k in copies}:
        final = finals.get(seq)
        if final is None:
            problems.append(f"storm {seq} has no final copy (not over yet?)")
        elif final.throttled_alert_count != totals_by_storm[seq]:
            problems.append(
                f"storm {seq}: final count {final.throttled_alert_count}, periodic copies "
                f"add up to {totals_by_storm[seq]}"
            )
    by_place = {(s.partition, s.offset): s for s in sent}
    by_tag = {s.tag: s for s in sent if isinstance(s.tag, int)}
    for place, found in dls.items():
        if place not in by_place:
            problems.append(f"dead letter naming {place}, which no test alert is: {found}")
    for raised in set(at_once) | set(periodic_tags):
        if raised not in by_tag:
            problems.append(f"an outbound alert for no test alert: raised_at_ms {raised}")
    residual: collections.Counter[tuple[str, str]] = collections.Counter()
    for s in sent:
        mine_dl = dls.get((s.partition, s.offset), [])
        tag = s.tag if isinstance(s.tag, int) else None
        forwarded = at_once.get(tag, []) if tag is not None else []
        copy = periodic_tags.get(tag) if tag is not None else None
        named = len(mine_dl) + (1 if forwarded else 0) + (1 if copy is not None else 0)
        if named > 1:
            problems.append(
                f"{named} outcomes for one alert: dead letters "
                f"{[(kind(d), reason(d)) for d in mine_dl]}, forwarded at once to "
                f"{[r.key for r in forwarded]!r:.200}, periodic copy {copy is not None}: "
                f"{s.describe()}"
            )
        for dl in mine_dl:
            acc.dead_letters += 1
            acc.outcomes[f"dead letter: {kind(dl)}"] += 1
            check_dead_letter(dl, s, problems)
            if kind(dl) == "processing_error":
                acc.processing_errors.append(f"{reason(dl)}; input {s.describe()}")
        if s.expect is not None and [kind(d) for d in mine_dl] != [s.expect]:
            problems.append(
                f"expected one dead letter {s.expect}, got "
                f"{[(kind(d), reason(d)) for d in mine_dl]}: {s.describe()}"
            )
        if forwarded:
            acc.at_once += 1
            acc.outcomes["forwarded at once"] += 1
            _check_recipients(s, forwarded, problems)
            if _as_sent(s.value) and any(rec.value != s.value for rec in forwarded):
                problems.append(f"an alert forwarded with other bytes than sent: {s.describe()}")
        if copy is not None:
            acc.periodic += 1
            acc.outcomes["periodic storm copy"] += 1
        if named == 0:
            if s.storm_key is None or tag is None:
                acc.missing.append(s)
            else:
                residual[s.storm_key] += 1
    for key in set(residual) | set(suppressed_by_key):
        short = residual[key] - suppressed_by_key[key]
        if short < 0 or (short > 0 and key[1] not in outage_codes):
            problems.append(
                f"storm key {key!r:.120}: {residual[key]} alerts neither forwarded nor dead-"
                f"lettered, but the periodic copies count {suppressed_by_key[key]} suppressed"
            )
        elif short > 0:
            acc.unaccounted += short
    acc.suppressed = sum(suppressed_by_key.values())
    acc.outcomes["suppressed (counted on copies)"] = acc.suppressed
    return acc


def _as_sent(value: bytes | None) -> bool:
    """An alert is forwarded byte for byte unless it came with the throttled_* fields set
    (only the gateway sets them: it writes the alert again without them)."""
    if value is None:
        return False
    alert = _decode_alert(value)
    return alert.throttled_alert_count is None and alert.throttled_alert_sequence_id is None


def _check_recipients(s: Sent, forwarded: list[Seen], problems: list[str]) -> None:
    keys = collections.Counter(rec.key for rec in forwarded)
    if s.recipients is None:
        problems.append(f"an alert forwarded whose recipients are not strings: {s.describe()}")
        return
    want = {r.encode() for r in s.recipients if r}
    if set(keys) != want or any(n != 1 for n in keys.values()):
        problems.append(
            f"alert forwarded to {dict(keys)!r:.300}, expected each of {want!r:.300} once: "
            f"{s.describe()}"
        )


def summary(outcomes: collections.Counter[str]) -> str:
    """The outcome counts, one per line, most common first."""
    return "\n".join(f"  {n:6d}  {what}" for what, n in outcomes.most_common())


def sample(items: Sequence[Any], n: int = 15) -> str:
    """The first `n` items, one per line, and how many more."""
    lines = [f"  - {item}" for item in items[:n]]
    if len(items) > n:
        lines.append(f"  ... and {len(items) - n} more")
    return "\n".join(lines)
