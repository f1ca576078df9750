"""What every peer pipeline does per request, apart from its counting state.

Decode (msgspec, the project's own schema), DUIS validation with the project's own
catalogue and rules (`DuisValidator`: request ID form, key = User, registered User and role,
SRV, eligibility, command variant, anti-replay), then the library's own state counts the
request in three sliding windows of its (User, SRV): a minute, an hour and a day. A request
over any window's limit is diverted (quarantined); the others are forwarded; every request
gets an answer. The limits are the benchmark's (no request reaches them), as in
`dccgate bench --checks all`, so the work is the counting, not the diverting.

Peers run in a virtualenv of their own (bench_peers.py makes it), with the project
installed in it, so they import the project's code as dccgate does.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from broker.schemas import ServiceRequest
from workers.duis import load_catalogue
from workers.duis.validate import DuisValidator, Rejection
from workers.tools.bench import bench_users

__all__ = [
    "LIMIT",
    "WINDOWS_S",
    "Rejection",
    "answer",
    "count_sliding",
    "decode",
    "new_validator",
    "rejected",
]

WINDOWS_S = (60, 3_600, 86_400)
LIMIT = 1_000_000_000
"""Per window: no request of the benchmark reaches it."""
BUCKETS = 60
"""Each window is counted in BUCKETS time buckets and slides bucket by bucket."""

_decode = msgspec.json.Decoder(ServiceRequest).decode


def new_validator() -> DuisValidator:
    validator = DuisValidator(load_catalogue())
    validator.set_users(bench_users())
    return validator


def decode(value: bytes) -> ServiceRequest | None:
    try:
        return _decode(value)
    except msgspec.DecodeError:
        return None


def rejected(request_id: str, rejection: Rejection) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "outcome": "rejected",
        "rule": rejection.kind,
        "reason": rejection.reason,
        "at_ms": int(time.time() * 1000),
    }


def answer(request_id: str, outcome: str) -> dict[str, Any]:
    return {"request_id": request_id, "outcome": outcome, "at_ms": int(time.time() * 1000)}


def count_sliding(
    buckets: list[list[list[int]]] | None, now_s: float
) -> tuple[list[list[list[int]]], bool]:
    """One (User, SRV)'s three windows as [bucket_index, count] pairs per window, counted
    one more at `now_s`; returns the new state and whether any window is over its limit.
    Plain lists, so every library's state store can serialise them."""
    state: list[list[list[int]]] = buckets if buckets is not None else [[] for _ in WINDOWS_S]
    over = False
    for w, window_s in enumerate(WINDOWS_S):
        width = window_s / BUCKETS
        index = int(now_s // width)
        pairs = [p for p in state[w] if p[0] > index - BUCKETS]
        if pairs and pairs[-1][0] == index:
            pairs[-1][1] += 1
        else:
            pairs.append([index, 1])
        if sum(p[1] for p in pairs) > LIMIT:
            over = True
        state[w] = pairs
    return state, over
