"""`dccgate send`: submit Service Requests from JSON lines and print each answer as it comes.

Every line is sent as it is, so a line that is not valid JSON shows the dead-letter path.
The key is the User ID (the first part of `request_id`) when the line has one. Answers are
matched by `request_id` on `dcc.user.responses`, and dead letters by a header this command
puts on each record it sends.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from broker.consumer import start_offsets_at
from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from broker.topics import Topics

__all__ = ["SEND_ID_HEADER", "SendResult", "send_requests"]

SEND_ID_HEADER = "dccgate-send-id"
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
        return f"line {line_no:<5} {'-':<62} dead-lettered   {doc['kind']}: {doc['reason']}"
    return (
        f"line {line_no:<5} {doc['request_id']:<62} {doc['outcome']:<11} "
        f"{doc['response_code']:<5} {doc['reason']}"
    )


async def send_requests(
    lines: Iterable[bytes],
    *,
    settings: KafkaSettings,
    topics: Topics,
    timeout_s: float = 30.0,
    out: TextIO | None = sys.stdout,
    as_json: bool = False,
) -> SendResult:
    """Send each of `lines` to dcc.sr.inbound and collect the answers.

    Returns when every line has an answer (a response or a dead letter) or after
    `timeout_s`, whichever is first.
    """
    session = uuid.uuid4().hex[:12]
    result = SendResult()
    waiting_rid: dict[str, list[int]] = {}
    waiting_line: dict[int, str | None] = {}
    started_ms = time.time_ns() // 1_000_000
    consumer = AIOKafkaConsumer(
        **{**settings.consumer_kwargs(), "client_id": f"dccgate-send-{session}"},
        group_id=None,
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in (topics.user_responses, topics.deadletter)
            for p in sorted(consumer.partitions_for_topic(t) or await _partitions(consumer, t))
        ]
        consumer.assign(tps)
        for tp, offset in (
            await start_offsets_at(consumer, tps, started_ms - _CLOCK_MARGIN_MS)
        ).items():
            consumer.seek(tp, offset)
        async with BatchProducer(settings) as producer:
            await producer.prepare([topics.sr_inbound])
            batch = producer.batch()
            for n, raw in enumerate(lines, start=1):
                line = raw.strip()
                if not line:
                    continue
                key, rid = _key_of(line)
                batch.add(
                    topics.sr_inbound,
                    key,
                    line,
                    headers=[(SEND_ID_HEADER, f"{session}:{n}".encode())],
                )
                waiting_line[n] = rid
                if rid is not None:
                    waiting_rid.setdefault(rid, []).append(n)
                result.sent += 1
            await producer.send(batch)
        deadline = time.monotonic() + timeout_s
        while waiting_line and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in fetched.items():
                for rec in records:
                    if tp.topic == topics.deadletter:
                        _on_deadletter(
                            rec, session, waiting_line, waiting_rid, result, out, as_json
                        )
                    else:
                        _on_answer(rec, waiting_line, waiting_rid, result, out, as_json)
        result.missing = sorted(waiting_line)
    finally:
        await consumer.stop()
    return result


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    parts: set[int] = consumer.partitions_for_topic(topic) or set()
    if not parts:
        raise RuntimeError(f"topic {topic} does not exist; is the gateway running?")
    return parts


def _emit(out: TextIO | None, as_json: bool, kind: str, line_no: int, doc: dict[str, Any]) -> None:
    if out is None:
        return
    if as_json:
        out.write(orjson.dumps({"line": line_no, "kind": kind, **doc}).decode() + "\n")
    else:
        out.write(_format(kind, line_no, doc) + "\n")
    out.flush()


def _on_answer(
    rec: Any,
    waiting_line: dict[int, str | None],
    waiting_rid: dict[str, list[int]],
    result: SendResult,
    out: TextIO | None,
    as_json: bool,
) -> None:
    try:
        doc = orjson.loads(rec.value)
    except orjson.JSONDecodeError:
        return
    lines = waiting_rid.get(doc.get("request_id", ""))
    if not lines:
        return
    line_no = lines.pop(0)
    if not lines:
        del waiting_rid[doc["request_id"]]
    waiting_line.pop(line_no, None)
    result.answers.append(doc)
    _emit(out, as_json, "answer", line_no, doc)


def _on_deadletter(
    rec: Any,
    session: str,
    waiting_line: dict[int, str | None],
    waiting_rid: dict[str, list[int]],
    result: SendResult,
    out: TextIO | None,
    as_json: bool,
) -> None:
    headers = dict(rec.headers or ())
    tag = headers.get(SEND_ID_HEADER, b"").decode(errors="replace")
    sid, _, n = tag.partition(":")
    if sid != session or not n.isdigit() or int(n) not in waiting_line:
        return
    line_no = int(n)
    rid = waiting_line.pop(line_no)
    if rid is not None and line_no in waiting_rid.get(rid, []):
        waiting_rid[rid].remove(line_no)
    doc = {
        "kind": headers.get("dccgate-dlq-kind", b"").decode(errors="replace"),
        "reason": headers.get("dccgate-dlq-reason", b"").decode(errors="replace"),
    }
    result.deadlettered.append(doc)
    _emit(out, as_json, "deadletter", line_no, doc)


def run_send(
    lines: Iterable[bytes],
    *,
    settings: KafkaSettings,
    topics: Topics,
    timeout_s: float,
    as_json: bool,
) -> int:
    """CLI wrapper: exit code 0 when every line got an answer, 1 otherwise."""
    result = asyncio.run(
        send_requests(lines, settings=settings, topics=topics, timeout_s=timeout_s, as_json=as_json)
    )
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
