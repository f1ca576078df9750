"""dccgate against its peers: the same pipeline on Quix Streams and on faust-streaming, on the
same broker, the same input, in the same run.

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root with a running Apache Kafka:

    make kafka-up KAFKA_PORT=19092
    .venv/bin/python tests/bench/bench_peers.py --bootstrap 127.0.0.1:19092
    make kafka-down

Apache Kafka, not the embedded broker: Quix Streams reads each topic's `retention.ms` from
the broker to configure its changelog topics, and the embedded broker does not describe
topic configs.

The peers run in a virtualenv of their own, `.venv-peers` (made on the first run with
pinned versions and the project installed, so they import the project's schema, catalogue
and validator as dccgate does; their dependencies stay out of dccgate's). Each repeat
writes `--messages` of the benchmark's requests (`make_requests`: 200 Users, every SRV) to a
fresh input topic, then runs, one after the other on the same records, each with a consumer
group of its own:

- dccgate's router with every check on (`dccgate bench --checks all`'s router: registered
  Users and roles, replay protection, traffic management active, 9 ADT count windows and
  value rules per request, its state changelogged to dcc.state.router);
- tests/bench/peers/quix_pipeline.py and faust_pipeline.py: decode, DUIS validation with
  the project's own catalogue and rules, three sliding-window counts per (User, SRV) in the
  library's own state (changelogged), the excess diverted, forward plus answer.

Every pipeline runs with the same processing guarantee (`--guarantee`, default
at-least-once: dccgate `--exactly-once off`, the peers' `processing_guarantee` likewise;
`exactly-once`: transactions on every side).

Figures are records per second from each one's first record to its last output flushed and
offsets committed; medians of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from broker.topics import ensure_topics  # noqa: E402
from broker.transactions import resolve_exactly_once  # noqa: E402
from workers.config.settings import Settings  # noqa: E402
from workers.tools.bench import make_requests, produce_records, time_router  # noqa: E402

VENV = REPO / ".venv-peers"
AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"
PEERS = {
    "quixstreams": ("quixstreams==3.28.1", "tests.bench.peers.quix_pipeline"),
    "faust-streaming": ("faust-streaming==0.15.3", "tests.bench.peers.faust_pipeline"),
}


def _peers_python() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    wanted = " ".join(spec for spec, _ in PEERS.values())
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"making {VENV} (once): {wanted} and the project", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *wanted.split(), "-e", str(REPO)],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def _peer(
    python: Path,
    module: str,
    bootstrap: str,
    prefix: str,
    n: int,
    timeout_s: float,
    guarantee: str,
) -> float:
    with tempfile.TemporaryDirectory(prefix="peer-") as state_dir:
        done = subprocess.run(
            [str(python), "-m", module, bootstrap, prefix, str(n), state_dir, guarantee],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        result_file = Path(state_dir, "result.json")
        if not result_file.exists():
            raise RuntimeError(
                f"{module} did not finish (exit {done.returncode}):\n{done.stderr[-3000:]}"
            )
        result = json.loads(result_file.read_text())
    return n / float(result["seconds"])


async def _one_repeat(
    settings: Settings, bootstrap: str, n: int, python: Path, timeout_s: float, guarantee: str
) -> dict[str, float]:
    prefix = f"peers-{uuid.uuid4().hex[:8]}."
    run = Settings(
        topic_prefix=prefix,
        partitions=settings.partitions,
        # The same processing guarantee on every side: transactions or none.
        exactly_once="on" if guarantee == EXACTLY_ONCE else "off",
    )
    kafka = await resolve_exactly_once(
        run.kafka(bootstrap, embedded=False), run.exactly_once, embedded=False
    )
    await ensure_topics(kafka, run.topics.specs(partitions=run.partitions))
    await produce_records(kafka, run.topics.sr_inbound, make_requests(n))
    rates = {"dccgate": n / await time_router(run, kafka, n, traffic=True, adt=True)}
    for name, (_, module) in PEERS.items():
        rates[name] = await asyncio.to_thread(
            _peer, python, module, bootstrap, prefix, n, timeout_s, guarantee
        )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of a running Kafka")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per peer run")
    parser.add_argument(
        "--guarantee",
        choices=(AT_LEAST_ONCE, EXACTLY_ONCE),
        default=AT_LEAST_ONCE,
        help="processing guarantee of every pipeline (dccgate --exactly-once off/on, Quix "
        "Streams and faust-streaming processing_guarantee); default at-least-once",
    )
    args = parser.parse_args()
    python = _peers_python()
    settings = Settings()
    samples: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        rates = asyncio.run(
            _one_repeat(
                settings, args.bootstrap, args.messages, python, args.timeout, args.guarantee
            )
        )
        for name, rate in rates.items():
            samples.setdefault(name, []).append(rate)
        print("  ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()), flush=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{args.messages} requests x {args.repeat} runs, {args.guarantee}, medians (records/s):")
    for name, rate in medians.items():
        ratio = (
            "" if name == "dccgate" else f"   dccgate / {name} = {medians['dccgate'] / rate:.1f}"
        )
        print(f"  {name:<16}{rate:>10,.0f}{ratio}")
    print(
        json.dumps(
            {
                "messages": args.messages,
                "guarantee": args.guarantee,
                "medians": medians,
                "samples": samples,
            }
        )
    )


if __name__ == "__main__":
    main()
