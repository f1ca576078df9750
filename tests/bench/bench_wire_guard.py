"""Benchmark of broker.wire_guard: `json_problem` cost per record, common and hostile cases.

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_wire_guard.py            # about half a minute
    python tests/bench/bench_wire_guard.py --quick    # fewer calls

Each figure is the best of 7 runs (the machine is shared: the minimum is the cost, the rest
is other work) of a loop of calls on one record, in process CPU time per call. For scale,
the same loop over `msgspec.json.Decoder(ServiceRequest).decode`, which every request
pays anyway, and the steps of the fast path one by one.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from broker.schemas import ServiceRequest
from broker.wire_guard import json_problem

_RUNS = 7

REQUEST = (
    b'{"request_id":"90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000","user_role":"IS",'
    b'"srv":"1.1.1","command_variant":1,"body":{"price":1.5,"currency":"GBP",'
    b'"execution_date_time":"2025-06-01T00:00:00Z","standing_charge":23.45,'
    b'"meter":"00-DB-12-34-56-78-90-A0"},"region":"south"}'
)
NON_ASCII = REQUEST.replace(b'"GBP"', b'"\xc2\xa3 sterling"')
REPEATED_VALUE = REQUEST.replace(b'"region":"south"', b'"region":"south","zone":"south"')
WITH_XML = REQUEST[:-1] + (
    b',"xml":"<sr:Request xmlns:sr=\\"http://www.dccinterface.co.uk/ServiceUserGateway\\">'
    b"<sr:Header><sr:RequestID>90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000"
    b'</sr:RequestID></sr:Header></sr:Request>"}'
)
TARIFF = (
    REQUEST[:-1].replace(
        b'"body":{',
        b'"body":{"blocks":'
        + json.dumps([{"start": f"{h:02d}:00", "price": 10 + h, "tier": h % 3} for h in range(48)])
        .replace(" ", "")
        .encode()
        + b",",
    )
    + b"}"
)
DUPLICATE = REQUEST.replace(b'"region":"south"', b'"region":"south","srv":"7.2"')
MB = 1_000_000
HOSTILE = {
    "1,000 levels deep": b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}",
    "1 MB flat, then deep": b"[" + b"[]," * (MB // 3) + b"[" * 40 + b"]" * 41,
    "1 MB, 0xff at the end": b'{"x":"' + b"a" * MB + b'\xff"}',
    "1 MB of strings, a duplicate at the end": b'{"'
    + b'":1,"'.join(b"k%d" % i for i in range(MB // 10))
    + b'":1,"k0":2}',
    "1 MB, one string of escapes": b'{"x":"' + b"\\n" * (MB // 2) + b'"}',
    "1 MB of \\u0041 escapes": b'{"x":"' + b"\\u0041" * (MB // 6) + b'"}',
    "1 MB of backslashes, then \\ud800": b'{"x":"' + b"\\" * MB + b'\\ud800"}',
}


def _per_call_ns(fn: Callable[[bytes], object], data: bytes, calls: int) -> float:
    best = float("inf")
    for _ in range(_RUNS):
        gc.collect()
        start = time.process_time_ns()
        for _ in range(calls):
            fn(data)
        best = min(best, (time.process_time_ns() - start) / calls)
    return best


def _steps(data: bytes) -> dict[str, Callable[[bytes], object]]:
    def split_set(d: bytes) -> object:
        strings = d.split(b'"')[1::2]
        return len(set(strings)) == len(strings)

    return {
        "  data.isascii()": bytes.isascii,
        '  data.count(b"[") + data.count(b"{")': lambda d: d.count(b"[") + d.count(b"{"),
        '  b"\\\\" not in data': lambda d: b"\\" not in d,
        "  split(b'\"')[1::2], set, compare": split_set,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per run")
    args = parser.parse_args()
    calls = 20_000 if args.quick else 200_000
    decode = msgspec.json.Decoder(ServiceRequest).decode

    print(f"json_problem, ns per call (best of {_RUNS} runs, process CPU time)")
    cases = {
        f"typical request ({len(REQUEST)} B, ASCII)": REQUEST,
        f"the same, a non-ASCII body value ({len(NON_ASCII)} B)": NON_ASCII,
        f"a value repeated ({len(REPEATED_VALUE)} B): keys-only check": REPEATED_VALUE,
        f"with the DUIS xml, escaped quotes ({len(WITH_XML)} B): exact check": WITH_XML,
        f"a 48-block tariff body ({len(TARIFF)} B): exact depth and keys": TARIFF,
        f"a duplicate key ({len(DUPLICATE)} B): refused": DUPLICATE,
    }
    for label, data in cases.items():
        assert json_problem(data) is None or data is DUPLICATE, label
        n = calls if len(data) < 1000 else calls // 10
        print(f"{label:66s} {_per_call_ns(json_problem, data, n):9.0f}")
    print()
    print("for scale, on the typical request:")
    label = "  msgspec.json.Decoder(ServiceRequest).decode"
    print(f"{label:66s} {_per_call_ns(decode, REQUEST, calls):9.0f}")
    for label, step in _steps(REQUEST).items():
        print(f"{label:66s} {_per_call_ns(step, REQUEST, calls):9.0f}")
    print()
    print("hostile records, µs per call (the reason returned)")
    for label, data in HOSTILE.items():
        reason = json_problem(data)
        us = _per_call_ns(json_problem, data, 3 if len(data) > 10_000 else calls // 100) / 1000
        print(f"{label:40s} {us:9.1f}  {reason}")


if __name__ == "__main__":
    main()
