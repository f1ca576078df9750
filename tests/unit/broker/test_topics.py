from __future__ import annotations

import pytest

from broker.errors import TopicSetupError
from broker.topics import CONTROL, TOPIC_NAMES, Topics


def test_the_contract_topics() -> None:
    assert TOPIC_NAMES == (
        "dcc.sr.inbound",
        "dcc.sr.outbound",
        "dcc.sr.quarantine",
        "dcc.user.responses",
        "dcc.alerts.inbound",
        "dcc.alerts.outbound",
        "dcc.control",
        "dcc.load",
        "dcc.deadletter",
        "dcc.audit",
        "dcc.state.router",
        "dcc.state.alerts",
        "dcc.state.actuals",
    )
    assert Topics.with_prefix("").all() == TOPIC_NAMES


def test_prefix_applies_to_every_topic() -> None:
    topics = Topics.with_prefix("staging.")
    assert all(name.startswith("staging.dcc.") for name in topics.all())
    assert topics.sr_inbound == "staging.dcc.sr.inbound"


def test_specs_partitions_and_configs() -> None:
    specs = {s.name: s for s in Topics.with_prefix("p.").specs(partitions=12)}
    assert specs["p.dcc.sr.inbound"].partitions == 12
    assert specs["p." + CONTROL].partitions == 1
    assert specs["p.dcc.load"].partitions == 1
    assert specs["p." + CONTROL].configs == {"cleanup.policy": "compact"}
    # State changelogs are co-partitioned with the input they follow, and compacted.
    assert specs["p.dcc.state.router"].partitions == 12
    assert specs["p.dcc.state.alerts"].configs == {"cleanup.policy": "compact"}
    # The actuals are one log the admin process reads whole, kept for good (compacted).
    assert specs["p.dcc.state.actuals"].partitions == 1
    assert specs["p.dcc.state.actuals"].configs == {"cleanup.policy": "compact"}


def test_specs_carry_replication_and_min_insync() -> None:
    specs = Topics.with_prefix("").specs(partitions=3, replication_factor=3, min_insync_replicas=2)
    assert {s.replication_factor for s in specs} == {3}
    control = next(s for s in specs if s.name == CONTROL)
    assert control.configs == {"cleanup.policy": "compact", "min.insync.replicas": "2"}


def test_specs_refuse_zero_partitions() -> None:
    with pytest.raises(TopicSetupError, match="at least 1"):
        Topics.with_prefix("").specs(partitions=0)
