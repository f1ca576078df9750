"""`dccgate send`: submit Service Requests from JSON lines and print each answer as it comes.

Every line is sent as it is, so a line that is not valid JSON shows the dead-letter path.
The key is the User ID (the first part of `request_id`) when the line has one. Answers are
matched by `request_id` on `dcc.user.responses`, and dead letters by a header this command
puts on each record it sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from broker.topics import Topics

__all__ = ["SEND_ID_HEADER", "SendResult", "run_send", "send_requests", "summary_table"]

SEND_ID_HEADER = "dcctool-send-id"
_CLOCK_MARGIN_MS = 5_000


@dataclass
class SendResult:
    """What came back for one `send` run."""

    sent: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list)
    deadlettered: list[dict[str, Any]] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    """Line numbers that got no answer before the timeout."""


def _key_of(line: bytes) -> tuple[bytes | None, str | None]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    if isinstance(doc, dict) and isinstance(doc.get("request_id"), str):
        rid = doc["request_id"]
        return rid.partition(":")[0].encode(), rid
    return None, None


def _format(kind: str, line_no: int, doc: dict[str, Any]) -> str:
    if kind == "deadletter":
        kind, reason = doc["kind"], doc["reason"]
        # The guard's reasons begin with their kind already ("duplicate_key: ...").
        text = reason if reason.startswith(f"{kind}:") else f"{kind}: {reason}"
        return f"line {line_no:<5} {'-':<62} dead-lettered   {text}"
    return (
        f"line {line_no:<5} {doc['request_id']:<62} {doc['outcome']:<11} "
        f"{doc['response_code']:<5} {doc['reason']}"
    )


class _Collector:
    """Matches answers and dead letters to the lines that were sent."""

    def __init__(self, session: str, out: TextIO | None, as_json: bool) -> None:
        self.session = session
        self.out = out
        self.as_json = as_json
        self.result = SendResult()
        self.waiting_rid: dict[str, list[int]] = {}
        self.waiting_line: dict[int, str | None] = {}
        self.done = asyncio.Event()

    def expect(self, line_no: int, request_id: str | None) -> None:
        self.waiting_line[line_no] = request_id
        if request_id is not None:
            self.waiting_rid.setdefault(request_id, []).append(line_no)
        self.result.sent += 1

    def _settle(self, line_no: int, kind: str, doc: dict[str, Any]) -> None:
        rid = self.waiting_line.pop(line_no, None)
        lines = self.waiting_rid.get(rid or "")
        if lines and line_no in lines:
            lines.remove(line_no)
            if not lines:
                del self.waiting_rid[rid or ""]
        _emit(self.out, self.as_json, kind, line_no, doc)
        if not self.waiting_line:
            self.done.set()

    def on_answers(self, records: list[Any]) -> None:
        for rec in records:
            try:
                doc = orjson.loads(rec.value)
            except orjson.JSONDecodeError:
                continue
            lines = (
                self.waiting_rid.get(doc.get("request_id", "")) if isinstance(doc, dict) else None
            )
            if lines:
                self.result.answers.append(doc)
                self._settle(lines[0], "answer", doc)

    def on_deadletters(self, records: list[Any]) -> None:
        for rec in records:
            headers = dict(rec.headers or ())
            tag = headers.get(SEND_ID_HEADER, b"").decode(errors="replace")
            sid, _, n = tag.partition(":")
            if sid != self.session or not n.isdigit() or int(n) not in self.waiting_line:
                continue
            doc = {
                "kind": headers.get("dccgate-dlq-kind", b"").decode(errors="replace"),
                "reason": headers.get("dccgate-dlq-reason", b"").decode(errors="replace"),
            }
            self.result.deadlettered.append(doc)
            self._settle(int(n), "deadletter", doc)


async def send_requests(
    lines: Iterable[bytes],
    *,
    settings: KafkaSettings,
    topics: Topics,
    timeout_s: float = 30.0,
    out: TextIO | None = sys.stdout,
    as_json: bool = False,
    rate_per_s: float | None = None,
) -> SendResult:
    """Send each of `lines` to dcc.sr.inbound and collect the answers.

    With `rate_per_s`, lines go out at that pace (in 50 ms slices), else all at once.
    Returns when every line has an answer (a response or a dead letter) or after
    `timeout_s`, whichever is first.
    """
    session = uuid.uuid4().hex[:12]
    collector = _Collector(session, out, as_json)
    since_ms = time.time_ns() // 1_000_000 - _CLOCK_MARGIN_MS
    followers = [
        TopicFollower(
            settings,
            topics.user_responses,
            collector.on_answers,
            name=f"send-{session}",
            from_ms=since_ms,
        ),
        TopicFollower(
            settings,
            topics.deadletter,
            collector.on_deadletters,
            name=f"send-{session}",
            from_ms=since_ms,
        ),
    ]
    try:
        for follower in followers:
            await follower.start()
        async with BatchProducer(settings) as producer:
            await producer.prepare([topics.sr_inbound])
            batch = producer.batch()
            pace = _Pace(rate_per_s)
            for n, raw in enumerate(lines, start=1):
                line = raw.strip()
                if not line:
                    continue
                key, rid = _key_of(line)
                batch.add(
                    topics.sr_inbound, key, line, [(SEND_ID_HEADER, f"{session}:{n}".encode())]
                )
                collector.expect(n, rid)
                if pace.due():
                    await producer.send(batch)
                    batch = producer.batch()
                    await pace.wait()
            await producer.send(batch)
        if collector.waiting_line:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await collector.done.wait()
    finally:
        for follower in followers:
            await follower.stop()
    collector.result.missing = sorted(collector.waiting_line)
    return collector.result


class _Pace:
    """Paces sending at `rate_per_s` lines a second, in 50 ms slices (None: no pacing)."""

    SLICE_S = 0.05

    def __init__(self, rate_per_s: float | None) -> None:
        self._per_slice = None if rate_per_s is None else max(1, round(rate_per_s * self.SLICE_S))
        self._count = 0
        self._start = time.monotonic()
        self._slices = 0

    def due(self) -> bool:
        if self._per_slice is None:
            return False
        self._count += 1
        return self._count % self._per_slice == 0

    async def wait(self) -> None:
        self._slices += 1
        await asyncio.sleep(max(0.0, self._start + self._slices * self.SLICE_S - time.monotonic()))


def _emit(out: TextIO | None, as_json: bool, kind: str, line_no: int, doc: dict[str, Any]) -> None:
    if out is None:
        return
    if as_json:
        out.write(orjson.dumps({"line": line_no, "kind": kind, **doc}).decode() + "\n")
    else:
        out.write(_format(kind, line_no, doc) + "\n")
    out.flush()


def run_send(
    lines: Iterable[bytes],
    *,
    settings: KafkaSettings,
    topics: Topics,
    timeout_s: float,
    as_json: bool,
    rate_per_s: float | None = None,
    summary: bool = False,
) -> int:
    """CLI wrapper: exit code 0 when every line got an answer, 1 otherwise. With `summary`,
    one table of outcomes per User instead of a line per answer."""
    result = asyncio.run(
        send_requests(
            lines,
            settings=settings,
            topics=topics,
            timeout_s=timeout_s,
            out=None if summary else sys.stdout,
            as_json=as_json,
            rate_per_s=rate_per_s,
        )
    )
    if summary:
        sys.stdout.write(summary_table(result))
    if result.missing:
        sys.stderr.write(
            f"{len(result.missing)} of {result.sent} lines got no answer within {timeout_s:.0f} s "
            f"(lines {result.missing[:20]}{'...' if len(result.missing) > 20 else ''}); "
            "is a router running (dccgate run, or dccgate worker router)?\n"
        )
        return 1
    sys.stderr.write(
        f"{result.sent} sent: {sum(a['outcome'] == 'accepted' for a in result.answers)} accepted, "
        f"{sum(a['outcome'] != 'accepted' for a in result.answers)} not accepted, "
        f"{len(result.deadlettered)} dead-lettered\n"
    )
    return 0


def summary_table(result: SendResult) -> str:
    """Outcomes per User (and response code), one row each, for `--summary`."""
    counts: dict[tuple[str, str, str], int] = {}
    for a in result.answers:
        k = (str(a["user_id"]), str(a["outcome"]), str(a["response_code"]))
        counts[k] = counts.get(k, 0) + 1
    rows = [("USER ID", "OUTCOME", "CODE", "COUNT")] + [
        (*k, str(n)) for k, n in sorted(counts.items())
    ]
    if result.deadlettered:
        rows.append(("-", "dead-lettered", "-", str(len(result.deadlettered))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )
