"""Traffic generation: what a scenario sends, and when, as a seeded stream of events. Pure.

`Traffic(scenario, seed=..., scale=..., duration_s=...)` yields, in time order, the
requests Users send on their own (on-demand reads, the half-hourly profile-read bursts,
runaway loops), the starts of installs and firmware-campaign meters (driven afterwards by
`install.Flow`), and the alerts devices raise (steady alerts and storms). Each source is a
Poisson process (or a burst) with a `random.Random` of its own, seeded from the run's seed
and the source's name, so the same seed gives the same traffic whatever the timing of the
gateway, and sources do not disturb each other's sequences.

A run may be split over processes (`Shard`, `workers/tools/loadtest/shards.py`). The sources are
cut into lanes that never need each other: one per User for what a User sends (so one
process owns all of a (User, target) pair's RequestID counters, as the gateway's anti-replay
check needs), one per region for the steady alerts, up to `STORM_LANES` per storm. A shard
builds only its own lanes, each seeded as in a single process, so the traffic of N shards
together is the traffic of one process, event for event.

Time is real seconds since the start of the run. Scenario time runs `time_compression`
times faster for what the scenario states per scenario hour or period (the half-hourly
bursts, the per-device alert rate); rates given per second are real seconds.
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Literal

from broker.producer import partition_for_key
from workers.duis import load_catalogue
from workers.tools.loadtest.scenario import RegionName, Scenario, role_for

__all__ = [
    "REGION_INDEX",
    "AlertEvent",
    "FlowStart",
    "RequestEvent",
    "RequestIds",
    "Shard",
    "Traffic",
    "fleet_device",
    "site_device",
    "stable_seed",
]

REGION_INDEX: dict[str, int] = {"north": 0, "central": 1, "south": 2}
_REGIONS: tuple[RegionName, ...] = ("north", "central", "south")


def stable_seed(*parts: object) -> int:
    """A seed from `parts` that is the same in every process (unlike `hash()`)."""
    return zlib.crc32(":".join(map(str, parts)).encode()) | (
        zlib.adler32(":".join(map(str, reversed(parts))).encode()) << 32
    )


# "AB-CD" for every 16-bit number: a device ID is two look-ups, not eight hex formats (the
# generator's hottest line: 0.27 µs instead of 0.95 µs; 4 MB).
_HEX4 = [f"{i >> 8:02X}-{i & 0xFF:02X}" for i in range(0x10000)]


def _eui64(prefix: str, n: int, last: str) -> str:
    return f"{prefix}{_HEX4[n >> 16 & 0xFFFF]}-{_HEX4[n & 0xFFFF]}-{last}"


# "00-DB-01-": installed meters of region 1 (north); "00-DC-01-": install sites.
_FLEET_PREFIX = {name: f"00-DB-{i + 1:02X}-" for name, i in REGION_INDEX.items()}
_SITE_PREFIX = {name: f"00-DC-{i + 1:02X}-" for name, i in REGION_INDEX.items()}
_SITE_LAST = {"chf": "01", "esme": "02", "gsme": "03"}


def fleet_device(region: str, n: int) -> str:
    """The EUI-64 of installed meter number `n` of `region`."""
    return _eui64(_FLEET_PREFIX[region], n, "00")


def site_device(region: str, site: int, which: Literal["chf", "esme", "gsme"]) -> str:
    """The EUI-64 of one device of install site number `site` of `region`."""
    return _eui64(_SITE_PREFIX[region], site, _SITE_LAST[which])


@dataclass(slots=True, order=True)
class RequestEvent:
    """A request a User sends on its own, at `t_s`."""

    t_s: float
    user_id: str
    role: str
    srv: str
    command_variant: int
    target: str
    region: str
    source: str
    """`read`, `profile` or `runaway`."""


@dataclass(slots=True, order=True)
class FlowStart:
    """An install (kind `install`) or a firmware-campaign meter (`firmware`) starts."""

    t_s: float
    kind: Literal["install", "firmware"]
    user_id: str
    region: str
    site: int
    """Install site number, or the fleet meter's number for `firmware`."""
    campaign: int = 0
    """Index of the campaign in `faults.firmware_campaign` (firmware only)."""


