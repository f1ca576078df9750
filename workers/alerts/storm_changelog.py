"""Storm state across restarts: the changelog on `dcc.state.alerts`.

The design asks that per-device state survive a crash or a rebalance, so that a restarted
worker does not forward a running storm's alerts afresh. What is kept: the running storms
(`throttling.StormGuard.storm_state`), per device, as a `DeviceStormState` record keyed by
the device ID, in the partition of `dcc.state.alerts` with the number of the device's
partition of `dcc.alerts.inbound`. Windows are not kept: after a restart a key below its
threshold starts counting afresh (at most `max_alerts` more forwarded, as for a burst that
straddles two windows).

Consistency with the input, without transactions (the embedded broker has none that work):

- A snapshot is written only after the outputs of its batch, and of every batch before,
  are acknowledged, and before the batch's offsets are committed (a follow-up stage of the
  loop, `workers.runtime.loop.StagedProcessor`). So a committed offset is always covered by a
  durable snapshot, and a durable snapshot never claims outputs that were not made.
- Each storm records the input offset of the alert that started it and of the latest alert
  it counted (`through_offset`). After a restore the input is read again from the last
  commit; an alert of a restored storm at or below `through_offset` is already counted and
  is skipped; an alert before `start_offset` was forwarded at once (it may not have been
  written before the crash, so it is forwarded again: at-least-once); later ones are decided
  as usual.
- Storm copies are decided with the state, so a copy and the snapshot that says it was made
  must both be durable, in that order, or neither: the copies of a batch are embedded in its
  snapshot (stage 0), written (stage 1), then the snapshot is written again without them
  (stage 2). A restore that finds copies in a snapshot sends them again: a repeat with the
  same sequence ID, boundary header and count, which recipients drop. So the counts stay
  exact across a crash.

`StormBook` keeps what the guard does not know: each storming device's partition and offsets,
and which devices changed in the current step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from broker.consumer import Record, TopicPartition
from broker.schemas import DeviceAlert, DeviceStormState, StormCopyRecord, StormRecord
from throttling import StormGuard, StormState, normalize_alert_code

__all__ = ["FORWARD", "SKIP", "StormBook"]

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(DeviceStormState).decode

SKIP: Final = 1
"""A restored storm's alert that its snapshot already counted."""
FORWARD: Final = 2
"""A restored storm's key, alert read before the storm started: it was forwarded at once."""


class _Device:
    """A storming device: its input partition, and per canonical code [start, through]."""

    __slots__ = ("codes", "replay", "tp")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.codes: dict[str, list[int]] = {}
        # Restored codes whose already-counted alerts may be read again: code -> (start,
        # through), until an alert past `through` arrives or the storm ends.
        self.replay: dict[str, tuple[int, int]] = {}


