"""Inline SVG charts for the load-test report: no JavaScript, no library, no remote asset.

Every function returns one `<svg>` element as a string. All text goes through `html.escape`
(labels come from the wire). Colours are the Okabe-Ito palette, readable with the common
colour-vision deficiencies; lines also differ by dash where two could be confused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import msgspec

__all__ = [
    "OUTCOME_COLOURS",
    "Bar",
    "Frame",
    "Line",
    "Span",
    "Stack",
    "hbar_chart",
    "nice_ticks",
    "no_data",
    "percentile_chart",
    "span_timeline",
    "time_chart",
    "wrap",
]

BLUE = "#0072B2"
SKY = "#56B4E9"
GREEN = "#009E73"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
YELLOW = "#F0E442"
BLACK = "#000000"
GREY = "#999999"

OUTCOME_COLOURS = {
    "accepted": GREEN,
    "rejected": VERMILLION,
    "throttled": ORANGE,
    "quarantined": PURPLE,
    "released": SKY,
    "deleted": BLACK,
    "other": GREY,
}
EVENT_COLOURS = {
    "throttling": ORANGE,
    "quarantine": PURPLE,
    "storm": VERMILLION,
    "fault": BLACK,
    "phase": GREY,
}
_FALLBACK = (BLUE, SKY, YELLOW, GREEN)


def event_colour(kind: str) -> str:
    """The colour of an event kind on the timeline (unknown kinds: a stable pick)."""
    return EVENT_COLOURS.get(kind, _FALLBACK[sum(kind.encode()) % len(_FALLBACK)])


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """A line series: `points` (x, y), a None y breaks the line."""

    name: str
    colour: str
    points: Sequence[tuple[float, float | None]]
    dash: str = ""


class Stack(msgspec.Struct, frozen=True, kw_only=True):
    """A series drawn as a stacked area under the lines (one value per bucket)."""

    name: str
    colour: str
    values: Sequence[float]


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    """A horizontal bar: `label` and its segments (name, value) in drawing order."""

    label: str
    segments: Sequence[tuple[str, float]]
    note: str = ""


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the span timeline: periods (start, end, tooltip) and one-off markers
    (t, tooltip) of one kind and label."""

    label: str
    colour: str
    periods: Sequence[tuple[float, float, str]] = ()
    markers: Sequence[tuple[float, str]] = ()


_BREAKS = ":.-_/ ,;·"


def wrap(label: str, width: int, max_lines: int = 3) -> list[str]:
    """`label` in lines of at most `width` characters, broken after `:`, `.`, `-`, a space
    or the like where possible; past `max_lines` the last line ends in an ellipsis. Nothing
    is cut from the left: the start of a name stays readable."""
    lines: list[str] = []
    rest = label
    while rest and len(lines) < max_lines:
        if len(rest) <= width:
            lines.append(rest)
            rest = ""
            break
        cut = max((rest.rfind(c, 0, width) for c in _BREAKS), default=-1)
        cut = cut + 1 if cut >= width // 3 else width
        lines.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        lines[-1] = lines[-1][: max(width - 1, 1)] + "…"
    return lines or [""]


def _text_lines(x: float, y: float, lines: Sequence[str], anchor: str, step: int = 13) -> str:
    spans = "".join(
        f'<tspan x="{x:.1f}" dy="{0 if i == 0 else step}">{escape(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{spans}</text>'


class Frame:
    """A plot area inside an SVG: pixel mapping for x in [0, x_max] and y in [0, y_max]."""

    def __init__(
        self,
        width: int,
        height: int,
        x_max: float,
        y_max: float,
        *,
        left: int = 68,
        right: int = 16,
        top: int = 14,
        bottom: int = 44,
    ) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x_max = x_max if x_max > 0 else 1.0
        self.y_max = y_max if y_max > 0 else 1.0

    @property
    def plot_width(self) -> float:
        """Width of the plot area in pixels."""
        return float(self.width - self.left - self.right)

    @property
    def plot_height(self) -> float:
        """Height of the plot area in pixels."""
        return float(self.height - self.top - self.bottom)

    def x(self, value: float) -> float:
        """Pixel x of a data x."""
        return self.left + self.plot_width * min(max(value / self.x_max, 0.0), 1.0)

    def y(self, value: float) -> float:
        """Pixel y of a data y."""
        return self.top + self.plot_height * (1.0 - min(max(value / self.y_max, 0.0), 1.0))


def nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """Tick values 0 .. >= maximum on a 1-2-5 step, about `count` of them."""
    if not maximum > 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(maximum / step - 1e-9) + 1)]


