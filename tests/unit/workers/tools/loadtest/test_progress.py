"""The progress line: in place on a terminal, plain lines every few seconds otherwise."""

from __future__ import annotations

import io

from workers.tools.loadtest.progress import Progress
from workers.tools.loadtest.runner import RunStats


def _stats() -> RunStats:
    stats = RunStats(sent=1200, answered=1100, elapsed_s=3.0)
    stats.outcomes.update(accepted=1000, throttled=100)
    stats.installs["north"].update(ok=5, failed=1)
    stats.alerts_raised.update(steady=40)
    stats.alerts_delivered.update(steady=38)
    return stats


def test_line_shows_rates_outcomes_installs_alerts_and_time_left() -> None:
    line = Progress.line(_stats(), 17.0, 400.0, 366.7)
    assert "sent     400/s" in line
    assert "answered     367/s" in line
    assert "[accepted 1000 throttled 100]" in line
    assert "installs 5 ok 1 failed" in line
    assert "alerts 40 raised 38 delivered" in line
    assert line.endswith("17 s left")


def test_terminal_rewrites_one_line_a_pipe_gets_plain_lines() -> None:
    tty, pipe = io.StringIO(), io.StringIO()
    for out, is_tty in ((tty, True), (pipe, False)):
        progress = Progress(out, tty=is_tty)
        progress(_stats(), 10.0)
        progress(_stats(), 9.0)  # within 5 s of the first: no second plain line
        progress.done()
    assert tty.getvalue().count("\r\x1b[2K") == 2
    assert tty.getvalue().endswith("\n")
    assert pipe.getvalue().count("\n") == 1
    assert "\r" not in pipe.getvalue()
