"""The live progress line: rates sent and answered, outcomes so far, time left.

On a terminal, one line rewritten in place every second; otherwise (a log, CI) a plain line
every five seconds.
"""

from __future__ import annotations

import time
from typing import TextIO

from workers.tools.loadtest.runner import RunStats

__all__ = ["Progress"]

_PLAIN_EVERY_S = 5.0


class Progress:
    """Writes progress lines to `out` (usually stderr); `tty` picks the in-place form."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._last = (time.monotonic(), 0, 0)
        self._last_plain = 0.0

    def __call__(self, stats: RunStats, left_s: float) -> None:
        now = time.monotonic()
        t, sent, answered = self._last
        dt = max(now - t, 1e-6)
        sent_rate = (stats.sent + stats.resent - sent) / dt
        answered_rate = (stats.answered - answered) / dt
        self._last = (now, stats.sent + stats.resent, stats.answered)
        line = self.line(stats, left_s, sent_rate, answered_rate)
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
        elif now - self._last_plain >= _PLAIN_EVERY_S:
            self._last_plain = now
            self.out.write(line + "\n")
        self.out.flush()

    @staticmethod
    def line(stats: RunStats, left_s: float, sent_rate: float, answered_rate: float) -> str:
        """One progress line."""
        outcomes = " ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items())) or "-"
        installs = sum(c["ok"] for c in stats.installs.values())
        failed = sum(c["failed"] for c in stats.installs.values())
        alerts = sum(stats.alerts_raised.values())
        delivered = sum(stats.alerts_delivered.values())
        return (
            f"{stats.elapsed_s:6.1f} s  sent {sent_rate:7.0f}/s  answered {answered_rate:7.0f}/s  "
            f"[{outcomes}]  installs {installs} ok {failed} failed  alerts {alerts} raised "
            f"{delivered} delivered  {left_s:4.0f} s left"
        )

    def done(self) -> None:
        """End the in-place line."""
        if self.tty:
            self.out.write("\n")
            self.out.flush()