@dataclass(slots=True, order=True)
class AlertEvent:
    """A device raises an alert at `t_s`."""

    t_s: float
    device_id: str
    alert_code: str
    region: str
    recipients: tuple[str, ...]
    source: str
    """`steady` or `storm`."""


Event = RequestEvent | FlowStart | AlertEvent

STORM_LANES = 8
"""An alert storm's rogue devices are dealt round into at most this many lanes."""


@dataclass(frozen=True, slots=True)
class Shard:
    """The part of a run one process generates: shard `index` of `count`.

    A User belongs to the shard `p % count` where p is the User's partition among
    `partitions` (those of `dcc.user.responses`, murmur2 of the User ID as Kafka places it),
    so a shard reads the gateway's answers to its Users from its own partitions only. Lanes
    that belong to no User (steady alerts, storms) are dealt round by their number.
    """

    index: int
    count: int
    partitions: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count <= self.partitions:
            raise ValueError(
                f"shard {self.index} of {self.count} over {self.partitions} "
                "partitions: need 0 <= index < count <= partitions"
            )

    def owns_user(self, user_id: str) -> bool:
        """Whether this shard sends `user_id`'s requests."""
        return partition_for_key(user_id.encode(), self.partitions) % self.count == self.index

    def owns_lane(self, lane: int) -> bool:
        """Whether this shard generates lane number `lane` of the User-less sources."""
        return lane % self.count == self.index

    @property
    def response_partitions(self) -> list[int]:
        """The partitions of `dcc.user.responses` that carry this shard's Users' answers."""
        return [p for p in range(self.partitions) if p % self.count == self.index]


class RequestIds:
    """DUIS RequestIDs for a run: `USER:TARGET:COUNTER` with COUNTER = base + a sequence per
    (User, target) pair, so counters increase per pair (the gateway's anti-replay) and a
    later run (a higher base) never reuses a counter of an earlier one.

    base: e.g. the run's start in whole seconds times 10^8 (`for_run`).
    """

    __slots__ = ("_next", "base")

    SEQ_LIMIT = 10**8

    def __init__(self, base: int) -> None:
        self.base = base
        self._next: dict[str, int] = {}

    @classmethod
    def for_run(cls, start_epoch_s: int) -> RequestIds:
        """Counters for a run starting at `start_epoch_s` (wall clock, whole seconds)."""
        return cls(start_epoch_s * cls.SEQ_LIMIT)

    def next(self, user_id: str, target: str) -> str:
        """A new RequestID for the pair."""
        pair = f"{user_id}:{target}"
        seq = self._next.get(pair, 0) + 1
        self._next[pair] = seq
        return f"{pair}:{self.base + seq}"

    def seq_of(self, request_id: str) -> int | None:
        """The pair sequence of a RequestID of this run, None for another run's."""
        counter = request_id.rpartition(":")[2]
        if not counter.isdigit():
            return None
        seq = int(counter) - self.base
        return seq if 0 < seq < self.SEQ_LIMIT else None


