"""Memory of the anti-replay state (workers.duis.ReplayBook): bytes per remembered pair and
per User, measured with tracemalloc (allocations only, not the process's resident size).

    .venv/bin/python tests/bench/bench_replay_memory.py [PAIRS] [USERS]

Targets are EUI-64 strings as the router keeps them; COUNTERs epoch milliseconds.
"""

from __future__ import annotations

import sys
import tracemalloc

from workers.duis import DuisValidator, Validated, load_catalogue


def _target(n: int) -> str:
    raw = f"00DB{n:012X}"
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def main(pairs: int = 1_000_000, users: int = 1_000) -> None:
    srv = load_catalogue()["4.1.1"]
    validator = DuisValidator(load_catalogue(), replay_pairs_per_user=pairs)
    user_ids = [f"90-B3-D5-1F-30-{u >> 8:02X}-{u & 255:02X}-00" for u in range(users)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(pairs):
        # A fresh target string, as the router parses one from each RequestID and keeps it.
        target = _target(n)
        user = user_ids[n % users]
        validator.record_accepted(
            Validated(user, target, 1_796_000_000_000 + n, f"{user}:{target}", srv)
        )
        if n % 10_000 == 0:
            validator.journal.clear()
    validator.journal.clear()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_pair = (after - before) / pairs
    print(
        f"{pairs} pairs over {users} Users: {(after - before) / 1e6:.1f} MB allocated, "
        f"{per_pair:.0f} bytes a pair (its target string included)"
    )
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    empty = DuisValidator(load_catalogue())
    for user in user_ids:
        empty.book(user)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"an empty book: {(after - before) / users:.0f} bytes a User")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
