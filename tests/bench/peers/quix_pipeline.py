"""The benchmark's pipeline on Quix Streams, as its docs teach: an Application, topics with
their serialisers, a StreamingDataFrame with a stateful `apply` (State backed by RocksDB
and a changelog topic, per message key: here the User), branches to the output topics.

    python -m tests.bench.peers.quix_pipeline BOOTSTRAP PREFIX N STATE_DIR [GUARANTEE]

reads N requests from PREFIX + dcc.sr.inbound and writes STATE_DIR/result.json: the seconds
from the first request to the end of the run (outputs flushed, offsets committed).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from quixstreams import Application, State

from tests.bench.peers.common import (
    Rejection,
    answer,
    count_sliding,
    decode,
    new_validator,
    rejected,
)


def main() -> None:
    bootstrap, prefix, n, state_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    guarantee = sys.argv[5] if len(sys.argv) > 5 else "at-least-once"
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"{prefix}quix",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        processing_guarantee=guarantee,  # "at-least-once" or "exactly-once"
    )
    inbound = app.topic(
        f"{prefix}dcc.sr.inbound", key_deserializer="str", value_deserializer="bytes"
    )
    outbound = app.topic(f"{prefix}dcc.sr.outbound", value_serializer="json")
    quarantine = app.topic(f"{prefix}dcc.sr.quarantine", value_serializer="json")
    responses = app.topic(f"{prefix}dcc.user.responses", value_serializer="json")
    validator = new_validator()
    seen = {"n": 0, "first": 0.0}

    def decide(value: bytes, key: str, _ts: int, _headers: Any, state: State) -> dict[str, Any]:
        if seen["n"] == 0:
            seen["first"] = time.perf_counter()
        seen["n"] += 1
        if seen["n"] >= n:
            app.stop()
        request = decode(value)
        if request is None:
            return {"outcome": "dead", "answer": None, "request": None}
        checked = validator.check(request, key)
        if isinstance(checked, Rejection):
            return {"outcome": "rejected", "answer": rejected(request.request_id, checked)}
        windows, over = count_sliding(state.get(request.srv), time.time())
        state.set(request.srv, windows)
        outcome = "quarantined" if over else "accepted"
        if not over:
            validator.record_accepted(checked)
        doc = json.loads(value)
        return {"outcome": outcome, "answer": answer(request.request_id, outcome), "request": doc}

    sdf = app.dataframe(inbound)
    sdf = sdf.apply(decide, stateful=True, metadata=True)
    sdf[sdf["outcome"] == "accepted"].apply(lambda d: d["request"]).to_topic(outbound)
    sdf[sdf["outcome"] == "quarantined"].apply(lambda d: d["request"]).to_topic(quarantine)
    sdf[sdf["answer"].notnull()].apply(lambda d: d["answer"]).to_topic(responses)
    app.run()
    result = {
        "peer": "quixstreams",
        "records": seen["n"],
        "seconds": time.perf_counter() - seen["first"],
    }
    Path(state_dir, "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