def fmt(value: float) -> str:
    """A short tick label: 1500 -> 1.5k, 0.25 -> 0.25."""
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _open(frame: Frame, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{frame.width}" height="{frame.height}"'
        f' viewBox="0 0 {frame.width} {frame.height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="plot" x="{frame.left}" y="{frame.top}" width="{frame.plot_width:.1f}"'
        f' height="{frame.plot_height:.1f}"/>',
    ]


def _axes(
    frame: Frame,
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
) -> list[str]:
    parts: list[str] = []
    bottom = frame.top + frame.plot_height
    for value in y_ticks:
        y = frame.y(value)
        parts.append(
            f'<line class="grid" x1="{frame.left}" y1="{y:.1f}" x2="{frame.width - frame.right}"'
            f' y2="{y:.1f}"/><text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{fmt(value)}</text>"
        )
    for value, label in x_ticks:
        x = frame.x(value)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}"/>'
            f'<text x="{x:.1f}" y="{bottom + 17}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{frame.left}" y1="{bottom}" x2="{frame.width - frame.right}"'
        f' y2="{bottom}"/><line class="axis" x1="{frame.left}" y1="{frame.top}"'
        f' x2="{frame.left}" y2="{bottom}"/>'
        f'<text class="label" x="{frame.left + frame.plot_width / 2:.1f}"'
        f' y="{frame.height - 6}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text class="label" transform="translate(14 {frame.top + frame.plot_height / 2:.1f})'
        f' rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
    )
    return parts


def legend(entries: Sequence[tuple[str, str, str]]) -> str:
    """An HTML legend: (name, colour, dash) per entry, the swatch drawn like the series."""
    items = []
    for name, colour, dash in entries:
        swatch = (
            f'<svg width="22" height="10" aria-hidden="true"><line x1="0" y1="5" x2="22" y2="5"'
            f' stroke="{colour}" stroke-width="3" stroke-dasharray="{dash}"/></svg>'
            if dash != "area"
            else f'<span class="swatch" style="background:{colour}"></span>'
        )
        items.append(f"<li>{swatch}{escape(name)}</li>")
    return f'<ul class="legend">{"".join(items)}</ul>'


def no_data(width: int, height: int, title: str) -> str:
    """An empty chart that says so."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img"'
        f' aria-label="{escape(title)}: no data"><title>{escape(title)}</title>'
        f'<rect class="plot" x="1" y="1" width="{width - 2}" height="{height - 2}"/>'
        f'<text class="nodata" x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">'
        f"no data</text></svg>"
    )


def _time_ticks(x_max: float) -> list[tuple[float, str]]:
    return [(t, fmt(t)) for t in nice_ticks(x_max, 10) if t <= x_max + 1e-9]


def time_chart(
    *,
    title: str,
    width: int,
    height: int,
    x_max: float,
    bucket_s: float,
    lines: Sequence[Line],
    stacks: Sequence[Stack] = (),
    y_label: str,
    x_label: str = "time since start (s)",
) -> str:
    """Lines (and stacked areas, one value per bucket) over the run's time."""
    tops = [sum(values) for values in zip(*(s.values for s in stacks), strict=True)]
    ys = [y for line in lines for _, y in line.points if y is not None]
    y_max = max([*tops, *ys], default=0.0)
    if y_max <= 0:
        return no_data(width, height, title)
    y_ticks = nice_ticks(y_max * 1.05)
    frame = Frame(width, height, x_max, y_ticks[-1])
    parts = _open(frame, title)
    parts += _axes(frame, _time_ticks(x_max), y_ticks, x_label, y_label)
    base = [0.0] * len(tops)
    for stack in stacks:
        upper = [b + v for b, v in zip(base, stack.values, strict=True)]
        path = _area(frame, bucket_s, base, upper)
        if path:
            parts.append(f'<path class="area" d="{path}" fill="{stack.colour}"/>')
        base = upper
    for line in lines:
        for path in _polylines(frame, line.points):
            dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
            parts.append(
                f'<polyline class="line" points="{path}" stroke="{line.colour}"{dash}>'
                f"<title>{escape(line.name)}</title></polyline>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _area(frame: Frame, bucket_s: float, lower: Sequence[float], upper: Sequence[float]) -> str:
    if not any(u > lo for u, lo in zip(upper, lower, strict=True)):
        return ""
    top = []
    for i, value in enumerate(upper):  # steps: a bucket is flat over its width
        top += [(i * bucket_s, value), ((i + 1) * bucket_s, value)]
    bottom = []
    for i in range(len(lower) - 1, -1, -1):
        bottom += [((i + 1) * bucket_s, lower[i]), (i * bucket_s, lower[i])]
    points = " L".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in top + bottom)
    return f"M{points} Z"


