"""Cost per call of the load-test ResultCollector (docs/benchmarks.md, Load-test section).

    python tests/bench/bench_loadtest_collector.py

Each figure is the best of 5 runs of 200,000 calls, in microseconds per call, with 200 Users,
20 SRVs and latencies from a log-normal distribution (precomputed, so the generator's own
cost is not counted). Also the time `finish()` takes for a 600 s run.
"""

from __future__ import annotations

import random
import time
import timeit

from hdrh.histogram import HdrHistogram

from workers.tools.loadtest.results import ResultCollector

N = 200_000


def main() -> None:
    rnd = random.Random(1)
    users = [f"90-B3-D5-1F-30-00-{i:02X}-00" for i in range(200)]
    srvs = [f"4.{i}.1" for i in range(20)]
    calls = [
        (i * 600.0 / N, rnd.choice(users), rnd.choice(srvs), rnd.lognormvariate(-5, 1))
        for i in range(N)
    ]
    c = ResultCollector(scenario="bench", seed=1, scale=1.0, duration_s=600.0)

    def sent() -> None:
        for t, u, s, _ in calls:
            c.request_sent(t, u, s)

    def answered() -> None:
        for t, u, s, lat in calls:
            c.request_answered(t, u, s, "accepted", "I99", None, lat)

    def completed() -> None:
        for t, u, s, lat in calls:
            c.request_completed(t, u, s, "north", True, lat)

    hdr = HdrHistogram(1, 3_600_000_000, 3)

    def hdr_record() -> None:
        for *_, lat in calls:
            hdr.record_value(int(lat * 1_000_000))

    cases = [
        ("request_sent", sent),
        ("request_answered", answered),
        ("request_completed", completed),
        ("hdrh record_value alone", hdr_record),
    ]
    for name, fn in cases:
        best = min(timeit.repeat(fn, number=1, repeat=5))
        print(f"{name:28s} {best / N * 1e6:6.2f} us/call")
    start = time.perf_counter()
    report = c.finish(600.0, gateway={})
    print(
        f"finish() after {c.progress().sent:,} sent: {time.perf_counter() - start:.2f} s, "
        f"{len(report.buckets)} buckets"
    )


if __name__ == "__main__":
    main()
