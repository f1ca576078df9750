"""The network simulator's model: how the CSPs, the DCC and the devices answer. Pure.

The runner reads what the gateway forwarded on `dcc.sr.outbound` and asks `NetworkModel`
how the forwarded request is answered: after how long, and whether it succeeded.

- CV 4 (critical SR to Transform): the DCC returns the Pre-Command; never fails.
- CV 8 (non-device): the DCC's own service answers; never fails.
- CV 1, 2, 3, 5, 6, 7 (to the device over the SM WAN): the region's log-normal round
  trip, and a failure with the region's per-command probability (plus any extra the
  caller adds, e.g. a firmware campaign's activation failures).

Each answer is decided by a `random.Random` seeded from the run's seed and the request's
identity (not its arrival order), so the same seed gives the same device failures
whatever the timing. The gateway has no device-response topic, so answers are handed to
the install state machines in-process (docs/loadtest.md).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass
from typing import Generic, TypeVar

from workers.tools.loadtest.generator import stable_seed
from workers.tools.loadtest.install import WAN_COMMANDS
from workers.tools.loadtest.scenario import Latency, Scenario

__all__ = ["Answer", "NetworkModel", "Timeline", "per_command_failure"]

T = TypeVar("T")

_TRANSFORM = Latency(median_ms=20.0, p99_ms=80.0)
_NON_DEVICE = Latency(median_ms=30.0, p99_ms=120.0)


def per_command_failure(install_failure_rate: float, commands: int = WAN_COMMANDS) -> float:
    """The per-command failure probability p such that an install of `commands` device
    commands fails with `install_failure_rate`: 1 - (1 - p)^commands = rate."""
    if install_failure_rate >= 1.0:
        return 1.0
    return 1.0 - float((1.0 - install_failure_rate) ** (1.0 / commands))


@dataclass(frozen=True, slots=True)
class Answer:
    """How one forwarded request is answered."""

    delay_s: float
    ok: bool


def _lognormal(rng: random.Random, latency: Latency) -> float:
    return latency.median_ms * math.exp(rng.gauss(0.0, 1.0) * latency.sigma) / 1000.0


class NetworkModel:
    """Per-region latency and failure, for one run's seed."""

    def __init__(self, scenario: Scenario, *, seed: int) -> None:
        self.seed = seed
        self._regions: dict[str, tuple[Latency, float]] = {
            name: (region.latency, per_command_failure(region.install_failure_rate))
            for name, region in scenario.regions.items()
        }

    def failure_probability(self, region: str) -> float:
        """The per-command failure probability of `region`."""
        return self._regions[region][1]

    def answer(
        self, key: str, region: str | None, command_variant: int, extra_failure: float = 0.0
    ) -> Answer:
        """The answer to the request identified by `key` (stable across runs of a seed:
        e.g. target, SRV, CV and pair sequence), sent to `region` (None: central)."""
        rng = random.Random(stable_seed(self.seed, key))
        if command_variant == 4:
            return Answer(_lognormal(rng, _TRANSFORM), True)
        if command_variant == 8:
            return Answer(_lognormal(rng, _NON_DEVICE), True)
        latency, p = self._regions[region or "central"]
        delay_s = _lognormal(rng, latency)
        failed = rng.random() < p or (extra_failure > 0 and rng.random() < extra_failure)
        return Answer(delay_s, not failed)

    def chance(self, key: str, probability: float) -> bool:
        """A seeded yes/no for `key` (e.g. does this meter raise a false AD1)."""
        return random.Random(stable_seed(self.seed, "chance", key)).random() < probability


class Timeline(Generic[T]):
    """Things due at a time: `add(at_s, item)`, then `due(now_s)` in time order."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, at_s: float, item: T) -> None:
        """Schedule `item` at `at_s`."""
        heapq.heappush(self._heap, (at_s, next(self._seq), item))

    def due(self, now_s: float) -> list[tuple[float, T]]:
        """(at_s, item) of everything due by `now_s`, earliest first, removed."""
        out: list[tuple[float, T]] = []
        heap = self._heap
        while heap and heap[0][0] <= now_s:
            at_s, _, item = heapq.heappop(heap)
            out.append((at_s, item))
        return out