def _polylines(frame: Frame, points: Sequence[tuple[float, float | None]]) -> list[str]:
    runs: list[list[str]] = [[]]
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(f"{frame.x(x):.1f},{frame.y(y):.1f}")
    # A run of one point is drawn as a tiny segment so it stays visible.
    return [" ".join(run if len(run) > 1 else run * 2) for run in runs if run]


def span_timeline(*, title: str, width: int, x_max: float, rows: Sequence[Span]) -> str:
    """Periods as bars from their start to their end, one-off events as markers at their
    exact time; one row per kind and label, the name above its row. Same x axis as
    `time_chart` (left margin 68, right 16), so it lines up under a chart of the run."""
    if not rows:
        return no_data(width, 60, title)
    row_h = 34
    wrapped = [wrap(row.label, max((width - 100) // 7, 20), 2) for row in rows]
    heights = [row_h + 13 * (len(lines) - 1) for lines in wrapped]
    height = 14 + 44 + sum(heights)
    frame = Frame(width, height, x_max, 1.0)
    parts = _open(frame, title)
    parts += _axes(frame, _time_ticks(x_max), [], "time since start (s)", "")
    y = float(frame.top)
    for row, lines, h in zip(rows, wrapped, heights, strict=True):
        label_y = y + 12
        parts.append(_text_lines(frame.left + 6, label_y, lines, "start"))
        bar_y = y + 4 + 13 * len(lines)
        for start, end, tip in row.periods:
            x0, x1 = frame.x(start), frame.x(end)
            parts.append(
                f'<rect class="span" x="{x0:.1f}" y="{bar_y:.1f}" width="{max(x1 - x0, 3.0):.1f}"'
                f' height="10" rx="2" fill="{row.colour}"><title>{escape(tip)}</title></rect>'
            )
        for t, tip in row.markers:
            x = frame.x(t)
            parts.append(
                f'<g class="marker"><title>{escape(tip)}</title>'
                f'<line x1="{x:.1f}" y1="{bar_y - 2:.1f}" x2="{x:.1f}" y2="{bar_y + 12:.1f}"'
                f' stroke="{row.colour}" stroke-width="2"/>'
                f'<path d="M{x - 6:.1f},{bar_y - 3:.1f} h12 l-6,8 z" fill="{row.colour}"/></g>'
            )
        y += h
    parts.append("</svg>")
    return "".join(parts)


# HDR percentile plots put 1/(1 - percentile) on a log axis: 90% -> 10, 99% -> 100, ...
_NINES = [
    (0.0, "0%"),
    (90.0, "90%"),
    (99.0, "99%"),
    (99.9, "99.9%"),
    (99.99, "99.99%"),
    (99.999, "99.999%"),
    (99.9999, "99.9999%"),
]


def _nines(percentile: float) -> float:
    return math.log10(1.0 / max(1.0 - percentile / 100.0, 1e-7))


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks per decade (1 only past three decades) covering [low, high], both > 0."""
    ticks = []
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = (1, 2, 5) if last - first <= 3 else (1,)
    for exponent in range(first, last + 1):
        for m in steps:
            ticks.append(m * 10.0**exponent)
    lower = max((t for t in ticks if t <= low), default=ticks[0])
    upper = min((t for t in ticks if t >= high), default=ticks[-1])
    return [t for t in ticks if lower <= t <= upper]


def percentile_chart(
    *,
    title: str,
    width: int,
    height: int,
    series: Sequence[tuple[str, str, str, Sequence[tuple[float, float]]]],
) -> str:
    """HdrHistogram's percentile distribution: latency against percentile, both on log axes.

    The x axis is log10(1 / (1 - percentile)), so 90%, 99%, 99.9% are evenly spaced; the y
    axis is logarithmic (ms) so a fast and a slow series both read. `series`: (name, colour,
    dash, [(percentile, value_ms)]).
    """
    points = [p for *_, pts in series for p in pts]
    if not points:
        return no_data(width, height, title)
    x_max = float(math.ceil(max(_nines(min(p, 99.9999)) for p, _ in points) - 1e-9))
    x_max = max(x_max, 1.0)
    low = max(min(v for _, v in points), 0.001)
    y_ticks = _log_ticks(low, max(*(v for _, v in points), low * 10))
    y0, y1 = math.log10(y_ticks[0]), math.log10(y_ticks[-1])
    frame = Frame(width, height, x_max, y1 - y0, right=36)

    def y_of(value: float) -> float:
        return math.log10(max(value, y_ticks[0])) - y0

    x_ticks = [(_nines(p), label) for p, label in _NINES if _nines(p) <= x_max + 1e-9]
    parts = _open(frame, title)
    parts += _axes(frame, x_ticks, [], "percentile", "latency (ms, log scale)")
    for tick in y_ticks:
        y = frame.y(y_of(tick))
        parts.append(
            f'<line class="grid" x1="{frame.left}" y1="{y:.1f}" x2="{frame.width - frame.right}"'
            f' y2="{y:.1f}"/><text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{fmt(tick)}</text>"
        )
    for name, colour, dash, pts in series:
        line = [(_nines(min(p, 99.9999)), y_of(v)) for p, v in pts]
        for path in _polylines(frame, [(x, y) for x, y in line]):
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(
                f'<polyline class="line" points="{path}" stroke="{colour}"{dash_attr}>'
                f"<title>{escape(name)}</title></polyline>"
            )
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    *,
    title: str,
    width: int,
    bars: Sequence[Bar],
    colours: dict[str, str],
    x_label: str,
    right: int = 70,
) -> str:
    """Stacked horizontal bars, one per label, segments coloured by `colours`.

    `right`: pixels kept right of the plot for the note after each bar.
    """
    if not bars or not any(v for bar in bars for _, v in bar.segments):
        return no_data(width, 80, title)
    bar_h, gap, label_w, chars = 18, 6, 200, 30
    wrapped = [wrap(bar.label, chars) for bar in bars]
    row_h = [max(bar_h, 13 * len(lines) + 4) + gap for lines in wrapped]
    height = 14 + 44 + sum(row_h)
    x_ticks = nice_ticks(max(sum(v for _, v in bar.segments) for bar in bars))
    frame = Frame(width, height, x_ticks[-1], 1.0, left=label_w, right=right)
    parts = _open(frame, title)
    parts += _axes(frame, [(t, fmt(t)) for t in x_ticks], [], x_label, "")
    for row, bar in enumerate(bars):
        y = frame.top + sum(row_h[:row]) + gap / 2
        # Wrapped, never clipped: User IDs and rule ids differ in their last octets.
        lines = wrapped[row]
        parts.append(
            f'<g class="name"><title>{escape(bar.label)}</title>'
            f"{_text_lines(label_w - 6, y + 13, lines, 'end')}</g>"
        )
        start = 0.0
        for name, value in bar.segments:
            if value <= 0:
                continue
            x0, x1 = frame.x(start), frame.x(start + value)
            parts.append(
                f'<rect class="bar" x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 1.0):.1f}"'
                f' height="{bar_h}" fill="{colours.get(name, GREY)}"><title>{escape(bar.label)}'
                f" {escape(name)}: {value:g}</title></rect>"
            )
            start += value
        note = bar.note or fmt(start)
        parts.append(f'<text x="{frame.x(start) + 4:.1f}" y="{y + 13:.1f}">{escape(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)
