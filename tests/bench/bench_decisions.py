"""Memory and speed of the decision log (workers.admin.decisions.AnswerIndex): bytes per
answer kept, and answers kept per second, measured with tracemalloc (allocations only, not
the process's resident size).

    .venv/bin/python tests/bench/bench_decisions.py [ANSWERS]

The answers are what the router writes: an accepted answer (the common case, about 330
bytes of JSON), and one in ten a throttled answer with its longer reason, each to its own
request (the worst case for the index: one entry per answer).
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import msgspec

from broker.schemas import UserResponse
from workers.admin.decisions import AnswerIndex

USER = "90-B3-D5-1F-30-01-00-00"
NOW_S = 1_796_000_000.0
_THROTTLED = (
    "throttled by traffic management (SECMP0067): User 90-B3-D5-1F-30-01-00-00 is sending "
    "312.4 requests/s, above its allocation of 100.0/s, while the system load of 4210.7 "
    "requests/s is at or above the operating threshold of 4000.0/s (capacity 5000.0/s); it is "
    "limited to 180.0 requests/s (burst 20), its allocation plus its share of the unused "
    "capacity under the threshold; retry after 6 ms"
)


def _answer(n: int) -> bytes:
    throttled = n % 10 == 0
    return msgspec.json.encode(
        UserResponse(
            request_id=f"{USER}:00-DB-{n >> 24 & 255:02X}-{n >> 16 & 255:02X}-"
            f"{n >> 8 & 255:02X}-{n & 255:02X}-00-01:{1_796_000_000_000 + n}",
            user_id=USER,
            response_code="T1" if throttled else "I99",
            outcome="throttled" if throttled else "accepted",
            reason=_THROTTLED if throttled else "forwarded to device (SRV 4.1.1)",
            rule=f"traffic.allocation.{USER}" if throttled else None,
            retry_after_ms=6 if throttled else None,
            at_ms=int(NOW_S * 1000) + n,
            observed=312.4 if throttled else None,
            limit=180.0 if throttled else None,
        )
    )


def main(answers: int = 200_000) -> None:
    values = [_answer(n) for n in range(answers)]
    mean_bytes = sum(map(len, values)) / answers
    index = AnswerIndex(max_answers=answers, max_age_s=86_400)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(answers):
        # A fresh bytes object per answer, as the Kafka client hands each record over.
        index.add(_answer(n), NOW_S + n / 1000)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"{answers} answers kept (mean {mean_bytes:.0f} bytes of JSON each): "
        f"{(after - before) / 1e6:.1f} MB allocated, {(after - before) / answers:.0f} bytes "
        "an answer (its bytes and its place in the index)"
    )
    index = AnswerIndex(max_answers=answers // 2, max_age_s=86_400)
    start = time.perf_counter()
    for n, value in enumerate(values):
        index.add(value, NOW_S + n / 1000)
    elapsed = time.perf_counter() - start
    print(
        f"add: {answers / elapsed:,.0f} answers/s ({elapsed / answers * 1e6:.2f} us each, "
        f"half of them evicting the least recently answered)"
    )
    start = time.perf_counter()
    for n in range(answers // 2, answers, 97):
        index.get(msgspec.json.decode(values[n], type=UserResponse).request_id)
    lookups = len(range(answers // 2, answers, 97))
    print(f"get: {(time.perf_counter() - start) / lookups * 1e6:.1f} us a lookup")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
