"""Regression tests for the records that stopped `dccgate run` (issue 12, "Why"): each one now
gets a dead letter or an answer, the gateway stays up (the process runs, `/healthz` is 200),
and the good record sent right behind it, on the same partition, is still decided.

The first group runs against one live `dccgate run` (router, alert worker and admin API in
one process, as operators run it) with a data-value ADT rule on SRV 2.2 (`amount` from 0 to
500). The batch-level cases need to make `process()` itself fail, so they run a router in
this process with a failure injected around its processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import orjson
import pytest
from aiokafka.record import default_records
from prometheus_client import CollectorRegistry

from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch, partition_for_key
from broker.schemas import UserResponse
from broker.settings import KafkaSettings
from broker.topics import Topics
from tests.integration.accounting import check_dead_letter, dead_letters, kind, reason
from tests.integration.brokers import SessionBroker, tuned_kafka_settings
from tests.integration.helpers import read_topic, wait_until_async
from tests.integration.hostile import USER_MAIN, Sent
from tests.integration.hostile_json import nested
from tests.integration.live_gateway import LiveGateway, Seen, Sender, TopicLog, live_gateway
from workers.config.settings import Settings
from workers.router.processor import RouterProcessor, RouterReport
from workers.router.service import RouterService, build_router
from workers.runtime.metrics import CommonMetrics

TARGET = "00-DB-12-34-56-78-90-A0"
DEVICE = "00-DB-00-00-00-00-AA-01"
VALUE_RULE = {"srv": "2.2", "field": "amount", "min": 0, "max": 500}
# How long a record may take to be decided before the test calls the gateway hung: a
# deadline so CI fails with the log instead of stalling, not a speed check.
DECIDED_S = 30.0

_counter = iter(range(time.time_ns() // 1_000_000, 2**63))


class Outcome(NamedTuple):
    """What one record sent got: its dead letters, answers and forwards."""

    dead_letters: list[Seen]
    answers: list[UserResponse]
    forwards: list[Seen]


def request_id() -> str:
    """A fresh request_id of USER_MAIN (its COUNTER rises, so it is not a replay)."""
    return f"{USER_MAIN}:{TARGET}:{next(_counter)}"


def request(
    rid: str, *, srv: str = "4.1.1", cv: int = 1, body: bytes = b"{}", **extra: Any
) -> bytes:
    """A Service Request's JSON with `body` (raw JSON) and extra fields as given."""
    head = orjson.dumps({"request_id": rid, "user_role": "IS", "srv": srv, "command_variant": cv})
    tail = b"".join(b',"%s":%s' % (k.encode(), orjson.dumps(v)) for k, v in extra.items())
    return head[:-1] + b',"body":' + body + tail + b"}"


def record(value: bytes | None, tag: str | int | None, key: str = USER_MAIN) -> Sent:
    """One record to send (its `tag`: what an answer or forward is found by)."""
    return Sent(
        index=0, key=key.encode(), value=value, headers=[], timestamp_ms=None, tag=tag, shape=[]
    )


def alert(raised_at_ms: int, *, payload: bytes | None = None, **extra: Any) -> bytes:
    """A device alert of DEVICE for USER_MAIN; `payload` raw JSON if given."""
    doc = {
        "device_id": DEVICE, "alert_code": "8F1C", "recipients": [USER_MAIN],
        "raised_at_ms": raised_at_ms, "payload": "ok", **extra,
    }  # fmt: skip
    text = orjson.dumps(doc)
    if payload is not None:
        text = text.replace(b'"payload":"ok"', b'"payload":' + payload)
    return text


class Live(NamedTuple):
    gateway: LiveGateway
    topics: Topics
    kafka: KafkaSettings


