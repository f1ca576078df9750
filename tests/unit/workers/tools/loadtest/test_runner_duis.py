"""The runner with `--via duis` (no network): a sync answer decides its request, and is
compared with the answer on dcc.user.responses (agreements, disagreements, early and
`pending` answers, the ingress's own refusals)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.consumer import Record
from broker.settings import KafkaSettings
from broker.topics import Topics
from tests.unit.records import FakeRecord
from workers.duis import load_catalogue
from workers.tools.loadtest.duis import DuisAnswer, DuisClient, DuisJob, UserPki
from workers.tools.loadtest.generator import RequestEvent
from workers.tools.loadtest.runner import Runner
from workers.tools.loadtest.scenario import load_scenario

TOPICS = Topics.with_prefix("")


class Answers:
    """The collector calls the runner makes for answers (ResultCollector's interface)."""

    def __init__(self) -> None:
        self.answered: list[tuple[str, str, float]] = []
        self.events: list[tuple[str, str]] = []

    def request_sent(self, t_s: float, user_id: str, srv: str, n: int = 1) -> None:
        pass

    def request_answered(self, *args: Any) -> None:
        _, _, _, outcome, code, _, latency_s = args
        self.answered.append((outcome, code, latency_s))

    def event(self, t_s: float, kind: str, detail: str) -> None:
        self.events.append((kind, detail))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> UserPki:
    scenario = load_scenario("runaway-user")
    users = [(u.id, list(u.roles)) for u in scenario.users]
    return UserPki(tmp_path_factory.mktemp("keys")).prepare(users)


def _runner(pki: UserPki, in_flight: int = 64) -> tuple[Runner, DuisClient, Answers]:
    scenario = load_scenario("runaway-user")
    client = DuisClient("http://127.0.0.1:1", pki, load_catalogue(), max_in_flight=in_flight)
    answers = Answers()
    runner = Runner(
        scenario,
        kafka=KafkaSettings(bootstrap="127.0.0.1:1"),
        topics=TOPICS,
        collector=answers,  # type: ignore[arg-type]
        seed=1,
        duis=client,
    )
    return runner, client, answers


def _send(runner: Runner, client: DuisClient) -> DuisJob:
    user = runner.scenario.users[0]
    event = RequestEvent(
        0.0, user.id, user.roles[0], "4.1.1", 1, "00-DB-12-34-56-78-90-A0", "north", "read"
    )
    runner._handle(None, event, 0.0)  # type: ignore[arg-type]  # no producer: DUIS
    job, _ = client._queue[-1]
    return job


def _async(job: DuisJob, code: str, outcome: str) -> list[Record]:
    doc = {"request_id": job.request_id, "response_code": code, "outcome": outcome}
    return [FakeRecord(topic=TOPICS.user_responses, value=json.dumps(doc).encode())]


def test_sync_answer_decides_and_the_async_one_agrees(pki: UserPki) -> None:
    runner, client, answers = _runner(pki)
    job = _send(runner, client)
    assert f"<sr:{load_catalogue()['4.1.1'].body_element}".encode() in job.xml
    runner._on_sync(job, DuisAnswer(429, "T1", "throttled", rule="a1", retry_after_ms=9), 0.02)
    assert answers.answered == [("throttled", "T1", 0.02)]
    runner._on_responses(_async(job, "T1", "throttled"))
    assert (client.stats.agreed, client.stats.disagreed) == (1, 0)
    assert len(answers.answered) == 1  # the async answer is not a second answer


def test_a_disagreement_is_counted_with_both_codes(pki: UserPki) -> None:
    runner, client, _ = _runner(pki)
    job = _send(runner, client)
    runner._on_sync(job, DuisAnswer(200, "I99", "accepted"), 0.01)
    runner._on_responses(_async(job, "E102", "rejected"))
    assert client.stats.disagreed == 1
    assert dict(client.stats.disagreements) == {"I99 -> E102": 1}


def test_an_async_answer_before_the_sync_one_is_compared_when_it_comes(pki: UserPki) -> None:
    runner, client, answers = _runner(pki)
    job = _send(runner, client)
    runner._on_responses(_async(job, "Q1", "quarantined"))
    assert answers.answered == []  # the sync answer decides
    runner._on_sync(job, DuisAnswer(202, "Q1", "quarantined", rule="adt"), 0.05)
    assert answers.answered == [("quarantined", "Q1", 0.05)]
    assert client.stats.agreed == 1


def test_a_pending_sync_answer_leaves_the_decision_to_the_topic(pki: UserPki) -> None:
    runner, client, answers = _runner(pki)
    job = _send(runner, client)
    runner._on_sync(job, DuisAnswer(202, "I99", "pending"), 2.0)
    assert answers.answered == []
    runner._on_responses(_async(job, "T1", "throttled"))
    assert [a[:2] for a in answers.answered] == [("throttled", "T1")]
    assert (client.stats.agreed, client.stats.disagreed) == (0, 0)


def test_a_refusal_by_the_ingress_is_the_answer_with_nothing_to_compare(pki: UserPki) -> None:
    runner, client, answers = _runner(pki)
    job = _send(runner, client)
    runner._on_sync(job, DuisAnswer(403, "E1", "refused"), 0.01)
    assert answers.answered == [("refused", "E1", 0.01)]
    assert runner._sync_code == {}
    assert runner.stats.unanswered == 0


def test_the_in_flight_bound_is_reported_once(pki: UserPki) -> None:
    runner, client, answers = _runner(pki, in_flight=1)
    for _ in range(3):
        _send(runner, client)
    assert client.stats.held_back == 2
    assert [kind for kind, _ in answers.events] == ["duis"]
    assert "--duis-in-flight" in answers.events[0][1]
