"""`dccgate loadtest --via duis`: the simulated Users, each with keys of their own, drive an
embedded gateway through its DUIS ingress; the synchronous answers' codes are the requests'
responses in report.json, and agree with the answers on dcc.user.responses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.embedded_only(
        reason="the load-test tool with a gateway and embedded broker of its own (--embedded), "
        "whatever --broker says; about 20 s, so run once"
    ),
]


def test_via_duis_gets_answers_through_the_ingress(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "workers.cli", "loadtest", "runaway-user", "--embedded"),
            *("--via", "duis", "--duis-in-flight", "32"),
            *("--duration", "3", "--seed", "5", "--quiet", "--json", "--report", str(tmp_path)),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    stats = json.loads(next(line for line in lines if line.startswith("{")))["stats"]
    report = json.loads((tmp_path / "report.json").read_text())
    duis = report["gateway"]["duis"]
    assert duis == stats["duis"]
    assert duis["via"] == "duis"
    assert duis["max_in_flight"] == 32
    assert duis["failures"] == {}
    codes = duis["sync_codes"]
    answered = sum(codes.values())
    # on a busy machine the ingress may not keep up with the scenario: what was still queued
    # or in flight when the run ended is `unfinished`, and only that is missing
    assert 50 < answered <= duis["posted"] <= stats["sent"] + stats["resent"]
    assert answered + duis["unfinished"] == stats["sent"] + stats["resent"]
    # the runaway User is throttled or quarantined, the others accepted: through the ingress
    assert codes.get("I99", 0) > 0
    assert codes.get("T1", 0) + codes.get("Q1", 0) > 0
    assert duis["http_status"].get("200", 0) >= 1
    if codes.get("T1"):
        assert duis["http_status"].get("429") == codes["T1"]
    # each sync decision agrees with the router's answer on dcc.user.responses
    assert duis["disagreed"] == 0
    assert duis["agreed"] + duis["async_missing"] + duis["sync_outcomes"].get("pending", 0) == (
        answered
    )
    assert duis["agreed"] > 0.5 * answered
    # the sync codes are the requests' responses in the report, bucket by bucket
    assert report["totals"]["answered"] == stats["answered"]
    assert set(report["totals"]["response_codes"]) <= set(codes) | {"I99"}
    by_bucket: dict[str, int] = {}
    for bucket in report["buckets"]:
        for code, n in bucket["codes"].items():
            by_bucket[code] = by_bucket.get(code, 0) + n
    assert by_bucket == report["totals"]["response_codes"]
    assert duis["sync_latency_ms"]["p50"] is not None
    # each simulated User and role has its xml-signing and command-signing key, cached
    keys = tmp_path / "duis-keys"
    assert len(list(keys.glob("*-xml.pem"))) == len(list(keys.glob("*-command.pem"))) >= 3
    assert "DUIS ingress:" not in proc.stdout.decode()  # --json: no text summary