@pytest.fixture(scope="module")
def live(kafka_broker: SessionBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One `dccgate run` for the module: USER_MAIN registered, a data-value rule on 2.2."""
    settings = Settings(topic_prefix=f"h{uuid.uuid4().hex[:10]}.", partitions=3)
    kafka = tuned_kafka_settings(kafka_broker, settings)
    log = tmp_path_factory.mktemp("hostile") / "gateway.log"
    with live_gateway(kafka_broker.bootstrap, settings, log) as gw:
        gw.put(f"/v1/users/{USER_MAIN}", {"name": "main", "roles": ["IS", "GS"]})
        gw.put(f"/v1/adt/users/{USER_MAIN}", {"value_rules": [VALUE_RULE]})
        yield Live(gw, settings.topics, kafka)
        assert gw.alive(), gw.log_tail()
    assert gw.proc.returncode == 0, gw.log_tail()


async def exchange(
    kafka: KafkaSettings,
    topics: Topics,
    topic: str,
    records: list[Sent],
    *,
    alive: Callable[[], None],
) -> list[Outcome]:
    """Send `records` in order to one partition of `topic` (they share a key) and wait
    until each has an outcome, then a moment more (a second outcome would show); return
    each one's dead letters, answers (requests, by request_id) and forwards (alerts, by
    raised_at_ms; requests, by their bytes)."""
    outputs = [topics.deadletter, topics.user_responses, topics.sr_outbound,
               topics.alerts_outbound]  # fmt: skip
    async with Sender(kafka) as sender:
        placed = await sender.send(topic, [(s.key, s.value, s.headers, None) for s in records])
    for s, where in zip(records, placed, strict=True):
        s.partition, s.offset = where
    assert len({s.partition for s in records}) == 1, "the records must share a partition"
    async with TopicLog(kafka, outputs) as out:

        def outcomes() -> list[Outcome]:
            out.check()
            dls = dead_letters(out.records[topics.deadletter], topic)
            answers = [
                msgspec.json.decode(r.value or b"", type=UserResponse)
                for r in out.records[topics.user_responses]
            ]
            result = []
            for s in records:
                if topic == topics.alerts_inbound:
                    forwards = [
                        r for r in out.records[topics.alerts_outbound] if _raised_at(r) == s.tag
                    ]
                else:
                    forwards = [r for r in out.records[topics.sr_outbound] if r.value == s.value]
                result.append(
                    Outcome(
                        dls.get((s.partition, s.offset), []),
                        [a for a in answers if a.request_id == s.tag],
                        forwards,
                    )
                )
            return result

        def decided() -> bool:
            alive()
            return all(o.dead_letters or o.answers or o.forwards for o in outcomes())

        await wait_until_async(
            decided, timeout_s=DECIDED_S, what=lambda: f"not all decided: {outcomes()}"
        )
        await asyncio.sleep(0.5)
        return outcomes()


def _raised_at(rec: Seen) -> object:
    return orjson.loads(rec.value or b"{}").get("raised_at_ms")


def _alive(live: Live) -> Callable[[], None]:
    def check() -> None:
        assert live.gateway.alive(), f"the gateway exited:\n{live.gateway.log_tail()}"

    return check


def assert_healthy(live: Live) -> None:
    """The process runs and /healthz answers 200 ok."""
    gw = live.gateway
    assert gw.alive(), gw.log_tail()
    status, doc = gw.health()
    assert (status, doc["status"]) == (200, "ok"), doc


def assert_dead_letter(outcome: Outcome, sent: Sent, want_kind: str, *, says: str) -> None:
    """Exactly one dead letter of `want_kind` whose reason contains `says`, nothing else."""
    assert [kind(d) for d in outcome.dead_letters] == [want_kind], outcome
    assert says in reason(outcome.dead_letters[0]), reason(outcome.dead_letters[0])
    assert outcome.answers == [], outcome.answers
    assert outcome.forwards == [], outcome.forwards
    problems: list[str] = []
    check_dead_letter(outcome.dead_letters[0], sent, problems)
    assert not problems, problems


def assert_accepted(outcome: Outcome) -> None:
    """Exactly one answer, accepted, and one forward; no dead letter."""
    assert outcome.dead_letters == [], [reason(d) for d in outcome.dead_letters]
    assert [a.outcome for a in outcome.answers] == ["accepted"], outcome.answers
    assert len(outcome.forwards) == 1, outcome.forwards


async def bad_then_good(live: Live, bad: bytes | None) -> tuple[Sent, Outcome, Outcome]:
    """Send `bad` and then a good request on the same partition; both get decided."""
    sent = record(bad, None)
    good_id = request_id()
    good = record(request(good_id), good_id)
    topics = live.topics
    bad_out, good_out = await exchange(
        live.kafka, topics, topics.sr_inbound, [sent, good], alive=_alive(live)
    )
    assert_accepted(good_out)
    assert_healthy(live)
    return sent, bad_out, good_out


# --- the requests that stopped the router ------------------------------------------------------


async def test_invalid_utf8_in_user_role_is_dead_lettered(live: Live) -> None:
    bad = request(request_id()).replace(b'"user_role":"IS"', b'"user_role":"I\xffS"')
    sent, out, _ = await bad_then_good(live, bad)
    assert_dead_letter(out, sent, "invalid_utf8", says="byte 0xff")


async def test_an_array_1000_deep_in_an_unknown_field_is_dead_lettered(live: Live) -> None:
    bad = request(request_id())[:-1] + b',"unknown":' + nested(1000) + b"}"
    sent, out, _ = await bad_then_good(live, bad)
    assert_dead_letter(out, sent, "too_deep", says="deeper than 32 levels")


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        pytest.param(b"1e400", "cannot be checked", id="1e400"),
        pytest.param(b"-1e400", "cannot be checked", id="-1e400"),
        pytest.param(b"9" * 401, "an integer of 401 digits", id="401-digit-int"),
        pytest.param(b"1" + b"0" * 4999, "cannot be checked", id="5000-digit-int"),
    ],
)
async def test_a_number_no_value_rule_can_compare_is_a_data_value_breach(
    live: Live, amount: bytes, says: str
) -> None:
    rid = request_id()
    bad = request(rid, srv="2.2", body=b'{"amount":' + amount + b"}")
    topics = live.topics
    good_id = request_id()
    good = record(request(good_id, srv="2.2", body=b'{"amount":120}'), good_id)
    bad_out, good_out = await exchange(
        live.kafka, topics, topics.sr_inbound, [record(bad, rid), good], alive=_alive(live)
    )
    # SEC G6 (b)(ii): a value that cannot be compared must not slip past the rule: held.
    assert bad_out.dead_letters == [], [reason(d) for d in bad_out.dead_letters]
    [answer] = bad_out.answers
    assert (answer.outcome, answer.response_code) == ("quarantined", "Q3"), answer
    assert answer.rule == f"user:{USER_MAIN}:value:2.2:amount", answer
    assert "amount" in answer.reason, answer.reason
    assert says in answer.reason, answer.reason
    assert bad_out.forwards == []
    assert_accepted(good_out)
    assert_healthy(live)


async def test_invalid_utf8_in_a_body_with_a_value_rule_is_dead_lettered(live: Live) -> None:
    bad = request(request_id(), srv="2.2", body=b'{"amount":1,"note":"\xff\xfe"}')
    sent, out, _ = await bad_then_good(live, bad)
    assert_dead_letter(out, sent, "invalid_utf8", says="byte 0xff")


@pytest.mark.parametrize(
    ("replace", "says"),
    [
        pytest.param(b'"srv":"7.2"', '"srv" twice', id="srv-twice"),
        pytest.param(b'"\\u0073rv":"7.2"', '"srv" twice', id="escaped-srv"),
    ],
)
async def test_duplicate_srv_keys_are_dead_lettered(live: Live, replace: bytes, says: str) -> None:
    # Validated as the last srv, forwarded as bytes a first-key-wins reader takes for the
    # first: refused, so the forwarded bytes always mean what was validated.
    good = request(request_id(), srv="4.1.1")
    bad = good.replace(b'"srv":"4.1.1"', replace + b',"srv":"4.1.1"')
    sent, out, _ = await bad_then_good(live, bad)
    assert_dead_letter(out, sent, "duplicate_key", says=says)


async def test_a_tombstone_is_dead_lettered(live: Live) -> None:
    sent, out, _ = await bad_then_good(live, None)
    assert_dead_letter(out, sent, "invalid_json", says="tombstone")


# --- the alerts that stopped the alert worker --------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "want_kind", "says"),
    [
        pytest.param(b'"\xff"', "invalid_utf8", "byte 0xff", id="payload-0xff"),
        pytest.param(nested(1000), "too_deep", "deeper than 32 levels", id="nested-1000"),
        pytest.param(
            b'"ok","x":' + nested(1000, kind="object"), "too_deep", "deeper", id="unknown-1000"
        ),
    ],
)
async def test_a_hostile_alert_is_dead_lettered_and_the_next_one_forwarded(
    live: Live, payload: bytes, want_kind: str, says: str
) -> None:
    topics = live.topics
    bad_tag, good_tag = next(_counter), next(_counter)
    bad = record(alert(bad_tag, payload=payload), bad_tag, key=DEVICE)
    good = record(alert(good_tag), good_tag, key=DEVICE)
    bad_out, good_out = await exchange(
        live.kafka, topics, topics.alerts_inbound, [bad, good], alive=_alive(live)
    )
    assert_dead_letter(bad_out, bad, want_kind, says=says)
    assert good_out.dead_letters == []
    assert [r.key for r in good_out.forwards] == [USER_MAIN.encode()]
    assert good_out.forwards[0].value == good.value
    assert_healthy(live)


BIG_DEVICE = "00-DB-00-00-00-00-BB-01"
OTHER_DEVICE = "00-DB-00-00-00-00-BB-02"
BIG_PAYLOAD_BYTES = 700_000
"""Below Apache Kafka's default message.max.bytes (1,048,588) as an input, above half of it:
a storm's snapshot on dcc.state.alerts would hold the latest alert and its copy (1.4 MB,
refused by Kafka), so such alerts are dead-lettered as too large before storm protection."""


async def test_a_storm_of_oversized_alerts_is_dead_lettered_and_stalls_nothing(
    kafka_broker: SessionBroker, settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    topics = settings.topics
    with live_gateway(kafka_broker.bootstrap, settings, tmp_path / "gateway.log") as gw:
        gw.put("/v1/alerts/storm-policy", {
            "default": {"window_s": 60, "max_alerts": 1, "period_s": 1},
        })  # fmt: skip
        big = [
            record(alert(n, payload=orjson.dumps("p" * BIG_PAYLOAD_BYTES), device_id=BIG_DEVICE),
                   n, key=BIG_DEVICE)
            for n in (next(_counter) for _ in range(3))
        ]  # fmt: skip
        good_tag = next(_counter)
        good = record(alert(good_tag, device_id=OTHER_DEVICE), good_tag, key=OTHER_DEVICE)
        async with Sender(kafka) as sender:
            await sender.send(topics.alerts_inbound, [(s.key, s.value, [], None) for s in big])
            await asyncio.sleep(2.0)  # a storm's first period boundary would pass
            await sender.send(topics.alerts_inbound, [(good.key, good.value, [], None)])
        async with TopicLog(kafka, [topics.alerts_outbound, topics.deadletter]) as out:

            def decided() -> bool:
                assert gw.alive(), gw.log_tail()
                seen = [_raised_at(r) for r in out.records[topics.alerts_outbound]]
                return good_tag in seen and len(out.records[topics.deadletter]) >= 3

            await wait_until_async(
                decided, timeout_s=DECIDED_S, what=lambda: f"stalled:\n{gw.log_tail()}"
            )
            kinds = [dict(r.headers)["dccgate-dlq-kind"] for r in out.records[topics.deadletter]]
            assert kinds == [b"too_large"] * 3
            assert [_raised_at(r) for r in out.records[topics.alerts_outbound]] == [good_tag]
        status, doc = gw.health()
        assert (status, doc["status"]) == (200, "ok"), doc


# --- a record that makes the whole batch fail (a router in this process) -----------------------

POISON = b"POISON-7f3a"


@contextlib.asynccontextmanager
async def router_in_process(
    settings: Settings, kafka: KafkaSettings, group_id: str
) -> AsyncIterator[tuple[RouterService, asyncio.Task[None]]]:
    """A router of open Users (no registry) in this event loop, partitions assigned."""
    registry = CollectorRegistry()
    service = build_router(
        msgspec.structs.replace(settings, open_users=True),
        kafka,
        CommonMetrics(registry, version="test"),
        group_id=group_id,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:

        def assigned() -> bool:
            assert not task.done(), task.exception()
            return bool(service.status.assigned)

        await wait_until_async(assigned, timeout_s=30, what="no partitions assigned")
        yield service, task
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


def _poisoned(decide_first: bool) -> Callable[..., RouterReport]:
    """RouterProcessor.process, failing for any batch that holds the poison record: before
    deciding anything, or (`decide_first`) after deciding the whole batch, as an error
    after the per-record loop would (the batch's decisions then changed the router's state)."""
    original = RouterProcessor.process

    def process(
        self: RouterProcessor,
        batch: dict[TopicPartition, list[Record]],
        out: OutputBatch,
        now_ms: int,
    ) -> RouterReport:
        poisoned = any(POISON in (r.value or b"") for recs in batch.values() for r in recs)
        if poisoned and not decide_first:
            raise RuntimeError("injected: this batch holds the poison record")
        report = original(self, batch, out, now_ms)
        if poisoned:
            raise RuntimeError("injected: this batch holds the poison record")
        return report

    return process


def _batch_of(goods: int) -> tuple[list[Sent], Sent]:
    records = [record(request(rid), rid) for rid in (request_id() for _ in range(goods))]
    poison = record(request(request_id(), note=POISON.decode()), None)
    poison.tag = orjson.loads(poison.value or b"{}")["request_id"]
    records.insert(goods // 2, poison)
    return records, poison


@pytest.mark.usefixtures("topics_ready")
async def test_a_poison_record_is_isolated_dead_lettered_and_never_met_again(
    settings: Settings, kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RouterProcessor, "process", _poisoned(decide_first=False))
    topics = settings.topics
    group = f"{settings.topic_prefix}router"
    records, poison = _batch_of(9)
    async with router_in_process(settings, kafka, group) as (service, task):

        def alive() -> None:
            assert not task.done(), task.exception()

        outcomes = await exchange(kafka, topics, topics.sr_inbound, records, alive=alive)
        assert service.status.error is None
    by_record = dict(zip((id(s) for s in records), outcomes, strict=True))
    [dl] = by_record[id(poison)].dead_letters
    assert kind(dl) == "processing_error", reason(dl)
    assert reason(dl).startswith("processing_error: batch: RuntimeError: injected"), reason(dl)
    assert by_record[id(poison)].answers == []
    for s in records:
        if s is not poison:
            assert_accepted(by_record[id(s)])
    # A restarted router (same group) does not meet the poison record again: its offset was
    # committed like any other.
    later_id = request_id()
    later = record(request(later_id), later_id)
    async with router_in_process(settings, kafka, group) as (_, task):

        def still_alive() -> None:
            assert not task.done(), task.exception()

        [later_out] = await exchange(kafka, topics, topics.sr_inbound, [later], alive=still_alive)
    assert_accepted(later_out)
    async with TopicLog(kafka, [topics.deadletter]) as out:
        await asyncio.sleep(1.0)
        again = dead_letters(out.records[topics.deadletter], topics.sr_inbound)
    assert len(again[(poison.partition, poison.offset)]) == 1


@pytest.mark.usefixtures("topics_ready")
async def test_good_requests_in_a_batch_that_failed_after_deciding_are_still_accepted(
    settings: Settings, kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RouterProcessor, "process", _poisoned(decide_first=True))
    topics = settings.topics
    records, poison = _batch_of(9)
    async with router_in_process(settings, kafka, f"{settings.topic_prefix}router") as (_, t):

        def alive() -> None:
            assert not t.done(), t.exception()

        outcomes = await exchange(kafka, topics, topics.sr_inbound, records, alive=alive)
    for s, outcome in zip(records, outcomes, strict=True):
        if s is poison:
            assert [kind(d) for d in outcome.dead_letters] == ["processing_error"]
        else:
            assert_accepted(outcome)


# --- a header no Kafka client can decode ----------------------------------------------------


class _RawName(str):
    """A header name whose UTF-8 encoding is whatever `raw` says (invalid UTF-8 included):
    aiokafka's pure-Python batch builder writes `name.encode("utf-8")` as given."""

    raw: bytes = b""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


