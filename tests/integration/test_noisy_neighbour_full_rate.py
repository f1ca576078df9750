"""Issue 19's noisy neighbour at its own rates (opt-in: DCCGATE_FULL_RATE=1).

Operating threshold 1,000/s; User A sends 1,500/s against an allocation of 200/s; B and C
send 250/s each, within theirs. A's fair share is what B and C leave under the threshold:
1,000 - 250 - 250 = 500/s. Two `dccgate worker router` processes (A on one, B and C on the
other) exchange their load through `dcc.load`. Over the held part of the flood (from 3 s,
once management is on, to the end) the admitted total must stay within 5% of the threshold
and A within 5% of its fair share; B and C are never throttled.

Too heavy for CI on 2 cores next to the rest of the suite (2,000 requests/s for 15 s through
two router processes and the embedded broker), so it runs only when asked:

    DCCGATE_FULL_RATE=1 .venv/bin/python -m pytest \\
        tests/integration/test_noisy_neighbour_full_rate.py -q -s

The figures it prints are recorded in docs/traffic-management.md.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from tests.integration.brokers import SessionBroker
from tests.integration.helpers import wait_until_async
from tests.integration.test_noisy_neighbour import three_users, two_routers
from workers.config.model import Allocation, Traffic
from workers.config.settings import Settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        os.environ.get("DCCGATE_FULL_RATE") != "1",
        reason="opt-in full-rate run: set DCCGATE_FULL_RATE=1",
    ),
]

THRESHOLD, CAPACITY = 1000.0, 1200.0
ALLOCATIONS = {"A": 200.0, "B": 300.0, "C": 300.0}
SEND_RATES = {"A": 1500.0, "B": 250.0, "C": 250.0}
FAIR_SHARE_A = THRESHOLD - SEND_RATES["B"] - SEND_RATES["C"]
SEND_S = float(os.environ.get("DCCGATE_FULL_RATE_SECONDS", "15"))
HELD_FROM_S = 3.0


@pytest.fixture
async def configured(kafka: KafkaSettings, settings: Settings) -> AsyncIterator[dict[str, str]]:
    async with three_users(
        kafka,
        settings,
        token="noisy-neighbour-full-rate-operator-token",
        id_octet="31",
        # A burst of rate x 50 ms batches at least (docs/traffic-management.md).
        allocations={
            name: Allocation(rate_per_s=rate, burst=int(rate / 4))
            for name, rate in ALLOCATIONS.items()
        },
        traffic=Traffic(capacity_per_s=CAPACITY, operating_threshold_per_s=THRESHOLD),
    ) as users:
        yield users


async def _send(kafka: KafkaSettings, topic: str, users: dict[str, str]) -> tuple[float, int]:
    """Send at SEND_RATES for SEND_S seconds in 50 ms ticks (what is owed follows the clock,
    so a late tick sends more, not less); return the start (epoch s) and how many were sent."""
    tick_s = 0.05
    counters = collections.Counter[str]()
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        start = time.monotonic()
        started_at = time.time()
        owed = dict.fromkeys(users, 0.0)
        last = 0.0
        while (elapsed := time.monotonic() - start) < SEND_S:
            batch = producer.batch()
            for name, user_id in users.items():
                owed[name] += SEND_RATES[name] * (elapsed - last)
                while owed[name] >= 1:
                    owed[name] -= 1
                    counters[name] += 1
                    n = counters[name]
                    doc = {
                        "request_id": f"{user_id}:00-DB-00-00-{n // 65536:02X}-"
                        f"{n // 256 % 256:02X}-{n % 256:02X}-00:{n}",
                        "user_role": "IS",
                        "srv": "4.1.1",
                        "command_variant": 1,
                    }
                    batch.add(topic, user_id.encode(), orjson.dumps(doc))
            last = elapsed
            await producer.send(batch)
            await asyncio.sleep(
                max(0.0, start + (elapsed // tick_s + 1) * tick_s - time.monotonic())
            )
    return started_at, sum(counters.values())


async def test_the_issues_noisy_neighbour_at_full_rate(
    kafka_broker: SessionBroker,
    kafka: KafkaSettings,
    settings: Settings,
    configured: dict[str, str],
    tmp_path: Path,
) -> None:
    users = configured
    names = {v: k for k, v in users.items()}
    async with two_routers(kafka_broker, kafka, settings, tmp_path) as (_, answers, routers):
        started_at, expected = await _send(kafka, settings.topics.sr_inbound, users)
        await wait_until_async(
            lambda: len(answers) >= expected,
            timeout_s=180,
            what=lambda: (
                f"every request answered ({len(answers)} of {expected}: "
                f"{collections.Counter(names[str(a['user_id'])] for a in answers)})"
            ),
        )
    held_s = SEND_S - HELD_FROM_S
    admitted: collections.Counter[str] = collections.Counter()
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for a in answers:
        name = names[str(a["user_id"])]
        outcomes[name][str(a["outcome"])] += 1
        at_s = int(str(a["at_ms"])) / 1000 - started_at
        if a["outcome"] == "accepted" and HELD_FROM_S <= at_s < SEND_S:
            admitted[name] += 1
    total_per_s = sum(admitted.values()) / held_s
    a_per_s = admitted["A"] / held_s
    print(
        {k: dict(v) for k, v in outcomes.items()},
        f"held {HELD_FROM_S:g}-{SEND_S:g} s: total {total_per_s:.0f}/s "
        f"({total_per_s / THRESHOLD - 1:+.1%} vs {THRESHOLD:.0f}), A {a_per_s:.0f}/s "
        f"({a_per_s / FAIR_SHARE_A - 1:+.1%} vs its fair share {FAIR_SHARE_A:.0f}), "
        f"B {admitted['B'] / held_s:.0f}/s, C {admitted['C'] / held_s:.0f}/s",
    )
    assert outcomes["B"]["throttled"] == 0
    assert outcomes["C"]["throttled"] == 0
    assert abs(total_per_s / THRESHOLD - 1) <= 0.05
    assert abs(a_per_s / FAIR_SHARE_A - 1) <= 0.05
    assert all(r.returncode == 0 for r in routers)
