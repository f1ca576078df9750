"""`dccgate watch TOPIC`: print what is on a topic of the contract, for people.

For checking by eye what the gateway did: the forwards on `dcc.sr.outbound` (a released
request appears once), the alerts delivered on `dcc.alerts.outbound` (a storm reduced to its
copies), the dead letters with their reasons. It reads every partition (or those given
with `--partition`) from the start, from `--offset N`, or from `--since` (a duration back
from now, `30m`, or an ISO time) without a consumer group, so it changes no committed
offset; prints one line per record, starting with the record's time in ISO 8601 UTC; and
stops after `--idle` seconds without a new record (or after `--count` records), or keeps
following with `--follow`.

`--grep TEXT`, repeated, keeps the records whose line contains every TEXT (AND); with
`--any`, those containing at least one (OR).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from typing import TextIO

import orjson

from broker.consumer import Record
from broker.follower import TopicFollower
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.tools.times import TimeError, iso_ms, parse_when_s

__all__ = ["WatchError", "format_record", "resolve_topic", "watch"]


class WatchError(ValueError):
    """The command line names something that cannot be watched."""


def resolve_topic(name: str, topics: Topics) -> str:
    """The full topic name for `name`: a contract name (`dcc.sr.outbound`), the same
    without `dcc.` (`sr.outbound`), or an attribute name (`sr_outbound`)."""
    wanted = name.removeprefix("dcc.").replace("_", ".")
    for field in topics.__struct_fields__:
        if field.replace("_", ".") == wanted:
            full: str = getattr(topics, field)
            return full
    choices = ", ".join(f.replace("_", ".") for f in topics.__struct_fields__)
    raise WatchError(f"unknown topic {name!r}; choose one of: {choices} (dcc. prefix optional)")


def format_record(rec: Record) -> str:
    """One line: the record's time (ISO 8601 UTC), partition/offset, key, headers if any,
    and the value (JSON re-encoded compactly; anything else shown as Python bytes so
    nothing is hidden)."""
    key = rec.key.decode(errors="replace") if rec.key is not None else "-"
    if rec.value is None:
        value = "null (tombstone)"
    else:
        try:
            value = orjson.dumps(orjson.loads(rec.value)).decode()
        except orjson.JSONDecodeError:
            value = repr(rec.value[:500])
    headers = " ".join(
        f"{k}={v.decode(errors='replace') if isinstance(v, bytes) else v}"
        for k, v in (rec.headers or ())
    )
    parts = [
        iso_ms(rec.timestamp) if rec.timestamp and rec.timestamp > 0 else "-",
        f"{rec.partition}/{rec.offset}",
        key,
        *([f"[{headers}]"] if headers else []),
        value,
    ]
    return "  ".join(parts)


async def watch(
    settings: KafkaSettings,
    topic: str,
    *,
    out: TextIO,
    since_s: float | None = None,
    idle_s: float = 2.0,
    count: int | None = None,
    follow: bool = False,
    grep: Iterable[str] = (),
    any_match: bool = False,
    partitions: Iterable[int] | None = None,
    offset: int | None = None,
) -> int:
    """Print the records of `topic` to `out`; return how many were printed.

    since_s: only records written in the last `since_s` seconds (default: from the start).
    idle_s: stop after this long without a new record (unless `follow`). count: stop after
    this many records. grep: print only records whose printed line (key, headers, value)
    contains every string (`any_match`: at least one). partitions: only these (default:
    all). offset: start each of `partitions` at this offset.
    """
    needles = list(grep)
    match = any if any_match else all
    printed = 0
    done = asyncio.Event()
    last_record = time.monotonic()

    def on_records(records: list[Record]) -> None:
        nonlocal printed, last_record
        last_record = time.monotonic()
        for rec in records:
            if done.is_set():
                return
            line = format_record(rec)
            if needles and not match(n in line for n in needles):
                continue
            out.write(line + "\n")
            printed += 1
            if count is not None and printed >= count:
                done.set()
        out.flush()

    from_ms = None if since_s is None else int((time.time() - since_s) * 1000)
    chosen = None if partitions is None else sorted(set(partitions))
    follower = TopicFollower(
        settings,
        topic,
        on_records,
        name="watch",
        from_ms=from_ms,
        partitions=chosen,
        from_offsets=None if offset is None or chosen is None else dict.fromkeys(chosen, offset),
    )
    await follower.start()
    try:
        while not done.is_set():
            await asyncio.sleep(0.1)
            if not follow and follower.caught_up and time.monotonic() - last_record >= idle_s:
                break
    finally:
        await follower.stop()
    return printed


def _since_s(text: str) -> float:
    """`--since`: a number of seconds, a duration (30m, 1h), or an ISO time, as seconds
    back from now."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            return max(0.0, time.time() - parse_when_s(text, time.time()))
        except TimeError as exc:
            raise WatchError(f"--since: {exc}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise WatchError(f"--since must be 0 or more seconds, got {text!r}")
    return seconds


def run_watch(
    settings: KafkaSettings,
    topics: Topics,
    name: str,
    *,
    since_s: float | None,
    idle_s: float,
    count: int | None,
    follow: bool,
    grep: list[str],
    any_match: bool = False,
    partitions: list[int] | None = None,
    offset: int | None = None,
    since: str | None = None,
) -> int:
    """CLI wrapper: exit code 0, or 2 with a message for an unknown topic or bad flags.

    since: `--since` as typed (seconds, a duration like 30m, or an ISO time); it wins
    over `since_s`."""
    try:
        topic = resolve_topic(name, topics)
        since_s = since_s if since is None else _since_s(since)
        if offset is not None and not partitions:
            raise WatchError("--offset needs --partition N (the offset is per partition)")
        if offset is not None and since_s is not None:
            raise WatchError("give --offset or --since, not both")
        if offset is not None and offset < 0:
            raise WatchError(f"--offset must be 0 or more, got {offset}")
        if partitions and min(partitions) < 0:
            raise WatchError("--partition must be 0 or more")
    except WatchError as exc:
        sys.stderr.write(f"dccgate watch: {exc}\n")
        return 2
    printed = asyncio.run(
        watch(
            settings,
            topic,
            out=sys.stdout,
            since_s=since_s,
            idle_s=idle_s,
            count=count,
            follow=follow,
            grep=grep,
            any_match=any_match,
            partitions=partitions or None,
            offset=offset,
        )
    )
    sys.stderr.write(f"{printed} records on {topic}\n")
    return 0