class StormBook:
    """The storming devices, their offsets, and the devices changed in the current step."""

    __slots__ = ("_input_topic", "devices", "dirty", "replaying")

    def __init__(self, input_topic: str) -> None:
        self._input_topic = input_topic
        self.devices: dict[str, _Device] = {}
        self.dirty: set[str] = set()
        self.replaying: dict[str, _Device] = {}
        """Devices with a restored storm whose counted alerts may come again."""

    def counted(
        self, device_id: str, alert_code: str, tp: TopicPartition, offset: int, *, started: bool
    ) -> None:
        """Storm protection suppressed this alert: it `started` a storm, or was in one."""
        device = self.devices.get(device_id)
        if device is None:
            device = self.devices[device_id] = _Device(tp)
        code = normalize_alert_code(alert_code)
        span = device.codes.get(code)
        if span is None or started:
            device.codes[code] = [offset, offset]
        else:
            span[1] = offset
        self.dirty.add(device_id)

    def copied(self, device_id: str, alert_code: str, *, ended: bool) -> None:
        """A copy of the storm went out; `ended`: it was the final copy and the key has no
        storm now (a new storm of the key may have started in the same step: it stays)."""
        device = self.devices.get(device_id)
        if device is None:
            return
        self.dirty.add(device_id)
        if ended:
            device.codes.pop(alert_code, None)
            if device.replay.pop(alert_code, None) is not None and not device.replay:
                self.replaying.pop(device_id, None)

    def replayed(self, device: _Device, device_id: str, alert_code: str, offset: int) -> int:
        """For an alert of a device in `replaying`: SKIP, FORWARD, or 0 (decide it)."""
        code = normalize_alert_code(alert_code)
        span = device.replay.get(code)
        if span is None:
            return 0
        start, through = span
        if offset > through:
            del device.replay[code]
            if not device.replay:
                del self.replaying[device_id]
            return 0
        return SKIP if offset >= start else FORWARD

    def snapshot(
        self,
        device_id: str,
        guard: StormGuard[DeviceAlert],
        copies: Sequence[StormCopyRecord],
        at_ms: int,
    ) -> tuple[TopicPartition, bytes | None, bytes | None]:
        """The device's partition, its snapshot with `copies` embedded, and without them
        (None: a tombstone, nothing to keep). A device left with no storm is forgotten."""
        device = self.devices[device_id]
        storms = []
        for code, (start, through) in device.codes.items():
            state = guard.storm_state(device_id, code)
            if state is None:
                continue  # ended by a copy of this step
            storms.append(
                StormRecord(
                    alert_code=code,
                    sequence_id=state.sequence_id,
                    due_ms=round(state.due_s * 1000),
                    pending=state.pending,
                    suppressed=state.suppressed,
                    latest=state.latest,
                    start_offset=start,
                    through_offset=through,
                )
            )
        if not storms and not device.codes:
            self.devices.pop(device_id, None)
            self.replaying.pop(device_id, None)
        bare = (
            _encode(DeviceStormState(device_id=device_id, storms=storms, at_ms=at_ms))
            if storms
            else None
        )
        if not copies:
            return device.tp, bare, bare
        value = DeviceStormState(
            device_id=device_id, storms=storms, copies=list(copies), at_ms=at_ms
        )
        return device.tp, _encode(value), bare

    def restore(
        self, records: Iterable[Record], guard: StormGuard[DeviceAlert], now_s: float
    ) -> list[tuple[TopicPartition, StormCopyRecord]]:
        """Apply a changelog read back (oldest first; the newest record per key wins) and
        return the copies to send again. `records` are from `dcc.state.alerts`; each is
        put on the partition of `dcc.alerts.inbound` with its number."""
        latest: dict[bytes, Record] = {}
        for rec in records:
            if rec.key is not None:
                latest[rec.key] = rec
        again: list[tuple[TopicPartition, StormCopyRecord]] = []
        restored = 0
        for rec in latest.values():
            if rec.value is None:
                continue
            try:
                state = _decode_state(rec.value)
            except msgspec.DecodeError as exc:
                log.warning("dcc.state.alerts offset %d skipped: %s", rec.offset, exc)
                continue
            tp = TopicPartition(self._input_topic, rec.partition)
            device = _Device(tp)
            for storm in state.storms:
                code = normalize_alert_code(storm.alert_code)
                guard.restore_storm(
                    StormState(
                        device_id=state.device_id,
                        alert_code=code,
                        sequence_id=storm.sequence_id,
                        due_s=storm.due_ms / 1000,
                        pending=storm.pending,
                        suppressed=storm.suppressed,
                        latest=storm.latest,
                    ),
                    now_s,
                )
                device.codes[code] = [storm.start_offset, storm.through_offset]
                device.replay[code] = (storm.start_offset, storm.through_offset)
                restored += 1
            self.devices[state.device_id] = device
            if device.replay:
                self.replaying[state.device_id] = device
            # The next step writes the device's snapshot again, with these copies in it.
            again.extend((tp, copy) for copy in state.copies)
        if restored:
            log.info("restored %d running storms from the changelog", restored)
        return again

    def revoke(self, partitions: Iterable[TopicPartition], guard: StormGuard[DeviceAlert]) -> None:
        """Drop the storms of devices in `partitions`, without copies: the new owner of the
        partitions continues them from the changelog."""
        gone = frozenset(partitions)
        for device_id, device in list(self.devices.items()):
            if device.tp in gone:
                for code in device.codes:
                    guard.forget_storm(device_id, code)
                del self.devices[device_id]
                self.replaying.pop(device_id, None)
                self.dirty.discard(device_id)
