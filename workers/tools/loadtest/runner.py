"""The runner: drives a gateway through Kafka with a scenario's traffic, and plays the network.

One asyncio task does everything in ticks of a few milliseconds:

1. sends what the scenario's `Traffic` has due (requests with a confluent-kafka producer,
   `workers.tools.loadtest.fastproducer`, alerts likewise), and starts install and firmware flows;
   with `--via duis` the requests go instead as signed DUIS XML to the ingress
   (`workers.tools.loadtest.duis.DuisClient`), whose synchronous answers decide them;
2. reads the gateway's answers (`dcc.user.responses`), what it forwarded
   (`dcc.sr.outbound`), the alerts it delivered (`dcc.alerts.outbound`) and its dead letters
   (`dcc.deadletter`), each with a `broker.follower.TopicFollower` from the run's start;
3. answers each forwarded request as the network would (`network.NetworkModel`): after
   the region's latency, in-process, to the flow that sent it (the gateway has no
   device-response topic), and raises the alerts that follow (AD1 after a firmware
   activation, N24 after a HAN log update);
4. reports everything to a collector (`workers/tools/loadtest/results.py`) and keeps its own
   counts (`RunStats`) for the progress line and the summary.

RequestIDs carry the run in their COUNTER (`generator.RequestIds`), alert payloads and every
record's `dcctool-loadtest-run` header carry the run tag, so what an earlier run left on the
topics is ignored. Progress is counted from answers, never from watermarks (the embedded
broker's "latest" offsets are wrong). The run stops by itself: traffic ends at
`duration_s`, then it waits at most `drain_s` for answers still due.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import orjson

from broker.consumer import Record
from broker.errors import BrokerError
from broker.follower import TopicFollower
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.duis import load_catalogue
from workers.tools.loadtest.duis import DuisAnswer, DuisClient, DuisJob
from workers.tools.loadtest.fastproducer import FastProducer, Headers
from workers.tools.loadtest.generator import (
    AlertEvent,
    FlowStart,
    RequestEvent,
    RequestIds,
    Shard,
    Traffic,
    fleet_device,
    site_device,
)
from workers.tools.loadtest.install import (
    DCC_ID,
    INSTALL_STEPS,
    Finished,
    Flow,
    Resend,
    Submission,
    Submit,
    firmware_steps,
)
from workers.tools.loadtest.network import NetworkModel, Timeline
from workers.tools.loadtest.scenario import Scenario, role_for

__all__ = [
    "RUN_HEADER",
    "SHARD_HEADER",
    "Collector",
    "RunStats",
    "Runner",
    "StartGate",
    "settle_time",
]

log = logging.getLogger(__name__)

RUN_HEADER = "dcctool-loadtest-run"
SHARD_HEADER = "dcctool-loadtest-shard"
"""On every record of a sharded run: the shard's number (the gateway passes request headers
on to dcc.sr.outbound, so a shard skips the others' forwarded requests unread)."""
_TICK_S = 0.005
_FLOW_CHECK_S = 0.2
_CLOCK_MARGIN_MS = 5_000


class Collector(Protocol):
    """What the runner reports to: `workers.tools.loadtest.results.ResultCollector`."""

    def request_sent(self, t_s: float, user_id: str, srv: str, n: int = 1) -> None: ...
    def request_answered(
        self,
        t_s: float,
        user_id: str,
        srv: str,
        outcome: str,
        response_code: str,
        rule: str | None,
        latency_s: float,
    ) -> None: ...
    def request_completed(
        self, t_s: float, user_id: str, srv: str, region: str, ok: bool, latency_s: float
    ) -> None: ...
    def install_finished(
        self, t_s: float, region: str, ok: bool, failed_step: str | None
    ) -> None: ...
    def firmware_finished(
        self, t_s: float, region: str, ok: bool, failed_step: str | None
    ) -> None: ...
    def alert_raised(self, t_s: float, region: str, alert_code: str) -> None: ...
    def alert_delivered(
        self,
        t_s: float,
        region: str,
        alert_code: str,
        storm_copy: str | None,
        throttled_count: int,
        *,
        primary: bool = True,
    ) -> None: ...
    def deadlettered(self, t_s: float, reason: str) -> None: ...
    def event(self, t_s: float, kind: str, detail: str) -> None: ...


StartGate = Callable[[], Awaitable[tuple[int, float]]]
"""Awaited by a shard once it reads the topics: the run's start as (Unix ms, monotonic s),
the same for every shard."""


def _counters() -> collections.defaultdict[str, collections.Counter[str]]:
    return collections.defaultdict(collections.Counter)