class Traffic:
    """The scenario's self-driven events in time order: iterate, or `due(now_s)`.

    seed: the run's seed; scale: multiplies every rate; duration_s: no event at or after it;
    shard: generate only this shard's lanes (default: all of them).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        scale: float,
        duration_s: float,
        shard: Shard | None = None,
    ) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be a positive number, got {scale}")
        self.scenario = scenario
        self.seed = seed
        self.scale = scale
        self.duration_s = duration_s
        self.shard = shard
        self._fleet = [
            (name, _FLEET_PREFIX[name], r.devices)
            for name, r in scenario.regions.items()
            if r.devices
        ]
        self._fleet_total = sum(n for _, _, n in self._fleet)
        # (t_s, source number, event): ties on time go to the lower source, and within a
        # source to the event's own order (events are ordered dataclasses, time first).
        self._merged: Iterator[tuple[float, int, Event]] = heapq.merge(*self._sources())
        self._head: tuple[float, int, Event] | None = next(self._merged, None)

    def __iter__(self) -> Iterator[Event]:
        while self._head is not None:
            yield self._head[2]
            self._head = next(self._merged, None)

    def due(self, now_s: float, limit: int = 100_000) -> list[Event]:
        """The events with `t_s <= now_s` not handed out yet, at most `limit`."""
        out: list[Event] = []
        while self._head is not None and self._head[0] <= now_s and len(out) < limit:
            out.append(self._head[2])
            self._head = next(self._merged, None)
        return out

    @property
    def next_t_s(self) -> float | None:
        """When the next event is due, None when there are no more."""
        return None if self._head is None else self._head[0]

    # Sources: each yields (t_s, source number, event) in time order.

    def _rng(self, *name: object) -> random.Random:
        return random.Random(stable_seed(self.seed, *name))

    def _poisson(
        self,
        rng: random.Random,
        rate_per_s: float,
        start_s: float = 0.0,
        end_s: float | None = None,
    ) -> Iterator[float]:
        end = self.duration_s if end_s is None else min(end_s, self.duration_s)
        if rate_per_s <= 0:
            return
        t = start_s + rng.expovariate(rate_per_s)
        while t < end:
            yield t
            t += rng.expovariate(rate_per_s)

    def _sources(self) -> list[Iterator[tuple[float, int, Event]]]:
        """This shard's lanes. Every lane has its number among all lanes (its place in
        ties), whichever shard builds it, so shards keep the single process's order."""
        s = self.scenario
        lanes: list[tuple[str | int, Callable[[int], Iterator[tuple[float, int, Event]]]]] = []
        for name, region in s.regions.items():
            if region.installs_per_s > 0 and s.installs is not None:
                lanes.append(
                    (
                        s.installs.user,
                        partial(self._installs, region=name, rate_per_s=region.installs_per_s),
                    )
                )
        if s.background.on_demand_reads_per_s > 0:
            for reader in s.background.readers:
                lanes.append((reader, partial(self._reads, user=reader)))
        if s.background.profile_reads_per_burst > 0 and s.background.profile_user is not None:
            lanes.append((s.background.profile_user, self._profile_bursts))
        if s.background.alerts_per_device_per_hour > 0:
            for name, region in s.regions.items():
                if region.devices:
                    lanes.append((len(lanes), partial(self._steady_alerts, region=name)))
        for n, storm in enumerate(s.faults.alert_storm):
            for lane in range(min(storm.devices, STORM_LANES)):
                lanes.append((len(lanes), partial(self._storm, n=n, lane=lane)))
        for n, r in enumerate(s.faults.runaway_user):
            lanes.append((r.user, partial(self._runaway, n=n)))
        for n, c in enumerate(s.faults.firmware_campaign):
            lanes.append((c.user, partial(self._campaign, n=n)))
        return [source(k) for k, (owner, source) in enumerate(lanes) if self._owns(owner)]

    def _owns(self, owner: str | int) -> bool:
        if self.shard is None:
            return True
        if isinstance(owner, str):
            return self.shard.owns_user(owner)
        return self.shard.owns_lane(owner)

    def _random_device(self, rng: random.Random) -> tuple[str, str]:
        """A meter of the fleet, each equally likely, and its region."""
        pick = int(rng.random() * self._fleet_total)
        for name, prefix, n in self._fleet:
            if pick < n:
                return _eui64(prefix, pick, "00"), name
            pick -= n
        name, prefix, n = self._fleet[-1]
        return _eui64(prefix, n - 1, "00"), name

    def _region_device(self, rng: random.Random, region: str) -> str:
        """A meter of `region`'s fleet, each equally likely."""
        n = self.scenario.regions.items()[REGION_INDEX[region]][1].devices
        return _eui64(_FLEET_PREFIX[region], int(rng.random() * n), "00")

    def _installs(
        self, k: int, *, region: str, rate_per_s: float
    ) -> Iterator[tuple[float, int, Event]]:
        assert self.scenario.installs is not None
        user = self.scenario.installs.user
        rng = self._rng("installs", region)
        for site, t in enumerate(self._poisson(rng, rate_per_s * self.scale), start=1):
            yield t, k, FlowStart(t, "install", user, region, site)

    def _reads(self, k: int, *, user: str) -> Iterator[tuple[float, int, Event]]:
        """One reader's on-demand reads: the readers share the rate equally."""
        bg = self.scenario.background
        rng = self._rng("reads", user)
        role = role_for(load_catalogue()["4.1.1"], list(self.scenario.user(user).roles)) or "IS"
        rate = bg.on_demand_reads_per_s / len(bg.readers) * self.scale
        for t in self._poisson(rng, rate):
            device, region = self._random_device(rng)
            yield t, k, RequestEvent(t, user, role, "4.1.1", 1, device, region, "read")

    def _profile_bursts(self, k: int) -> Iterator[tuple[float, int, Event]]:
        bg = self.scenario.background
        assert bg.profile_user is not None
        rng = self._rng("profile")
        srv = load_catalogue()["4.8.1"]
        role = role_for(srv, list(self.scenario.user(bg.profile_user).roles)) or "IS"
        period_s = bg.profile_period_s / self.scenario.time_compression
        count = max(1, round(bg.profile_reads_per_burst * self.scale))
        start = bg.profile_first_at_s
        while start < self.duration_s:
            times = sorted(start + rng.random() * bg.profile_burst_spread_s for _ in range(count))
            for t in times:
                if t >= self.duration_s:
                    break
                device, region = self._random_device(rng)
                event = RequestEvent(
                    t, bg.profile_user, role, "4.8.1", 1, device, region, "profile"
                )
                yield t, k, event
            start += period_s

    def _recipients(self, alert_code: str) -> tuple[str, ...]:
        fleet = self.scenario.fleet
        assert fleet is not None
        if alert_code == "AD1" and fleet.network_operator is not None:
            return (fleet.network_operator,)
        return (fleet.supplier,)

    def _steady_alerts(self, k: int, *, region: str) -> Iterator[tuple[float, int, Event]]:
        """The steady alerts of one region's meters."""
        bg = self.scenario.background
        devices = self.scenario.regions.items()[REGION_INDEX[region]][1].devices
        rate = devices * bg.alerts_per_device_per_hour / 3600 * self.scenario.time_compression
        rng = self._rng("alerts", region)
        recipients = {code: self._recipients(code) for code in bg.alert_codes}
        for t in self._poisson(rng, rate * self.scale):
            device = self._region_device(rng, region)
            code = bg.alert_codes[rng.randrange(len(bg.alert_codes))]
            yield t, k, AlertEvent(t, device, code, region, recipients[code], "steady")

    def _storm(self, k: int, *, n: int, lane: int) -> Iterator[tuple[float, int, Event]]:
        """One lane of storm `n`: its rogue devices number lane, lane + lanes, ..."""
        storm = self.scenario.faults.alert_storm[n]
        rng = self._rng("storm", n, lane)
        # Rogue meters: the last ones of the region's fleet (the steady alerts rarely hit them).
        size = max(
            self.scenario.regions.items()[REGION_INDEX[storm.region]][1].devices, storm.devices
        )
        lanes = min(storm.devices, STORM_LANES)
        devices = [
            fleet_device(storm.region, size - 1 - i) for i in range(lane, storm.devices, lanes)
        ]
        recipients = self._recipients(storm.alert_code)
        end_s = storm.start_s + storm.duration_s
        for t in self._poisson(
            rng, storm.rate_per_s * len(devices) * self.scale, storm.start_s, end_s
        ):
            device = devices[rng.randrange(len(devices))]
            yield t, k, AlertEvent(t, device, storm.alert_code, storm.region, recipients, "storm")

    def _runaway(self, k: int, *, n: int) -> Iterator[tuple[float, int, Event]]:
        r = self.scenario.faults.runaway_user[n]
        rng = self._rng("runaway", n)
        entry = load_catalogue()[r.srv]
        role = role_for(entry, list(self.scenario.user(r.user).roles)) or "IS"
        # A looping system repeats the first submission: CV 4 for a critical SRV.
        cv = min(entry.allowed_command_variants)
        cv = 4 if entry.critical else cv
        for t in self._poisson(rng, r.rate_per_s * self.scale, r.start_s, r.start_s + r.duration_s):
            device, region = self._random_device(rng)
            yield t, k, RequestEvent(t, r.user, role, r.srv, cv, device, region, "runaway")

    def _campaign(self, k: int, *, n: int) -> Iterator[tuple[float, int, Event]]:
        c = self.scenario.faults.firmware_campaign[n]
        interval_s = 1.0 / (c.rate_per_s * self.scale)
        for meter in range(c.devices):
            t = c.start_s + meter * interval_s
            if t >= self.duration_s:
                return
            yield t, k, FlowStart(t, "firmware", c.user, c.region, meter, campaign=n)
