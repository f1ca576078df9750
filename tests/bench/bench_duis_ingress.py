"""Benchmark of the DUIS ingress: signed requests per second per process, signatures on.

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_duis_ingress.py           # about a minute
    python tests/bench/bench_duis_ingress.py --quick   # fewer requests
    python tests/bench/bench_duis_ingress.py --quick --profile   # + a CPU profile of the server

Two measures:

1. **Checks in process**: `read_request` + `verify_request` + the DUIS rules on one signed
   4.1.1 request, in process CPU time per request (best of 5 runs: the machine is shared),
   with the steps apart (parse and envelope; the verification; its two exclusive C14N
   passes; the ECDSA P-256 verification alone, which no implementation can skip), and
   signxml's generic verification of the same request, the verifier the ingress used before.
2. **Over HTTP**: the real `IngressApp` in one aiohttp server process, with every check on,
   publishing through its `GroupPublisher` over a stand-in for BatchProducer that builds the
   batches and acknowledges them at once (so the figure is the ingress's, not the broker's),
   an answer wait of 0 (every answer I99 pending); clients in two other processes keep 32
   requests in flight each over keep-alive connections. Requests answered per second of
   wall time, and the server process's CPU per request (user and system, from getrusage).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry

from broker.schemas import ServiceRequest
from broker.topics import Topics
from tests.duis_xml import USER_A, Pki, build_request, signed
from workers.config.codes import ResponseCodes
from workers.config.snapshot import ConfigSnapshot
from workers.duis.catalogue import load_catalogue
from workers.duis.signature import _enveloped_c14n, verify_request
from workers.duis.validate import DuisValidator
from workers.duis.xml_request import read_request

_RUNS = 5
CATALOGUE = load_catalogue()


def _cpu() -> float:
    return time.process_time()


def _best(fn: Any, n: int) -> float:
    """Best per-call CPU seconds of `_RUNS` runs of `n` calls."""
    best = float("inf")
    for _ in range(_RUNS):
        gc.collect()
        start = _cpu()
        for _ in range(n):
            fn()
        best = min(best, (_cpu() - start) / n)
    return best


def in_process(n: int) -> dict[str, float]:
    pki = Pki()
    issued = pki.issue(USER_A, "xml-signing", "IS")
    index = pki.index()
    data = signed(build_request(CATALOGUE["4.1.1"], counter=1), issued)
    validator = DuisValidator(CATALOGUE, replay_pairs_per_user=1)
    validator.set_users({USER_A: ["IS"]})
    now_ms = int(time.time() * 1000)

    def whole() -> None:
        duis = read_request(data, service="serviceS", catalogue=CATALOGUE)
        verified = verify_request(duis, index, now_ms=now_ms)
        validator.check(
            ServiceRequest(
                request_id=duis.request_id,
                user_role=verified.role,
                srv=duis.srv.srv,
                command_variant=duis.command_variant,
            ),
            duis.user_id,
        )

    duis = read_request(data, service="serviceS", catalogue=CATALOGUE)
    signature = duis.root[-1]
    signed_info = signature[0]
    key = ec.generate_private_key(ec.SECP256R1())
    sig = key.sign(b"x" * 300, ec.ECDSA(hashes.SHA256()))
    pub = key.public_key()
    from lxml import etree
    from signxml.algorithms import DigestAlgorithm, SignatureMethod
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    config = SignatureConfiguration(
        require_x509=True,
        location="./",
        expect_references=1,
        signature_methods=frozenset({SignatureMethod.ECDSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    )
    return {
        "whole_us": _best(whole, n) * 1e6,
        "read_request_us": _best(
            lambda: read_request(data, service="serviceS", catalogue=CATALOGUE), n
        )
        * 1e6,
        "verify_request_us": _best(lambda: verify_request(duis, index, now_ms=now_ms), n) * 1e6,
        "c14n_signed_info_us": _best(
            lambda: etree.tostring(signed_info, method="c14n", exclusive=True), n
        )
        * 1e6,
        "c14n_document_us": _best(lambda: _enveloped_c14n(duis.root, signature), n) * 1e6,
        "ecdsa_p256_verify_us": _best(
            lambda: pub.verify(sig, b"x" * 300, ec.ECDSA(hashes.SHA256())), n
        )
        * 1e6,
        "signxml_verify_us (before)": _best(
            lambda: XMLVerifier().verify(duis.root, x509_cert=issued.cert, expect_config=config),
            max(n // 4, 50),
        )
        * 1e6,
        "request_bytes": float(len(data)),
    }


class _CountingProducer:
    """Stands in for BatchProducer under the ingress's GroupPublisher: batches are built as
    in the service (OutputBatch, murmur2 partitioning) and acknowledged at once, counted."""

    def __init__(self) -> None:
        self.sent = 0
        self.sends = 0
        topics = Topics.with_prefix("")
        self._partitions = {topics.sr_inbound: 12, topics.audit: 1}

    def batch(self) -> Any:
        from broker.producer import OutputBatch

        return OutputBatch(self._partitions)

    async def send(self, batch: Any) -> None:
        self.sends += 1
        self.sent += len(batch)


class _NoAnswers:
    """Stands in for AnswerWaiter: registers futures nobody resolves."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Any]] = {}

    def expect(self, request_id: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)


