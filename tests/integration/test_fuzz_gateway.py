"""Fuzzing a live gateway (issue 12, item 7): thousands of hostile records on both inputs of
a real `dccgate run`, with every rule kind configured, and an exact account of each one.

The records come from a seeded generator (tests/integration/hostile.py; set
DCCGATE_FUZZ_SEED to try another seed, the default is fixed so CI is reproducible): every
SRV of the catalogue with every command variant, and requests and alerts with one to three
hostile changes each: invalid UTF-8 in any string, nesting up to 100,000 deep anywhere,
duplicate keys (escaped ones too), numbers no float holds, NaN and Infinity, 1 MB values,
NUL and control characters in every string, lone surrogates, odd request_ids and record
keys, missing, extra, null and mistyped fields, tombstones, garbage, forged `dccgate-*` and
other odd headers, odd timestamps.

What is asserted (tests/integration/accounting.py has the exact rules):

- every Service Request got exactly one final answer (by request_id) or exactly one dead
  letter (by the input's partition and offset), never both and never none; an accepted one
  was forwarded once, byte for byte, a quarantined one held once; nothing else was;
- every alert got exactly one of: a dead letter; forwarded at once to each of its distinct
  non-empty recipients once; a storm's periodic copy; suppressed, as counted by the copies
  of its storm (each storm ended with a final copy that repeats its total); or dropped by
  the MP102 rule (power-outage alerts only, as many as the metric counts);
- a record whose bytes carry a hazard got the dead-letter kind for it; no output carries a
  `dccgate-*` header the gateway did not write itself; no stage raised on any record
  (`processing_error`);
- the metrics agree with the topics, the process is alive and `/healthz` answers 200, and
  SIGTERM still stops it cleanly.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from broker.settings import KafkaSettings
from tests.integration.accounting import (
    AlertAccount,
    RequestAccount,
    account_alerts,
    account_requests,
    sample,
    summary,
)
from tests.integration.brokers import SessionBroker
from tests.integration.helpers import wait_until_async
from tests.integration.hostile import Generator, Sent, gateway_config
from tests.integration.live_gateway import LiveGateway, Sender, TopicLog, live_gateway
from workers.config.settings import Settings

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("DCCGATE_FUZZ_SEED", "20261207"))
SCALE = float(os.environ.get("DCCGATE_FUZZ_SCALE", "1"))
"""More records per run for a deeper local run (e.g. 5); CI runs 1."""
HOSTILE_REQUESTS = round(2_300 * SCALE)
"""Besides the 129 x 8 SRV matrix: about 3,350 Service Requests per run."""
PLAIN_ALERTS = round(500 * SCALE)
HOSTILE_ALERTS = round(650 * SCALE)
"""Besides the MP102 scenario: about 1,160 alerts per run."""
OUTAGE_CODES = frozenset({"AD1"})
# A deadline, so a gateway that loses a record fails with the account instead of hanging:
# not a speed assertion (the run takes about a third of it).
SETTLE_S = 90.0 * max(1.0, SCALE)


async def _send(sender: Sender, topic: str, records: list[Sent]) -> None:
    placed = await sender.send(
        topic, [(s.key, s.value, s.headers, s.timestamp_ms) for s in records]
    )
    for s, where in zip(records, placed, strict=True):
        s.partition, s.offset = where


def _interleave(a: list[Sent], b: list[Sent]) -> list[Sent]:
    """Both lists, merged evenly, each in its own order (COUNTERs rise per pair)."""
    out: list[Sent] = []
    ia = ib = 0
    while ia < len(a) or ib < len(b):
        if ib >= len(b) or (ia < len(a) and ia * len(b) <= ib * len(a)):
            out.append(a[ia])
            ia += 1
        else:
            out.append(b[ib])
            ib += 1
    return out


def _settled(gw: LiveGateway, alerts: int) -> bool:
    """The alert worker has committed every alert and holds nothing: no running storm, no
    alert held by MP102 or waiting for regional capacity."""
    assert gw.alive(), f"the gateway exited:\n{gw.log_tail()}"
    m = gw.metric_sum
    return (
        m("dccgate_records_consumed_total", service="alerts") >= alerts
        and m("dccgate_alerts_active_storms") == 0
        and m("dccgate_alerts_held") == 0
        and m("dccgate_alerts_mp102_held") == 0
    )


async def test_every_hostile_record_gets_exactly_one_outcome(
    kafka_broker: SessionBroker, settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    started = time.monotonic()
    gen = Generator(SEED)
    topics = settings.topics
    with live_gateway(kafka_broker.bootstrap, settings, tmp_path / "gateway.log") as gw:
        for path, body in gateway_config(gen.now):
            gw.put(path, body)
        outputs = [topics.user_responses, topics.deadletter, topics.sr_outbound,
                   topics.sr_quarantine, topics.alerts_outbound]  # fmt: skip
        async with TopicLog(kafka, outputs) as out, Sender(kafka) as sender:
            # MP102 watches a device once its 11.3 Activate Firmware is forwarded: those go
            # first and the outage alerts last, so the rule mostly sees the activation in
            # time to hold (or drop) them; an outage alert it missed is forwarded at once,
            # and is accounted for either way.
            firmware = gen.firmware_activations()
            await _send(sender, topics.sr_inbound, firmware)
            requests = _interleave(
                gen.srv_matrix(), [gen.hostile_request() for _ in range(HOSTILE_REQUESTS)]
            )
            alerts = _interleave(
                [gen.plain_alert() for _ in range(PLAIN_ALERTS)],
                [gen.hostile_alert() for _ in range(HOSTILE_ALERTS)],
            )
            alerts += gen.outage_scenario()
            for batch in (firmware + requests, alerts):
                tags = [s.tag for s in batch if s.tag is not None]
                assert len(set(tags)) == len(tags), "the generator repeated a tag"
            generated = time.monotonic()
            await asyncio.gather(
                _send(sender, topics.sr_inbound, requests),
                _send(sender, topics.alerts_inbound, alerts),
            )
            sent_at = time.monotonic()
            all_requests = firmware + requests

            def requests_done() -> bool:
                out.check()
                assert gw.alive(), f"the gateway exited:\n{gw.log_tail()}"
                return not account_requests(all_requests, out.records, topics).missing

            await wait_until_async(
                requests_done,
                timeout_s=SETTLE_S,
                step_s=0.5,
                what=lambda: _report(
                    "requests without an outcome",
                    account_requests(all_requests, out.records, topics),
                ),
            )
            await wait_until_async(
                lambda: _settled(gw, len(alerts)),
                timeout_s=SETTLE_S,
                step_s=0.5,
                what=lambda: f"alert worker not settled: {_alert_gauges(gw)}",
            )
            await asyncio.sleep(1.5)  # a quiet moment: a second outcome would show up now
            out.check()
            req = account_requests(all_requests, out.records, topics)
            alt = account_alerts(alerts, out.records, topics, outage_codes=OUTAGE_CODES)
            metrics = gw.metric_sum
            status, doc = gw.health()
            print(
                f"\nfuzz seed {SEED}: {len(all_requests)} requests, {len(alerts)} alerts "
                f"({sum(len(s.value or b'') for s in all_requests + alerts) / 1e6:.1f} MB); "
                f"up, configured and generated in {generated - started:.1f} s, sent in "
                f"{sent_at - generated:.1f} s,"
                f" settled {time.monotonic() - sent_at:.1f} s later\n"
                f"requests:\n{summary(req.outcomes)}\nalerts:\n{summary(alt.outcomes)}\n"
                f"  {alt.storms} storms, {alt.unaccounted} outage alerts dropped by MP102\n"
                f"rules that fired: {_fired(gw)}"
            )
            problems = req.problems + alt.problems
            problems += [f"no outcome: {s.describe()}" for s in req.missing + alt.missing]
            problems += [f"a stage raised: {p}" for p in req.processing_errors]
            problems += [f"a stage raised: {p}" for p in alt.processing_errors]
            assert not problems, _report("problems", req, alt, problems)
            # The metrics count what the topics show.
            assert metrics("dccgate_deadletter_records_total", service="router") == (
                req.dead_letters
            )
            assert metrics("dccgate_router_decisions_total") == req.answers
            assert metrics("dccgate_deadletter_records_total", service="alerts") == (
                alt.dead_letters
            )
            assert metrics("dccgate_alerts_suppressed_total") == alt.suppressed
            assert metrics("dccgate_alerts_mp102_dropped_total") == alt.unaccounted
            assert metrics("dccgate_records_consumed_total", service="router") == len(all_requests)
            assert gw.alive(), gw.log_tail()
            assert status == 200, doc
            assert doc["status"] == "ok", doc
        proc = gw.proc
    assert proc.returncode == 0, gw.log_tail()


def _fired(gw: LiveGateway) -> str:
    """What the rules did, for the log (how much of it depends on timing: not asserted)."""
    m = gw.metric_sum
    counts = {
        "throttled": m("dccgate_traffic_throttled_total"),
        "would throttle (shadow)": m("dccgate_traffic_shadow_would_throttle_total"),
        "would quarantine (shadow)": m("dccgate_adt_shadow_would_quarantine_total"),
        "MP102 held then released": m("dccgate_alerts_mp102_released_total"),
        "regional delay (s, sum)": round(m("dccgate_alerts_regional_delay_seconds_sum"), 2),
    }
    return ", ".join(f"{k} {v:g}" for k, v in counts.items())


def _alert_gauges(gw: LiveGateway) -> str:
    names = ("dccgate_alerts_active_storms", "dccgate_alerts_held", "dccgate_alerts_mp102_held")
    shown = {n: gw.metric_sum(n) for n in names}
    shown["consumed"] = gw.metric_sum("dccgate_records_consumed_total", service="alerts")
    return str(shown)


def _report(
    title: str,
    req: RequestAccount,
    alt: AlertAccount | None = None,
    problems: list[str] | None = None,
) -> str:
    lines = [f"{title}:"]
    if problems is not None:
        lines.append(sample(problems, 30))
    else:
        lines.append(sample([s.describe() for s in req.missing], 30))
        lines.append(sample(req.problems, 30))
    if alt is not None:
        lines.append(f"request outcomes:\n{summary(req.outcomes)}")
        lines.append(f"alert outcomes:\n{summary(alt.outcomes)}")
    return "\n".join(lines)