async def _send_with_raw_header_name(kafka: KafkaSettings, topic: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        # The partition of the good request's key: the bad record stands in front of it.
        partition = partition_for_key(USER_MAIN.encode(), len(await producer.partitions_for(topic)))
        batch = producer.create_batch()
        # The pure-Python builder, so that the name's bytes are written as they are.
        builder = default_records._DefaultRecordBatchBuilderPy(
            magic=2, compression_type=0, is_transactional=False, producer_id=-1,
            producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
        )  # fmt: skip
        batch._builder = builder
        name = _RawName("x")
        name.raw = b"bad\xffname"
        builder.append(0, None, USER_MAIN.encode(), value, [(name, b"1")])
        batch._relative_offset = 1
        await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()


@pytest.mark.usefixtures("topics_ready")
async def test_a_header_name_that_is_not_utf8_does_not_stop_the_router(
    settings: Settings, kafka: KafkaSettings
) -> None:
    topics = settings.topics
    async with router_in_process(settings, kafka, f"{settings.topic_prefix}router") as (_, t):
        # The bad record, then a good request behind it on the same partition.
        await _send_with_raw_header_name(kafka, topics.sr_inbound, request(request_id()))
        good_id = request_id()
        good = record(request(good_id), good_id)
        async with Sender(kafka) as sender:
            placed = await sender.send(topics.sr_inbound, [(good.key, good.value, [], None)])
        good.partition, good.offset = placed[0]

        def alive() -> None:
            if t.done():
                raise t.exception() or AssertionError("the router stopped")

        async with TopicLog(kafka, [topics.user_responses]) as out:

            def answered() -> bool:
                alive()
                return any(
                    orjson.loads(r.value or b"{}").get("request_id") == good_id
                    for r in out.records[topics.user_responses]
                )

            await wait_until_async(answered, timeout_s=DECIDED_S, what="good request unanswered")
        # The unreadable record itself is dead-lettered, with where it was and why.
        [dead] = await read_topic(kafka, topics.deadletter, expect=1)
        headers = {k: v for k, v in dead.headers}
        assert headers["dccgate-dlq-kind"] == b"unreadable_record"
        assert headers["dccgate-dlq-reason"].startswith(b"unreadable_record: UnicodeDecodeError")
        assert dead.value is None
