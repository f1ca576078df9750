"""The benchmark's pipeline on faust-streaming, as its docs teach: an App, topics, an agent
over the stream, windowed Tables (hopping windows, changelogged to Kafka) for the counts,
`topic.send` for the outputs.

    python -m tests.bench.peers.faust_pipeline BOOTSTRAP PREFIX N STATE_DIR [GUARANTEE]

reads N requests from PREFIX + dcc.sr.inbound and writes STATE_DIR/result.json: the seconds
from the first request to the outputs flushed and the offsets committed.

A sliding window is what Faust's hopping windows approximate: each of the three tables
slides in steps of a quarter of its size, so a request counts in four overlapping windows
of each (the docs' own example hops by half a window). The table key is "USER:SRV"; the
stream's key is the User, so a table update lands on the stream's partition, as Faust
requires (its tables are co-partitioned with the stream they are updated from).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import faust

from tests.bench.peers.common import (
    LIMIT,
    WINDOWS_S,
    Rejection,
    answer,
    decode,
    new_validator,
    rejected,
)


def main() -> None:
    bootstrap, prefix, n, state_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    guarantee = sys.argv[5] if len(sys.argv) > 5 else "at-least-once"
    app = faust.App(
        f"{prefix}faust",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=state_dir,
        topic_partitions=6,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        topic_allow_declare=True,
        processing_guarantee=guarantee.replace("-", "_"),  # at_least_once / exactly_once
    )
    inbound = app.topic(
        f"{prefix}dcc.sr.inbound", key_type=bytes, value_type=bytes, value_serializer="raw"
    )
    outbound = app.topic(f"{prefix}dcc.sr.outbound", value_serializer="raw")
    quarantine = app.topic(f"{prefix}dcc.sr.quarantine", value_serializer="raw")
    responses = app.topic(f"{prefix}dcc.user.responses", value_serializer="json")
    tables = [
        app.Table(f"count-{w}s", default=int).hopping(w, w / 4, expires=timedelta(seconds=2 * w))
        for w in WINDOWS_S
    ]
    validator = new_validator()
    seen = {"n": 0, "first": 0.0, "last": 0.0}
    done = asyncio.Event()

    @app.agent(inbound)
    async def decide(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            if seen["n"] == 0:
                seen["first"] = time.perf_counter()
            seen["n"] += 1
            key = event.key.decode() if event.key else None
            value = event.value
            request = decode(value)
            if request is None:
                continue
            checked = validator.check(request, key)
            if isinstance(checked, Rejection):
                await responses.send(key=key, value=rejected(request.request_id, checked))
            else:
                table_key = f"{key}:{request.srv}"
                over = False
                for table in tables:
                    table[table_key] += 1
                    if table[table_key].current() > LIMIT:
                        over = True
                outcome = "quarantined" if over else "accepted"
                if not over:
                    validator.record_accepted(checked)
                await (quarantine if over else outbound).send(key=key, value=value)
                await responses.send(key=key, value=answer(request.request_id, outcome))
            if seen["n"] >= n:
                seen["last"] = time.perf_counter()
                done.set()

    @app.task
    async def stop_when_done() -> None:
        await done.wait()
        await app.producer.flush()
        await app.commit(app.consumer.assignment())
        result = {
            "peer": "faust-streaming",
            "records": seen["n"],
            "seconds": time.perf_counter() - seen["first"],
        }
        # Faust sends a worker's stdout to its log: the result goes to a file.
        Path(state_dir, "result.json").write_text(json.dumps(result))  # noqa: ASYNC240 - once, at the end
        # The worker's own shutdown (mode.Worker), as a SIGTERM starts it.
        worker._on_sigterm()

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
