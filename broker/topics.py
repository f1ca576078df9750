"""The topic catalogue of the wire contract and its idempotent creation.

The topic names are fixed (docs/contract.md); a deployment may prefix them. Creating
them is idempotent: existing topics are left alone (their partition count is reported if it
differs, never changed, because changing it would move keys between partitions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.offset import OffsetRequest

from broker.errors import TopicSetupError
from broker.settings import KafkaSettings

__all__ = [
    "ALERTS_INBOUND",
    "ALERTS_OUTBOUND",
    "AUDIT",
    "CONTROL",
    "DEADLETTER",
    "LOAD",
    "SR_INBOUND",
    "SR_OUTBOUND",
    "SR_QUARANTINE",
    "STATE_ACTUALS",
    "STATE_ALERTS",
    "STATE_ROUTER",
    "TOPIC_NAMES",
    "USER_RESPONSES",
    "TopicSpec",
    "Topics",
    "ensure_topics",
]

log = logging.getLogger(__name__)

SR_INBOUND = "dcc.sr.inbound"
SR_OUTBOUND = "dcc.sr.outbound"
SR_QUARANTINE = "dcc.sr.quarantine"
USER_RESPONSES = "dcc.user.responses"
ALERTS_INBOUND = "dcc.alerts.inbound"
ALERTS_OUTBOUND = "dcc.alerts.outbound"
CONTROL = "dcc.control"
LOAD = "dcc.load"
DEADLETTER = "dcc.deadletter"
AUDIT = "dcc.audit"
# Changelogs of worker state (STYLE: quix-streams' changelog-backed state): the router's
# ADT counters per User, the alert worker's storm windows per device partition.
STATE_ROUTER = "dcc.state.router"
STATE_ALERTS = "dcc.state.alerts"
# The admin process's counts of Service Requests per User, SRV, month and outcome, with the
# dcc.user.responses offsets each count includes (docs/forecasts.md).
STATE_ACTUALS = "dcc.state.actuals"

TOPIC_NAMES: tuple[str, ...] = (
    SR_INBOUND,
    SR_OUTBOUND,
    SR_QUARANTINE,
    USER_RESPONSES,
    ALERTS_INBOUND,
    ALERTS_OUTBOUND,
    CONTROL,
    LOAD,
    DEADLETTER,
    AUDIT,
    STATE_ROUTER,
    STATE_ALERTS,
    STATE_ACTUALS,
)

_DAY_MS = 24 * 3600 * 1000

# Topic configs for Apache Kafka. The embedded broker stores them but neither compacts nor
# enforces retention, so every reader of dcc.control keeps the last value per key itself.
_CONFIGS: Mapping[str, Mapping[str, str]] = {
    CONTROL: {"cleanup.policy": "compact"},
    LOAD: {"retention.ms": str(3600 * 1000)},
    DEADLETTER: {"retention.ms": str(30 * _DAY_MS)},
    SR_QUARANTINE: {"retention.ms": str(30 * _DAY_MS)},
    # Audit history must outlive the compaction of dcc.control: about 13 months.
    AUDIT: {"retention.ms": str(400 * _DAY_MS)},
    # Only the newest snapshot per key matters; on Apache Kafka compaction keeps the topic small.
    STATE_ROUTER: {"cleanup.policy": "compact"},
    STATE_ALERTS: {"cleanup.policy": "compact"},
    # One record per User and month, kept for good: any past month's actuals stay queryable.
    STATE_ACTUALS: {"cleanup.policy": "compact"},
}

# Topics whose order must be total (one partition): the control log is applied in order.
_SINGLE_PARTITION = frozenset({CONTROL, LOAD, AUDIT, STATE_ACTUALS})


class TopicSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One topic as dccgate wants it on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


class Topics(msgspec.Struct, frozen=True, kw_only=True):
    """The contract's topic names with a deployment's prefix applied.

    Attributes are the full names to produce to and consume from.
    """

    sr_inbound: str
    sr_outbound: str
    sr_quarantine: str
    user_responses: str
    alerts_inbound: str
    alerts_outbound: str
    control: str
    load: str
    deadletter: str
    audit: str
    state_router: str
    state_alerts: str
    state_actuals: str

    @classmethod
    def with_prefix(cls, prefix: str = "") -> Topics:
        """The topic names, each with `prefix` in front (default: none)."""
        return cls(
            sr_inbound=prefix + SR_INBOUND,
            sr_outbound=prefix + SR_OUTBOUND,
            sr_quarantine=prefix + SR_QUARANTINE,
            user_responses=prefix + USER_RESPONSES,
            alerts_inbound=prefix + ALERTS_INBOUND,
            alerts_outbound=prefix + ALERTS_OUTBOUND,
            control=prefix + CONTROL,
            load=prefix + LOAD,
            deadletter=prefix + DEADLETTER,
            audit=prefix + AUDIT,
            state_router=prefix + STATE_ROUTER,
            state_alerts=prefix + STATE_ALERTS,
            state_actuals=prefix + STATE_ACTUALS,
        )

    def all(self) -> tuple[str, ...]:
        """All full names, in contract order."""
        return tuple(getattr(self, f) for f in self.__struct_fields__)

    def specs(
        self,
        *,
        partitions: int,
        replication_factor: int = 1,
        min_insync_replicas: int | None = None,
    ) -> list[TopicSpec]:
        """What each topic should look like: `partitions` for the data topics, one for the
        control and load logs, `replication_factor` replicas (with `min.insync.replicas`
        if given), and the retention/compaction configs for Apache Kafka."""
        if partitions < 1:
            raise TopicSetupError(f"partitions must be at least 1, got {partitions}")
        prefix_len = len(self.sr_inbound) - len(SR_INBOUND)
        specs = []
        for full in self.all():
            base = full[prefix_len:]
            configs = dict(_CONFIGS.get(base, {}))
            if min_insync_replicas is not None:
                configs["min.insync.replicas"] = str(min_insync_replicas)
            specs.append(
                TopicSpec(
                    name=full,
                    partitions=1 if base in _SINGLE_PARTITION else partitions,
                    replication_factor=replication_factor,
                    configs=configs,
                )
            )
        return specs


async def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec]) -> list[str]:
    """Create the topics in `specs` that do not exist yet; return the names created.

    Idempotent: run by every worker at start-up. A topic that exists with another partition
    count is left as it is, with a warning. Returns once the topics it created are served
    (their leaders answer for them), at most `request_timeout_ms` after creating them.
    """
    admin = AIOKafkaAdminClient(**settings.admin_kwargs())
    try:
        await admin.start()
    except KafkaError as exc:
        raise TopicSetupError(
            f"cannot reach Kafka at {settings.bootstrap} to create topics: {exc}; "
            "check --bootstrap and that the cluster is up"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=s.name,
                        num_partitions=s.partitions,
                        replication_factor=s.replication_factor,
                        topic_configs=dict(s.configs),
                    )
                    for s in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                if code == TopicAlreadyExistsError.errno:
                    # Another worker created it between our list and create: fine.
                    continue
                if code != 0:
                    message = rest[0] if rest else ""
                    raise TopicSetupError(
                        f"creating topic {name} failed with Kafka error {code} {message!r}; "
                        "check the principal may create topics, or create them beforehand "
                        "and start with --no-create-topics"
                    )
            await _until_served(admin, missing, settings.request_timeout_ms / 1000)
        present = [s for s in specs if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            by_name = {d["topic"]: len(d["partitions"]) for d in described}
            for s in present:
                have = by_name.get(s.name)
                if have is not None and have != s.partitions:
                    log.warning(
                        "topic %s has %d partitions, configured %d; leaving it as it is",
                        s.name,
                        have,
                        s.partitions,
                    )
        return [s.name for s in missing]
    except KafkaError as exc:
        raise TopicSetupError(f"creating topics on {settings.bootstrap} failed: {exc}") from exc
    finally:
        await admin.close()


async def _until_served(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], timeout_s: float
) -> None:
    """Wait until the leader of every partition of `specs` answers for it, at most
    `timeout_s` (then go on with a warning).

    Apache Kafka (KRaft) answers CreateTopics once the controller has committed the topics;
    a broker serves them a moment later. Measured on a 1-node Kafka 4.4, 12 topics created at
    once: a metadata request right after the answer did not list them yet (19 times in 20),
    so a client that starts at once finds no partitions and calls the topic missing
    (`broker.follower.partition_counts`); once listed, their leader still refused ListOffsets
    with NOT_LEADER_OR_FOLLOWER for about 0.3 s, which aiokafka logs at ERROR. The embedded
    broker serves a topic as soon as it answers.
    """
    want = {s.name: s.partitions for s in specs}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            waiting = await _not_served(admin, want)
        except KafkaError:
            waiting = set(want)
        if not waiting:
            return
        if time.monotonic() > deadline:
            log.warning(
                "topics %s were created but are not served yet after %.0f s; going on",
                sorted(waiting),
                timeout_s,
            )
            return
        await asyncio.sleep(0.02)


async def _not_served(admin: AIOKafkaAdminClient, want: Mapping[str, int]) -> set[str]:
    """The topics of `want` (name -> partitions) that are not listed with a leader for each
    partition yet, or whose leader does not yet answer ListOffsets for them."""
    waiting = set(want)
    by_leader: dict[int, dict[str, list[tuple[int, int]]]] = {}
    for d in await admin.describe_topics(list(want)):
        parts = d["partitions"]
        if (
            d["error_code"] == 0
            and len(parts) == want.get(d["topic"])
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in parts)
        ):
            waiting.discard(d["topic"])
            for p in parts:
                # (partition, timestamp): -1 asks for the latest offset.
                by_leader.setdefault(p["leader"], {}).setdefault(d["topic"], []).append(
                    (p["partition"], -1)
                )
    for leader, topics in by_leader.items():
        # aiokafka's admin client has no ListOffsets; its connection pool sends it.
        request = OffsetRequest(-1, 0, list(topics.items()))
        response = await admin._client.send(leader, request)
        for topic, partitions in response.topics:
            if any(error_code != 0 for _, error_code, *_ in partitions):
                waiting.add(topic)
    return waiting
