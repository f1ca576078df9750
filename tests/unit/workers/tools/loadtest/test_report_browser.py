"""The report pages in a real browser: headless Debian chromium draws the plots.

A synthetic run is rendered to HTML, chromium takes a screenshot, and the PNG (decoded here
with zlib) must show the plots in their colours: the full-width throughput chart, the bars,
the lines. `--dump-dom` checks the SVG elements are in the rendered DOM. Skipped, saying why,
only where chromium is missing and cannot be installed by `make test` (not root); as root
(CI) a missing chromium fails, so the test cannot silently skip there.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from workers.tools.loadtest import svg
from workers.tools.loadtest.compare import build_comparison
from workers.tools.loadtest.compare_page import write_comparison
from workers.tools.loadtest.report import compare, write_report, write_whatif
from workers.tools.loadtest.report_schema import LoadTestReport
from workers.tools.loadtest.results import ResultCollector
from workers.tools.loadtest.sample import sample_report
from workers.tools.loadtest.thresholds import evaluate, parse_threshold

WIDTH = 1280
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found:
        return found
    message = (
        "Debian chromium is not installed: `apt-get install chromium` (make test does it as root)"
    )
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(message + "; as root `make test` installs it, so this must not skip here")
    pytest.skip(message)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=90,
        check=True,
    )


def _screenshot(tmp_path: Path, html: Path, height: int) -> tuple[int, int, list[bytes]]:
    png = tmp_path / (html.stem + ".png")
    _run(tmp_path, f"--screenshot={png}", f"--window-size={WIDTH},{height}", html.as_uri())
    return _decode_png(png.read_bytes())


def _decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB or RGBA PNG (what chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8
    assert colour_type in (2, 6), colour_type
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        previous = line
        rgb = bytes(line) if bpp == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3)
        rows.append(rgb)
    return width, height, rows


def _rgb(hex_colour: str) -> bytes:
    return bytes.fromhex(hex_colour.lstrip("#"))


def _where(rows: list[bytes], colour: str) -> list[tuple[int, int]]:
    """(x, y) of every pixel of exactly `colour`."""
    target = _rgb(colour)
    found = []
    for y, row in enumerate(rows):
        start = row.find(target)
        while start != -1:
            if start % 3 == 0:
                found.append((start // 3, y))
            start = row.find(target, start + 1)
    return found


def _with_thresholds(report: LoadTestReport, *expressions: str) -> LoadTestReport:
    checks = [parse_threshold(e) for e in expressions]
    return msgspec.structs.replace(report, thresholds=evaluate(checks, report))


def test_report_page_shows_its_plots(tmp_path: Path) -> None:
    report = _with_thresholds(
        sample_report(duration_s=60.0, rate_per_s=200.0), "p99<500ms", "quarantined==0"
    )
    _, html = write_report(report, tmp_path / "run")
    dom = _run(tmp_path, "--dump-dom", html.as_uri()).stdout.decode()
    assert dom.count("<svg") >= 12
    for title in (
        "Throughput over time",
        "Events",
        "Response codes and errors over time",
        "Gateway latency over time",
        "Latency by percentile",
        "Outcomes per User",
        "Installs per region",
        "Alerts per code",
    ):
        assert f'aria-label="{title}"' in dom, title
    # No empty boxes, no raw dump: the curated gateway table, latency per SRV, thresholds.
    assert "no data" not in dom
    assert 'class="nodata"' not in dom
    assert 'class="empty"' not in dom  # the sample has something in every section
    gateway = dom[dom.index('<section id="gateway">') :]
    gateway = gateway[: gateway.index("</section>")]
    for heading in ("Traffic management", "Per User", "Decisions", "Consumer lag"):
        assert f"<h3>{heading}</h3>" in gateway, heading
    assert "dccgate_traffic" not in gateway
    assert '<section id="srv-latency">' in dom
    assert "Thresholds: 1 of 2 thresholds failed" in dom
    # Periods as spans (throttling of the noisy User, quarantine of the runaway one, the
    # storm), one-off events as markers at their time.
    assert dom.count('class="span"') >= 3
    assert dom.count('class="marker"') == len(report.events)
    # The rule names are wrapped on lines of their own, not cut from the left.
    assert "…" not in dom

    width, height, rows = _screenshot(tmp_path, html, 2400)
    assert (width, height) == (WIDTH, 2400)
    counts = Counter(
        rows[y][x * 3 : x * 3 + 3] for y in range(0, height, 7) for x in range(0, width, 7)
    )
    # The sections' white, the plot areas' and the page's backgrounds come first.
    backgrounds = {_rgb("#ffffff"), _rgb("#fbfbfc"), _rgb("#f4f5f7")}
    assert {c for c, _ in counts.most_common(3)} == backgrounds
    # The throughput chart spans the page: its accepted area is green across ~1000 px.
    green = _where(rows[:1000], svg.OUTCOME_COLOURS["accepted"])
    assert len(green) > 20_000
    assert max(x for x, _ in green) - min(x for x, _ in green) > 900
    # The throttled and quarantined areas and bars, the sent line, the p99 lines.
    assert len(_where(rows, svg.OUTCOME_COLOURS["quarantined"])) > 5_000
    assert len(_where(rows, svg.OUTCOME_COLOURS["throttled"])) > 2_000
    assert len(_where(rows[:1000], svg.BLUE)) > 500
    assert len(_where(rows, svg.VERMILLION)) > 300
    # The failed thresholds' section has a vermillion bar down its left side.
    assert len({y for _, y in _where(rows[:600], svg.VERMILLION)}) > 60
    # The quarantine span runs from about 40% of the run to its end: a purple bar of more
    # than 500 px in one row, under the throughput chart.
    purple_rows = Counter(y for _, y in _where(rows, svg.OUTCOME_COLOURS["quarantined"]))
    assert any(n > 500 for n in purple_rows.values())


def test_what_if_page_shows_both_runs(tmp_path: Path) -> None:
    base = sample_report(seed=1, duration_s=30.0, rate_per_s=200.0)
    proposed = sample_report(seed=2, duration_s=30.0, rate_per_s=200.0)
    _, html = write_whatif(compare(base, proposed), base, proposed, tmp_path / "whatif")
    _, _, rows = _screenshot(tmp_path, html, 1600)
    green = _where(rows, svg.OUTCOME_COLOURS["accepted"])
    # Two throughput charts side by side: accepted areas in both halves of the page.
    assert sum(1 for x, _ in green if x < WIDTH // 2) > 5_000
    assert sum(1 for x, _ in green if x > WIDTH // 2) > 5_000


def test_empty_report_says_so_in_one_line_each(tmp_path: Path) -> None:
    report = ResultCollector(scenario="empty", seed=0, scale=1.0, duration_s=0.0).finish(
        0.0, gateway={}
    )
    _, html = write_report(report, tmp_path / "empty")
    dom = _run(tmp_path, "--dump-dom", html.as_uri()).stdout.decode()
    assert "no data" not in dom
    assert "<svg" not in dom
    assert dom.count('class="empty"') >= 12
    assert "dccgate load test: empty" in dom
    # One short line each, no tall empty boxes: the whole page ends within 1,000 px.
    _, height, rows = _screenshot(tmp_path, html, 1100)
    background = _rgb("#f4f5f7") * WIDTH
    last = max(y for y in range(height) if rows[y] != background)
    assert last < 1000, last


def test_comparison_page_overlays_both_runs(tmp_path: Path) -> None:
    a = sample_report(seed=1, duration_s=30.0, rate_per_s=200.0)
    b = sample_report(seed=2, duration_s=30.0, rate_per_s=300.0)
    comparison = build_comparison(a, b, tmp_path / "a", tmp_path / "b")
    _, html = write_comparison(comparison, a, b, tmp_path / "cmp")
    dom = _run(tmp_path, "--dump-dom", html.as_uri()).stdout.decode()
    for title in (
        "Throughput, A and B",
        "Gateway p99 over time, A and B",
        "Latency by percentile, A and B",
    ):
        assert f'aria-label="{title}"' in dom, title
    assert "no data" not in dom
    assert '<section id="metrics">' in dom
    assert "+50.0%" in dom or "+4" in dom  # B sent about half as much again
    _, _, rows = _screenshot(tmp_path, html, 1500)
    # A's lines solid, B's dashed, both in the throughput chart's colours.
    assert len(_where(rows, svg.GREEN)) > 1_000
    assert len(_where(rows, svg.BLUE)) > 500  # A's and B's sent lines
