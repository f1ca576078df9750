"""workers.deliver.processor: what is queued, passed over or dead-lettered, and the commit
floor (at-least-once)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import msgspec
import pytest

from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from broker.topics import Topics
from tests.unit.records import FakeRecord, written
from tests.unit.workers.deliver.deliver_fakes import (
    TOPIC,
    USER_A,
    USER_B,
    Clock,
    ScriptedEndpoint,
    answer_record,
    dispatcher_for,
)
from workers.deliver.processor import DeliverProcessor
from workers.deliver.sender import Failure
from workers.duis.response_xml import DUIS_NS

TOPICS = Topics.with_prefix("")
URL_A = "https://a.example/r"
URL_B = "https://b.example/r"
TP0 = TopicPartition(TOPIC, 0)
TP1 = TopicPartition(TOPIC, 1)


class Rig:
    def __init__(
        self, endpoint: ScriptedEndpoint, *, deadline_s: float = 60, max_per_user: int = 100
    ) -> None:
        self.clock = Clock()
        self.urls = {USER_A: URL_A, USER_B: URL_B}
        self.endpoint = endpoint
        self.dispatcher, self.metrics, self.registry = dispatcher_for(
            endpoint, self.clock, self.urls, deadline_s=deadline_s, max_per_user=max_per_user
        )
        self.processor = DeliverProcessor(
            topics=TOPICS, dispatcher=self.dispatcher, metrics=self.metrics, clock_s=self.clock
        )
        self.processor.set_users(self.urls, registered=[USER_A, USER_B, "90-B3-D5-1F-30-03-00-00"])

    def batch(self, records: dict[TopicPartition, list[Record]]) -> OutputBatch:
        out = OutputBatch({TOPICS.deadletter: 1})
        report = self.processor.process(records, out, 1_000)
        self.processor.after_send(report, 1_000)
        return out

    async def tick(self, rounds: int = 100) -> OutputBatch:
        out = OutputBatch({TOPICS.deadletter: 1})
        for _ in range(rounds):
            await asyncio.sleep(0)
        report = self.processor.tick(out, 2_000)
        if report is not None:
            self.processor.after_send(report, 2_000)
        return out


def sample(rig: Rig, name: str, labels: dict[str, str]) -> float:
    return rig.registry.get_sample_value(name, labels) or 0.0


async def test_the_commit_floor_waits_for_every_earlier_answer_of_the_partition() -> None:
    endpoint = ScriptedEndpoint()
    endpoint.gates[URL_A] = asyncio.Event()  # A's endpoint hangs; B's answers
    rig = Rig(endpoint)
    records: list[Record] = [
        answer_record(USER_A, 1, offset=10),
        answer_record(USER_B, 1, offset=11),
        answer_record(USER_B, 2, offset=12),
    ]
    rig.batch({TP0: records})
    assert rig.processor.held_floor() == {TP0: 10}
    await rig.tick()
    # B's answers (11, 12) are delivered, but A's at 10 is not: no commit past 10.
    assert rig.processor.held_floor() == {TP0: 10}
    endpoint.gates[URL_A].set()
    await rig.tick()
    assert rig.processor.held_floor() == {}
    documents = endpoint.documents(URL_A)
    assert len(documents) == 1
    root = ET.fromstring(documents[0])
    assert root.tag == f"{{{DUIS_NS}}}Response"
    assert root.findtext(f"{{{DUIS_NS}}}Header/{{{DUIS_NS}}}ResponseCode") == "I99"


async def test_answers_without_an_endpoint_are_passed_over_and_counted() -> None:
    rig = Rig(ScriptedEndpoint())
    unregistered = "90-B3-D5-1F-30-09-00-00"
    out = rig.batch(
        {
            TP0: [
                answer_record("90-B3-D5-1F-30-03-00-00", 1, offset=0),  # registered, no URL
                answer_record(unregistered, 1, offset=1),
            ]
        }
    )
    assert rig.processor.held_floor() == {}
    assert written(out, TOPICS.deadletter) == []
    assert sample(rig, "dccgate_delivery_skipped_total", {"reason": "no_response_url"}) == 1
    assert sample(rig, "dccgate_delivery_skipped_total", {"reason": "unknown_user"}) == 1


def _dlq_kind(out: OutputBatch) -> list[str]:
    kinds = []
    for rec in written(out, TOPICS.deadletter):
        headers = dict(rec.headers)
        kinds.append(headers["dccgate-dlq-kind"].decode())
        assert headers["dccgate-dlq-service"] == b"deliver"
        assert headers["dccgate-dlq-reason"]
    return kinds


@pytest.mark.parametrize(
    ("value", "key", "kind"),
    [
        (None, USER_A.encode(), "invalid_json"),
        (b"\xff\xfe", USER_A.encode(), "invalid_utf8"),
        (b"[" * 100 + b"]" * 100, USER_A.encode(), "too_deep"),
        (b'{"a": 1, "a": 2}', USER_A.encode(), "duplicate_key"),
        (b"not json", USER_A.encode(), "invalid_json"),
        (b'{"request_id": "x"}', USER_A.encode(), "invalid_schema"),
        (b"x" * 300_000, USER_A.encode(), "too_large"),
    ],
)
async def test_unreadable_answers_become_dead_letters(
    value: bytes | None, key: bytes, kind: str
) -> None:
    rig = Rig(ScriptedEndpoint())
    rec = FakeRecord(topic=TOPIC, offset=5, key=key, value=value)
    out = rig.batch({TP0: [rec]})
    assert _dlq_kind(out) == [kind]
    assert rig.processor.held_floor() == {}
    assert (
        sample(rig, "dccgate_deadletter_records_total", {"service": "deliver", "reason": kind}) == 1
    )


async def test_an_answer_keyed_by_another_user_or_with_a_bad_code_is_dead_lettered() -> None:
    rig = Rig(ScriptedEndpoint())
    good = answer_record(USER_A, 1, offset=0)
    wrong_key = FakeRecord(topic=TOPIC, offset=1, key=USER_B.encode(), value=good.value)
    assert good.value is not None
    bad_code = FakeRecord(
        topic=TOPIC,
        offset=2,
        key=USER_A.encode(),
        value=good.value.replace(b'"I99"', b'"<I99>"'),
    )
    out = rig.batch({TP0: [wrong_key, bad_code]})
    assert _dlq_kind(out) == ["invalid_schema", "invalid_answer"]


async def test_an_undeliverable_answer_is_dead_lettered_with_its_original_bytes() -> None:
    endpoint = ScriptedEndpoint(lambda _u, _n: Failure("http_status", "HTTP 500"))
    rig = Rig(endpoint, deadline_s=5)
    rec = answer_record(USER_A, 1, offset=7)
    rig.batch({TP0: [rec]})
    out = await rig.tick(rounds=500)
    letters = written(out, TOPICS.deadletter)
    assert len(letters) == 1
    assert letters[0].value == rec.value
    assert letters[0].key == rec.key
    headers = dict(letters[0].headers)
    assert headers["dccgate-dlq-kind"] == b"undeliverable"
    assert headers["dccgate-dlq-offset"] == b"7"
    assert b"HTTP 500" in headers["dccgate-dlq-reason"]
    assert rig.processor.held_floor() == {}


async def test_a_full_user_queue_stops_the_input() -> None:
    endpoint = ScriptedEndpoint()
    endpoint.gates[URL_A] = asyncio.Event()
    rig = Rig(endpoint, max_per_user=3)
    rig.batch({TP0: [answer_record(USER_A, c, offset=c) for c in range(2)]})
    assert rig.processor.wants_input()
    rig.batch({TP0: [answer_record(USER_A, 2, offset=2)]})
    assert not rig.processor.wants_input()
    endpoint.gates[URL_A].set()
    await rig.tick()
    assert rig.processor.wants_input()


async def test_revoked_partitions_are_left_to_their_next_owner() -> None:
    endpoint = ScriptedEndpoint()
    endpoint.gates[URL_A] = asyncio.Event()
    endpoint.gates[URL_B] = asyncio.Event()
    rig = Rig(endpoint)
    rig.batch(
        {
            TP0: [answer_record(USER_A, 1, offset=3)],
            TP1: [answer_record(USER_B, 1, offset=8, partition=1)],
        }
    )
    assert rig.processor.held_floor() == {TP0: 3, TP1: 8}
    rig.processor.revoke(frozenset({TP0}))
    assert rig.processor.held_floor() == {TP1: 8}
    endpoint.gates[URL_A].set()
    endpoint.gates[URL_B].set()
    await rig.tick()
    assert endpoint.documents(URL_A) == []
    assert rig.processor.held_floor() == {}


async def test_the_users_follow_the_configuration() -> None:
    from workers.config.snapshot import ConfigState

    rig = Rig(ScriptedEndpoint())
    state = ConfigState()
    body = {"name": "A", "roles": ["IS"], "response_url": "https://new.example/a"}
    record = {"key": f"users/{USER_A}", "version": 1, "value": body, "by": "t", "at_ms": 1}
    state.apply(f"users/{USER_A}".encode(), msgspec.json.encode(record), 0)
    rig.processor.apply(state.snapshot())
    assert rig.processor.url_for(USER_A) == "https://new.example/a"
    assert rig.processor.url_for(USER_B) is None