def _server(
    port: int, pki_items: Any, ready: Any, done: Any, out: Any, profile: bool = False
) -> None:
    from aiohttp import web

    from workers.ingress.app import IngressApp
    from workers.ingress.metrics import IngressMetrics

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    async def main() -> None:
        from workers.ingress.publisher import GroupPublisher

        producer = _CountingProducer()
        app = IngressApp(
            topics=Topics.with_prefix(""),
            producer=GroupPublisher(producer),  # type: ignore[arg-type]
            waiter=_NoAnswers(),  # type: ignore[arg-type]
            metrics=IngressMetrics(CollectorRegistry(), lambda _: True),
            codes=ResponseCodes(),
            catalogue=CATALOGUE,
            answer_wait_s=0.0,
        )
        app.apply(pki_items)
        web_app = web.Application(client_max_size=262_144)
        app.install(web_app)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        start = resource.getrusage(resource.RUSAGE_SELF)
        start_sent = producer.sent
        await asyncio.get_running_loop().run_in_executor(None, done.wait)
        end = resource.getrusage(resource.RUSAGE_SELF)
        out.put(
            (
                producer.sent - start_sent,
                producer.sends,
                end.ru_utime - start.ru_utime,
                end.ru_stime - start.ru_stime,
            )
        )
        await runner.cleanup()

    if not profile:
        asyncio.run(main())
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    profiler.runcall(asyncio.run, main())
    stats = pstats.Stats(profiler)
    print("server profile (by own time):")
    stats.sort_stats("tottime").print_stats(25)
    print("server profile (by cumulative time):")
    stats.sort_stats("cumulative").print_stats(30)


def _client(port: int, bodies: list[bytes], inflight: int, out: Any) -> None:
    import aiohttp

    async def main() -> None:
        url = f"http://127.0.0.1:{port}/api/v1/serviceS"
        statuses: dict[int, int] = {}
        queue = list(bodies)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=inflight)) as session:

            async def worker() -> None:
                while queue:
                    body = queue.pop()
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/xml"}
                    ) as answer:
                        await answer.read()
                        statuses[answer.status] = statuses.get(answer.status, 0) + 1

            await asyncio.gather(*(worker() for _ in range(inflight)))
        out.put(statuses)

    asyncio.run(main())


def over_http(n: int, profile: bool = False) -> dict[str, float]:
    pki = Pki()
    issued = pki.issue(USER_A, "xml-signing", "IS")
    snapshot = _snapshot(pki)
    clients = 2
    per_client = n // clients
    bodies = [
        [
            signed(build_request(CATALOGUE["4.1.1"], counter=c * per_client + i + 1), issued)
            for i in range(per_client)
        ]
        for c in range(clients)
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    server = ctx.Process(target=_server, args=(port, snapshot, ready, done, out, profile))
    server.start()
    ready.wait(30)
    results = ctx.Queue()
    started = time.perf_counter()
    procs = [
        ctx.Process(target=_client, args=(port, bodies[c], 32, results)) for c in range(clients)
    ]
    for p in procs:
        p.start()
    statuses: dict[int, int] = {}
    for _ in procs:
        for k, v in results.get().items():
            statuses[k] = statuses.get(k, 0) + v
    wall = time.perf_counter() - started
    for p in procs:
        p.join()
    done.set()
    sent, sends, server_user, server_sys = out.get()
    server.join()
    return {
        "requests": float(sum(statuses.values())),
        "answered_202": float(statuses.get(202, 0)),
        "published": float(sent),
        "kafka_sends (batches)": float(sends),
        "wall_s": wall,
        "requests_per_s": sum(statuses.values()) / wall,
        "server_cpu_us_per_request": (server_user + server_sys) / max(sent, 1) * 1e6,
        "  of which user": server_user / max(sent, 1) * 1e6,
        "  of which system (kernel)": server_sys / max(sent, 1) * 1e6,
    }


def _snapshot(pki: Pki) -> ConfigSnapshot:
    """A configuration snapshot with USER_A (IS) and its certificates."""
    import msgspec

    from workers.config.snapshot import ConfigState

    state = ConfigState()
    from broker.schemas import ControlRecord
    from workers.duis.certificates import UserCertificates

    records = [
        ("users/" + USER_A, msgspec.json.encode({"name": "bench", "roles": ["IS"]})),
        (
            "certificates/" + USER_A,
            msgspec.json.encode(UserCertificates(certificates=pki.registered[USER_A])),
        ),
    ]
    for offset, (key, value) in enumerate(records):
        state.apply(
            key.encode(),
            msgspec.json.encode(
                ControlRecord(key=key, version=1, value=msgspec.Raw(value), by="bench", at_ms=0)
            ),
            offset,
        )
    return state.snapshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the HTTP server process"
    )
    args = parser.parse_args()
    n = 300 if args.quick else 2000
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    local = in_process(n)
    print("checks in process (best of 5, CPU per request):")
    for name, value in local.items():
        print(f"  {name:<28} {value:10.1f}")
    print(f"  => {1e6 / local['whole_us']:.0f} signed requests/s per core")
    http = over_http(2000 if args.quick else 6000, args.profile)
    print("over HTTP (one server process, 2 client processes x 32 in flight):")
    for name, value in http.items():
        print(f"  {name:<28} {value:12.1f}")
    print(f"  maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB (this process)")


if __name__ == "__main__":
    main()
