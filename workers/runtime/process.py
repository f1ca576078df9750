"""How an entry point runs its coroutine: uvloop, and a garbage collector tuned for
a consume-process-produce loop. Called only from the `dccgate` command's entry points."""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

__all__ = ["run"]

T = TypeVar("T")

# A batch allocates thousands of short-lived, acyclic objects (records, tuples, bytes);
# with the default gen-0 threshold of 700 the collector runs hundreds of times a second
# and rescans the long-lived state each time (about 10% of the router's CPU, measured with
# gc.callbacks in docs/benchmarks.md). Cycles are rare here, so collect less often.
GC_THRESHOLDS = (20_000, 50, 100)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on uvloop after freezing start-up objects out of the GC."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return uvloop.run(main)
