"""Apache Kafka's own producer and consumer perf tools on this machine: the broker's limit,
beside which docs/benchmarks.md puts dccgate's figures.

A plain script, not a test (STYLE.md rule 19): it asserts nothing. Start a cluster first,
then run from the repository root:

    make kafka-up KAFKA_PORT=19092
    .venv/bin/python tests/bench/bench_kafka_perf.py --bootstrap 127.0.0.1:19092
    make kafka-down

It fetches `org.apache.kafka:kafka-tools` (the pinned version of deploy/kafka/pom.xml) once
with Maven into .kafka/tools-VERSION/ (the broker's own jars in .kafka/lib-VERSION/ give the
rest of the classpath), creates a topic of `--partitions` partitions, and runs
ProducerPerformance (`--records` records of `--record-bytes` bytes, as fast as it can,
acks=all and linger 2 ms like dccgate's producer) and then ConsumerPerformance over the same
records. Record size default: 170 bytes, the mean of the benchmark's requests
(`workers.tools.bench.make_requests`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.integration.brokers import kafka_launcher  # noqa: E402


def _tools_jar(version: str) -> Path:
    target = REPO / ".kafka" / f"tools-{version}"
    jar = target / f"kafka-tools-{version}.jar"
    if jar.exists():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        sys.exit("mvn (Apache Maven) is not on PATH: apt-get install maven")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "dependency:copy",
            f"-Dartifact=org.apache.kafka:kafka-tools:{version}",
            f"-DoutputDirectory={target}",
        ],
        check=True,
    )
    return jar


def _java(launcher: object, classpath: str, main: str, args: list[str]) -> str:
    java = launcher.java_bin()  # type: ignore[attr-defined]
    done = subprocess.run(
        [java, "-Xmx512m", "-cp", classpath, main, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{main} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of a running cluster")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--record-bytes", type=int, default=170)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()

    launcher = kafka_launcher()
    version = launcher.pinned_version()
    lib = launcher.lib_dir(version)
    if not lib.exists():
        launcher.fetch(version)
    classpath = f"{_tools_jar(version)}:{lib}/*"
    topic = f"perf-{uuid.uuid4().hex[:8]}"
    _java(
        launcher,
        classpath,
        "org.apache.kafka.tools.TopicCommand",
        [
            "--bootstrap-server",
            args.bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            str(args.partitions),
        ],
    )
    produced = _java(
        launcher,
        classpath,
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic",
            topic,
            "--num-records",
            str(args.records),
            "--record-size",
            str(args.record_bytes),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={args.bootstrap}",
            "acks=all",
            "linger.ms=2",
        ],
    )
    consumed = _java(
        launcher,
        classpath,
        "org.apache.kafka.tools.ConsumerPerformance",
        [
            "--bootstrap-server",
            args.bootstrap,
            "--topic",
            topic,
            "--messages",
            str(args.records),
            "--group",
            f"perf-{uuid.uuid4().hex[:8]}",
        ],
    )
    print(f"Kafka {version}, {args.partitions} partitions, {args.record_bytes}-byte records")
    print("ProducerPerformance (acks=all, linger.ms=2):")
    print(produced.strip().splitlines()[-1])
    print("ConsumerPerformance (start.time, end.time, data.consumed.in.MB, MB.sec, ")
    print("  data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, ...):")
    print("\n".join(consumed.strip().splitlines()[-2:]))


if __name__ == "__main__":
    main()