@dataclass
class RunStats:
    """What the runner counted itself: for the progress line, the summary and the tests."""

    sent: int = 0
    resent: int = 0
    answered: int = 0
    completed: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    by_user: collections.defaultdict[str, collections.Counter[str]] = field(
        default_factory=_counters
    )
    """User ID -> outcome -> answers."""
    by_source: collections.defaultdict[str, collections.Counter[str]] = field(
        default_factory=_counters
    )
    """`read`, `profile`, `runaway`, `install`, `firmware` -> outcome -> answers."""
    installs: collections.defaultdict[str, collections.Counter[str]] = field(
        default_factory=_counters
    )
    """Region -> `ok` / `failed` -> installs finished."""
    failed_steps: collections.Counter[str] = field(default_factory=collections.Counter)
    failure_reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    firmware: collections.Counter[str] = field(default_factory=collections.Counter)
    """`ok` / `failed` meters of firmware campaigns."""
    device_failures: int = 0
    alerts_raised: collections.Counter[str] = field(default_factory=collections.Counter)
    """By source: `steady`, `storm`, `outage` (AD1), `restore` (8F36), `n24`."""
    alerts_delivered: collections.Counter[str] = field(default_factory=collections.Counter)
    """Records on dcc.alerts.outbound (one per recipient), by source."""
    storm_copies: int = 0
    suppressed_reported: int = 0
    """Sum of `throttled_alert_count` over periodic storm copies."""
    deadlettered: int = 0
    unfinished_flows: int = 0
    unanswered: int = 0
    produce_failed: int = 0
    elapsed_s: float = 0.0
    traffic_s: float = 0.0
    """When the last of the scenario's own traffic was sent (after `duration_s` if the
    runner fell behind the schedule)."""

    def add(self, other: RunStats) -> None:
        """Add another shard's counts to these (times: the later of the two)."""
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(value, collections.defaultdict):
                for key, counts in value.items():
                    mine[key].update(counts)
            elif isinstance(value, collections.Counter):
                mine.update(value)
            elif name in ("elapsed_s", "traffic_s"):
                setattr(self, name, max(mine, value))
            else:
                setattr(self, name, mine + value)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if isinstance(value, collections.defaultdict):
                out[name] = {k: dict(v) for k, v in sorted(value.items())}
            elif isinstance(value, collections.Counter):
                out[name] = dict(sorted(value.items()))
            else:
                out[name] = value
        return out


class _Outgoing(msgspec.Struct, kw_only=True, omit_defaults=True):
    request_id: str
    user_role: str
    srv: str
    command_variant: int
    body: dict[str, Any] = msgspec.field(default_factory=dict)
    region: str | None = None


class _Alert(msgspec.Struct, kw_only=True):
    device_id: str
    alert_code: str
    recipients: list[str]
    region: str
    raised_at_ms: int
    payload: str


_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _Pending:
    """A request sent and not yet fully answered."""

    t_first_s: float
    t_sent_s: float
    user_id: str
    srv: str
    command_variant: int
    region: str
    source: str
    value: bytes
    key: bytes
    flow: _FlowRun | None = None
    extra_failure: float = 0.0
    answered: bool = False
    completed: bool = False


@dataclass(slots=True, eq=False)
class _FlowRun:
    """A running flow with what the runner needs to send its submissions."""

    flow: Flow
    kind: str
    user_id: str
    region: str
    devices: dict[str, str]
    roles: dict[str, str]
    extra_failure: float = 0.0
    false_outage_share: float = 0.0
    outage_s: float = 0.0
    rid: str | None = None


def settle_time(scenario: Scenario) -> float:
    """How long to wait after the traffic for alerts: alerts are not awaited one by one
    (storm protection holds copies back), so with an alert storm in the scenario the run
    waits two storm periods for the last periodic copy and the final copies (SECMP0062,
    docs/alerts.md), at most 30 s; otherwise 1 s."""
    policy = scenario.gateway.alerts.storm_policy
    if not scenario.faults.alert_storm or policy is None:
        return 1.0
    periods = [policy.default.period_s, *(p.period_s for p in policy.per_code.values())]
    return min(1.0 + 2.0 * max(periods), 30.0)


class Runner:
    """One run of a scenario against a gateway reachable on `kafka.bootstrap`.

    seed, scale, duration_s: as `Traffic`. drain_s: how long after `duration_s` answers are
    still awaited (default: the installs' step timeout, or 5 s). settle_s: how long after
    `duration_s` the run goes on at least, for alerts (default `settle_time`). collector:
    where results go. on_progress: called about once a second with the stats and the time
    left. shard: run only this shard's part of the traffic (`workers/tools/loadtest/shards.py`);
    run_tag: the run's tag, shared by its shards (default: a new one).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        kafka: KafkaSettings,
        topics: Topics,
        collector: Collector,
        seed: int,
        scale: float = 1.0,
        duration_s: float | None = None,
        drain_s: float | None = None,
        settle_s: float | None = None,
        on_progress: Callable[[RunStats, float], None] | None = None,
        producer: FastProducer | None = None,
        shard: Shard | None = None,
        run_tag: str | None = None,
        duis: DuisClient | None = None,
    ) -> None:
        self.scenario = scenario
        self.kafka = kafka
        self.topics = topics
        self.collector = collector
        self.seed = seed
        self.scale = scale
        self.duration_s = scenario.duration_s if duration_s is None else duration_s
        timeout = scenario.installs.step_timeout_s if scenario.installs else 5.0
        self.drain_s = timeout if drain_s is None else drain_s
        self.settle_s = settle_time(scenario) if settle_s is None else settle_s
        self.on_progress = on_progress
        self.stats = RunStats()
        self.run_tag = run_tag or uuid.uuid4().hex[:12]
        self.shard = shard
        self._first_shard = shard is None or shard.index == 0
        """Reads the delivered alerts and dead letters, and adds the fault events."""
        self.network = NetworkModel(scenario, seed=seed)
        self._producer = producer
        self._own_producer = producer is None
        self._pending: dict[str, _Pending] = {}
        self._flows: set[_FlowRun] = set()
        self._timeline: Timeline[tuple[str, Any]] = Timeline()
        self._headers: Headers = [(RUN_HEADER, self.run_tag.encode())]
        self._shard_tag: bytes | None = None
        if shard is not None:
            self._shard_tag = str(shard.index).encode()
            self._headers.append((SHARD_HEADER, self._shard_tag))
        self._alert_n = 0
        self._keys: dict[str, bytes] = {}
        self._first_seen: set[tuple[str, str]] = set()
        self._catalogue = load_catalogue()
        self._t0 = 0.0
        self._start_ms = 0
        self.ids = RequestIds(0)
        # --via duis: requests go to the DUIS ingress (duis.py); alerts still to Kafka.
        self._duis = duis
        self._duis_jobs: dict[str, DuisJob] = {}
        """Jobs of flow requests, kept for a resend."""
        self._sync_code: dict[str, str] = {}
        """RequestID -> code of a sync answer that decided it, until its async answer."""
        self._await_sync: set[str] = set()
        """Posted to the ingress, sync answer not in yet."""
        self._early: dict[str, dict[str, Any]] = {}
        """Async answers that came before their request's sync answer."""
        self._held_reported = False

    @property
    def started_at_s(self) -> float:
        """When the run started, Unix seconds (wall clock)."""
        return self._start_ms / 1000.0

    def now(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self._t0

    async def run(
        self, gate: StartGate | None = None, sent: Callable[[], Awaitable[None]] | None = None
    ) -> RunStats:
        """Run the scenario to its end and return the counts. For a shard: `gate`, awaited
        once the topics are being read, gives the run's common start; `sent`, awaited when
        this shard's traffic is over, while the topics are still read (shard 0 reads the
        alerts of all shards, so it goes on until every shard is done)."""
        self._start_ms = time.time_ns() // 1_000_000
        self.ids = RequestIds.for_run(self._start_ms // 1000)
        producer = self._producer = self._producer or FastProducer(
            self.kafka.bootstrap, security=self.kafka.security
        )
        started: list[TopicFollower] = []
        try:
            for follower in self._followers(self._start_ms - _CLOCK_MARGIN_MS):
                await follower.start()
                started.append(follower)
            if gate is None:
                self._t0 = time.monotonic()
            else:
                self._start_ms, self._t0 = await gate()
                self.ids = RequestIds.for_run(self._start_ms // 1000)
            if self._duis is not None:
                self._duis.on_answer = self._on_sync
                self._duis.set_clock(self._t0)
                await self._duis.start()
            await self._loop(producer)
            if sent is not None:
                await sent()
        finally:
            for follower in started:
                await follower.stop()
            if self._duis is not None:
                await self._duis.stop()
                self._duis.stats.async_missing = len(self._sync_code)
            try:
                await asyncio.to_thread(producer.flush, 10.0)
            except BrokerError as exc:
                log.warning("load test records not delivered: %s", exc)
            self.stats.produce_failed = producer.failed
            if self._own_producer:
                producer.close()
                self._producer = None
        self.stats.unfinished_flows = len(self._flows)
        self.stats.unanswered = sum(1 for p in self._pending.values() if not p.answered)
        if self._flows:
            self.collector.event(
                self.now(),
                "unfinished",
                f"{len(self._flows)} installs or firmware updates still in "
                "progress when the run ended",
            )
        return self.stats

    def _followers(self, since_ms: int) -> list[TopicFollower]:
        """What the run reads. A shard reads its own Users' answers (their partitions), every
        forwarded request (skipping the other shards' by header); shard 0 alone reads the
        delivered alerts and the dead letters, which no shard's state depends on."""
        name = f"loadtest-{self.run_tag}"
        if self.shard is not None:
            name += f"-{self.shard.index}"
        partitions = None if self.shard is None else self.shard.response_partitions
        followers = [
            TopicFollower(
                self.kafka,
                self.topics.user_responses,
                self._on_responses,
                name=name,
                from_ms=since_ms,
                partitions=partitions,
            ),
            TopicFollower(
                self.kafka, self.topics.sr_outbound, self._on_outbound, name=name, from_ms=since_ms
            ),
        ]
        if self._first_shard:
            followers += [
                TopicFollower(
                    self.kafka,
                    self.topics.alerts_outbound,
                    self._on_alerts,
                    name=name,
                    from_ms=since_ms,
                ),
                TopicFollower(
                    self.kafka,
                    self.topics.deadletter,
                    self._on_deadletters,
                    name=name,
                    from_ms=since_ms,
                ),
            ]
        return followers

    async def _loop(self, producer: FastProducer) -> None:
        traffic = Traffic(
            self.scenario,
            seed=self.seed,
            scale=self.scale,
            duration_s=self.duration_s,
            shard=self.shard,
        )
        if self._first_shard:
            self._fault_events()
        next_flow_check = next_progress = 0.0
        while True:
            now = self.now()
            if traffic.next_t_s is not None:
                self._send_due(producer, traffic.due(now, limit=20_000), now)
                self.stats.traffic_s = now
            for at_s, (kind, item) in self._timeline.due(now):
                self._scheduled(producer, kind, item, at_s)
            if now >= next_flow_check:
                next_flow_check = now + _FLOW_CHECK_S
                for run in list(self._flows):
                    self._act(producer, run, run.flow.on_tick(now), now)
            producer.poll()
            self.stats.elapsed_s = now
            if now >= next_progress:
                next_progress = now + 1.0
                if self.on_progress is not None:
                    self.on_progress(self.stats, max(0.0, self.duration_s - now))
            if now >= self.duration_s and traffic.next_t_s is None:
                waiting = self._flows or any(not p.answered for p in self._pending.values())
                settled = now >= self.duration_s + self.settle_s
                if settled and not waiting and not self._timeline_has_work():
                    return
                if now >= self.duration_s + max(self.drain_s, self.settle_s):
                    return
            await asyncio.sleep(_TICK_S)

    def _timeline_has_work(self) -> bool:
        return len(self._timeline) > 0

    def _fault_events(self) -> None:
        faults = self.scenario.faults
        for s in faults.alert_storm:
            detail = (
                f"alert storm: {s.devices} devices in {s.region} repeat {s.alert_code} at "
                f"{s.rate_per_s * self.scale:g}/s each"
            )
            self._timeline.add(s.start_s, ("event", ("fault", detail)))
        for r in faults.runaway_user:
            detail = f"runaway User {r.user} loops {r.srv} at {r.rate_per_s * self.scale:g}/s"
            self._timeline.add(r.start_s, ("event", ("fault", detail)))
        for c in faults.firmware_campaign:
            detail = f"firmware campaign: {c.devices} meters in {c.region}, 11.1 then 11.3"
            self._timeline.add(c.start_s, ("event", ("fault", detail)))

    # Sending

    def _send(
        self,
        producer: FastProducer,
        *,
        now: float,
        user_id: str,
        role: str,
        srv: str,
        cv: int,
        target: str,
        region: str,
        source: str,
        body: dict[str, Any] | None = None,
        flow: _FlowRun | None = None,
    ) -> str:
        rid = self.ids.next(user_id, target)
        if self._duis is not None:
            return self._send_duis(
                now, rid, user_id, role, srv, cv, region, source, body or {}, flow
            )
        value = _encode(
            _Outgoing(
                request_id=rid,
                user_role=role,
                srv=srv,
                command_variant=cv,
                body=body or {},
                region=region,
            )
        )
        key = user_id.encode()
        producer.produce(self.topics.sr_inbound, key, value, self._headers)
        self._pending[rid] = _Pending(
            now,
            now,
            user_id,
            srv,
            cv,
            region,
            source,
            value,
            key,
            flow,
            flow.extra_failure if flow else 0.0,
        )
        self.stats.sent += 1
        self.collector.request_sent(now, user_id, srv)
        return rid

    def _send_duis(
        self,
        now: float,
        rid: str,
        user_id: str,
        role: str,
        srv: str,
        cv: int,
        region: str,
        source: str,
        body: dict[str, Any],
        flow: _FlowRun | None,
    ) -> str:
        """Queue the request as signed DUIS XML for the ingress (`--via duis`)."""
        duis = self._duis
        assert duis is not None  # only called with --via duis
        job = duis.build(
            request_id=rid, user_id=user_id, role=role, srv=srv, command_variant=cv, body=body
        )
        self._post(job, now)
        if flow is not None:
            self._duis_jobs[rid] = job
        self._pending[rid] = _Pending(
            now,
            now,
            user_id,
            srv,
            cv,
            region,
            source,
            job.xml,
            user_id.encode(),
            flow,
            flow.extra_failure if flow else 0.0,
        )
        self.stats.sent += 1
        self.collector.request_sent(now, user_id, srv)
        return rid

    def _post(self, job: DuisJob, now: float) -> None:
        duis = self._duis
        assert duis is not None  # only called with --via duis
        self._await_sync.add(job.request_id)
        duis.submit(job, now)
        if duis.stats.held_back and not self._held_reported:
            # Never silent: the in-flight bound, not the gateway, is holding the rate back.
            self._held_reported = True
            self.collector.event(
                now,
                "duis",
                f"{duis.max_in_flight} requests in flight to the ingress: the in-flight "
                "bound holds the rate back (--duis-in-flight)",
            )

    def _raise(
        self,
        producer: FastProducer,
        *,
        now: float,
        device: str,
        code: str,
        region: str,
        recipients: tuple[str, ...] | list[str],
        source: str,
    ) -> None:
        self._alert_n += 1
        at_ms = self._start_ms + int(now * 1000)
        payload = f"{self.run_tag}|{self._alert_n}|{source}|{at_ms}"
        value = _encode(
            _Alert(
                device_id=device,
                alert_code=code,
                recipients=list(recipients),
                region=region,
                raised_at_ms=at_ms,
                payload=payload,
            )
        )
        producer.produce(self.topics.alerts_inbound, device.encode(), value, self._headers)
        self.stats.alerts_raised[source] += 1
        self.collector.alert_raised(now, region, code)

    def _send_due(self, producer: FastProducer, events: Sequence[object], now: float) -> None:
        """Send the scenario's due events. The hot path of a run: requests without a body
        are written as JSON directly (their fields are known-safe strings), queued in one
        call, and counted per (User, SRV) once per call; the per-request work is a
        RequestID, a record and one dict entry."""
        if self._duis is not None:
            for e in events:
                self._handle(producer, e, now)
            return
        next_id = self.ids.next
        pending = self._pending
        keys = self._keys
        records: list[tuple[bytes | None, bytes]] = []
        add = records.append
        counts: dict[tuple[str, str], int] = {}
        for e in events:
            if type(e) is not RequestEvent:
                self._handle(producer, e, now)
                continue
            user_id = e.user_id
            rid = next_id(user_id, e.target)
            value = (
                f'{{"request_id":"{rid}","user_role":"{e.role}","srv":"{e.srv}",'
                f'"command_variant":{e.command_variant},"region":"{e.region}"}}'
            ).encode()
            key = keys.get(user_id)
            if key is None:
                key = keys[user_id] = user_id.encode()
            add((key, value))
            pending[rid] = _Pending(
                now, now, user_id, e.srv, e.command_variant, e.region, e.source, value, key
            )
            pair = (user_id, e.srv)
            counts[pair] = counts.get(pair, 0) + 1
        if records:
            producer.produce_many(self.topics.sr_inbound, records, self._headers)
            self.stats.sent += len(records)
            request_sent = self.collector.request_sent
            for (user_id, srv), n in counts.items():
                request_sent(now, user_id, srv, n)

    def _handle(self, producer: FastProducer, event: object, now: float) -> None:
        if isinstance(event, RequestEvent):
            self._send(
                producer,
                now=now,
                user_id=event.user_id,
                role=event.role,
                srv=event.srv,
                cv=event.command_variant,
                target=event.target,
                region=event.region,
                source=event.source,
            )
        elif isinstance(event, AlertEvent):
            self._raise(
                producer,
                now=now,
                device=event.device_id,
                code=event.alert_code,
                region=event.region,
                recipients=event.recipients,
                source=event.source,
            )
        elif isinstance(event, FlowStart):
            self._start_flow(producer, event, now)

    def _roles(self, user_id: str, steps: tuple[Any, ...]) -> dict[str, str]:
        roles: list[str] = list(self.scenario.user(user_id).roles)
        out = {}
        for step in steps:
            preferred = step.role if step.role in roles else None
            out[step.name] = preferred or role_for(self._catalogue[step.srv], roles) or step.role
        return out

    def _start_flow(self, producer: FastProducer, event: FlowStart, now: float) -> None:
        if event.kind == "install":
            installs = self.scenario.installs
            assert installs is not None  # FlowStart(install) only comes with [installs]
            steps = INSTALL_STEPS
            devices = {w: site_device(event.region, event.site, w) for w in ("chf", "esme", "gsme")}
            flow = Flow(
                steps, step_timeout_s=installs.step_timeout_s, max_retries=installs.max_retries
            )
            run = _FlowRun(
                flow,
                "install",
                event.user_id,
                event.region,
                devices,
                self._roles(event.user_id, steps),
            )
        else:
            c = self.scenario.faults.firmware_campaign[event.campaign]
            day = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(self._start_ms / 1000 + 86_400))
            steps = firmware_steps(day)
            meter = fleet_device(event.region, event.site)
            run = _FlowRun(
                Flow(steps, step_timeout_s=10.0),
                "firmware",
                event.user_id,
                event.region,
                {"esme": meter, "chf": meter, "gsme": meter},
                self._roles(event.user_id, steps),
                c.failure_rate,
                c.false_outage_share,
                c.outage_s,
            )
        self._flows.add(run)
        self._act(producer, run, run.flow.start(now), now)

    def _submit(self, producer: FastProducer, run: _FlowRun, sub: Submission, now: float) -> None:
        step = sub.step
        target = DCC_ID if step.target == "dcc" else run.devices[step.target]
        run.rid = self._send(
            producer,
            now=now,
            user_id=run.user_id,
            role=run.roles[step.name],
            srv=step.srv,
            cv=sub.command_variant,
            target=target,
            region=run.region,
            source=run.kind,
            body=dict(step.body),
            flow=run,
        )
        # Only the activation (11.3 CV 5) carries a campaign's extra failure rate.
        pending = self._pending[run.rid]
        if not (step.srv == "11.3" and sub.command_variant == 5):
            pending.extra_failure = 0.0

    def _act(self, producer: FastProducer, run: _FlowRun, action: object, now: float) -> None:
        if action is None:
            return
        if isinstance(action, Submit):
            if run.rid is not None:
                self._pending.pop(run.rid, None)
                self._duis_jobs.pop(run.rid, None)
            self._submit(producer, run, action.submission, now)
        elif isinstance(action, Resend):
            self._timeline.add(action.at_s, ("resend", run))
        elif isinstance(action, Finished):
            self._flows.discard(run)
            if run.rid is not None:
                self._pending.pop(run.rid, None)
                self._duis_jobs.pop(run.rid, None)
            if run.kind == "install":
                self.stats.installs[run.region]["ok" if action.ok else "failed"] += 1
                self.collector.install_finished(now, run.region, action.ok, action.failed_step)
            else:
                self.stats.firmware["ok" if action.ok else "failed"] += 1
                self.collector.firmware_finished(now, run.region, action.ok, action.failed_step)
            if not action.ok:
                self.stats.failed_steps[action.failed_step or "?"] += 1
                self.stats.failure_reasons[action.reason or "?"] += 1

    def _scheduled(self, producer: FastProducer, kind: str, item: Any, at_s: float) -> None:
        now = self.now()
        if kind == "answer":
            rid, ok = item
            self._device_answer(producer, rid, ok, now)
        elif kind == "resend":
            run: _FlowRun = item
            pending = self._pending.get(run.rid or "")
            job = self._duis_jobs.get(run.rid or "")
            if pending is not None and run.flow.finished is None:
                if job is not None:
                    self._post(job, now)
                else:
                    producer.produce(
                        self.topics.sr_inbound, pending.key, pending.value, self._headers
                    )
                pending.t_sent_s = now
                pending.answered = False
                self.stats.resent += 1
                self.collector.request_sent(now, pending.user_id, pending.srv)
        elif kind == "alert":
            device, code, region, recipients, source = item
            self._raise(
                producer,
                now=now,
                device=device,
                code=code,
                region=region,
                recipients=recipients,
                source=source,
            )
        elif kind == "event":
            self.collector.event(at_s, item[0], item[1])

    def _device_answer(self, producer: FastProducer, rid: str, ok: bool, now: float) -> None:
        pending = self._pending.get(rid)
        if pending is None:
            return
        self.stats.completed += 1
        if not ok:
            self.stats.device_failures += 1
        self.collector.request_completed(
            now, pending.user_id, pending.srv, pending.region, ok, now - pending.t_first_s
        )
        run = pending.flow
        if run is None:
            pending.completed = True
            if pending.answered:
                del self._pending[rid]
            return
        if ok and pending.srv == "8.11":
            # The HAN log update's outcome reaches the User as DCC Alert N24 (DOMAIN.md 2.4).
            self._timeline.add(
                now, ("alert", (run.devices["chf"], "N24", run.region, (run.user_id,), "n24"))
            )
        if ok and pending.srv == "11.3" and pending.command_variant == 5:
            self._after_activation(run, now)
        self._act(producer, run, run.flow.on_device(now, ok), now)

    def _after_activation(self, run: _FlowRun, now: float) -> None:
        """MP102: some meters cut the hub's power while they restart on new firmware; the
        hub raises AD1 to the network operator, then the meter 8F36 once power is back."""
        meter = run.devices["esme"]
        if not self.network.chance(meter, run.false_outage_share):
            return
        fleet = self.scenario.fleet
        dno = (fleet.network_operator or fleet.supplier) if fleet else run.user_id
        supplier = fleet.supplier if fleet else run.user_id
        self._timeline.add(now + 0.2, ("alert", (meter, "AD1", run.region, (dno,), "outage")))
        restore = (meter, "8F36", run.region, (supplier,), "restore")
        self._timeline.add(now + 0.2 + run.outage_s, ("alert", restore))

    # Reading what the gateway wrote (called by the followers, in the event loop)

    def _ours(self, records: list[Record]) -> Iterator[tuple[str, dict[str, Any], _Pending]]:
        """(request_id, decoded value, pending) of the records answering this run's requests."""
        for rec in records:
            try:
                doc = orjson.loads(rec.value or b"")
                rid = doc["request_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            pending = self._pending.get(rid)
            if pending is not None:
                yield rid, doc, pending

    def _on_responses(self, records: list[Record]) -> None:
        now = self.now()
        self._on_sync_compare(records)
        for rid, doc, pending in self._ours(records):
            if pending.answered:
                continue
            if self._duis is not None and rid in self._await_sync:
                self._early[rid] = doc  # decided by the sync answer, compared then
                continue
            self._on_responses_doc(rid, doc, pending, now)

    def _on_sync_compare(self, records: list[Record]) -> None:
        """--via duis: compare each async answer with the sync answer that decided it."""
        stats = self._duis.stats if self._duis is not None else None
        if stats is None or not self._sync_code:
            return
        for rec in records:
            try:
                doc = orjson.loads(rec.value or b"")
                rid = doc["request_id"]
                sync = self._sync_code.pop(rid, None)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if sync is not None:
                self._agree(sync, str(doc.get("response_code", "")))

    def _agree(self, sync: str, code: str) -> None:
        assert self._duis is not None  # only called with --via duis
        stats = self._duis.stats
        if sync == code:
            stats.agreed += 1
        else:
            stats.disagreed += 1
            stats.disagreements[f"{sync} -> {code}"[:40]] += 1

    def _on_sync(self, job: DuisJob, answer: DuisAnswer, latency_s: float) -> None:
        """--via duis: the ingress's synchronous answer to `job` (in the event loop). A
        decision (not `pending`) is the request's answer; `pending` leaves it to the answer
        on dcc.user.responses, as a Kafka run does."""
        now = self.now()
        rid = job.request_id
        self._await_sync.discard(rid)
        early = self._early.pop(rid, None)
        pending = self._pending.get(rid)
        if answer.outcome == "pending":
            if early is not None and pending is not None and not pending.answered:
                self._on_responses_doc(rid, early, pending, now)
            return
        if answer.outcome not in ("refused", "failed"):
            if early is not None:
                self._agree(answer.response_code, str(early.get("response_code", "")))
            else:
                self._sync_code[rid] = answer.response_code
        if pending is None or pending.answered:
            return
        self._answer(
            rid,
            pending,
            now,
            outcome=answer.outcome,
            code=answer.response_code,
            rule=answer.rule,
            retry_ms=answer.retry_after_ms,
            latency_s=latency_s,
        )

    def _on_responses_doc(
        self, rid: str, doc: dict[str, Any], pending: _Pending, now: float
    ) -> None:
        retry = doc.get("retry_after_ms")
        self._answer(
            rid,
            pending,
            now,
            outcome=str(doc.get("outcome", "?")),
            code=str(doc.get("response_code", "")),
            rule=doc.get("rule"),
            retry_ms=retry if isinstance(retry, int) else None,
            latency_s=now - pending.t_sent_s,
        )

    def _answer(
        self,
        rid: str,
        pending: _Pending,
        now: float,
        *,
        outcome: str,
        code: str,
        rule: str | None,
        retry_ms: int | None,
        latency_s: float,
    ) -> None:
        """Count one request's answer and move its flow on."""
        pending.answered = True
        self.stats.answered += 1
        self.stats.outcomes[outcome] += 1
        self.stats.by_user[pending.user_id][outcome] += 1
        self.stats.by_source[pending.source][outcome] += 1
        self.collector.request_answered(
            now,
            pending.user_id,
            pending.srv,
            outcome,
            code,
            rule,
            latency_s,
        )
        if (
            outcome in ("throttled", "quarantined")
            and (pending.user_id, outcome) not in self._first_seen
        ):
            self._first_seen.add((pending.user_id, outcome))
            kind = "throttling" if outcome == "throttled" else "quarantine"
            self.collector.event(
                now,
                kind,
                f"User {pending.user_id} first {outcome} ({pending.srv}, rule {rule})",
            )
        run = pending.flow
        if run is not None:
            action = run.flow.on_response(now, outcome, retry_ms)
            assert self._producer is not None  # set before the followers start
            self._act(self._producer, run, action, now)
        elif outcome != "accepted" or pending.completed:
            del self._pending[rid]

    def _on_outbound(self, records: list[Record]) -> None:
        now = self.now()
        tag = self._shard_tag
        if tag is not None:
            records = [rec for rec in records if _has_header(rec, SHARD_HEADER, tag)]
        for rid, _, pending in self._ours(records):
            seq = self.ids.seq_of(rid)
            target = rid.split(":")[1]
            key = f"{target}:{pending.srv}:{pending.command_variant}:{seq}"
            answer = self.network.answer(
                key, pending.region, pending.command_variant, pending.extra_failure
            )
            self._timeline.add(now + answer.delay_s, ("answer", (rid, answer.ok)))

    def _on_alerts(self, records: list[Record]) -> None:
        now = self.now()
        tag = self.run_tag
        for rec in records:
            try:
                doc = orjson.loads(rec.value or b"")
                payload = doc["payload"]
                run_tag, _, source, _ = payload.split("|")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                continue
            if run_tag != tag:
                continue
            headers = dict(rec.headers or ())
            copy = headers.get("dccgate-storm-copy")
            storm_copy = copy.decode(errors="replace") if copy else None
            count = doc.get("throttled_alert_count") or 0
            self.stats.alerts_delivered[source] += 1
            if storm_copy is not None:
                self.stats.storm_copies += 1
                if storm_copy == "periodic":
                    self.stats.suppressed_reported += count
                key = (doc.get("device_id", ""), doc.get("alert_code", ""))
                if key not in self._first_seen:
                    self._first_seen.add(key)
                    self.collector.event(
                        now,
                        "storm",
                        f"storm on device {key[0]}, alert {key[1]}: first copy, {count} suppressed",
                    )
            # One record per recipient: the first recipient's copy is the alert's "primary"
            # one, so copies and suppressed counts are not multiplied by the recipients.
            recipients = [r for r in doc.get("recipients") or () if r]
            primary = not recipients or (rec.key or b"").decode(errors="replace") == recipients[0]
            self.collector.alert_delivered(
                now,
                str(doc.get("region") or ""),
                str(doc.get("alert_code", "")),
                storm_copy,
                int(count),
                primary=primary,
            )

    def _on_deadletters(self, records: list[Record]) -> None:
        now = self.now()
        tag = self.run_tag.encode()
        for rec in records:
            headers = dict(rec.headers or ())
            if headers.get(RUN_HEADER) != tag:
                continue
            self.stats.deadlettered += 1
            reason = headers.get("dccgate-dlq-kind", b"").decode(errors="replace")
            self.collector.deadlettered(now, reason or "unknown")


def _has_header(rec: Record, name: str, value: bytes) -> bool:
    return any(key == name and v == value for key, v in rec.headers or ())
