"""Draws an Answer's key signal as a PNG (matplotlib, Agg): the series over the window, its thresholds, the onset
and the change before it. Blocking: call it in a thread."""

from __future__ import annotations

import io
from datetime import UTC

from bot.answer import Chart

LINE = "#1A73E8"
WARNING = "#E37400"
CRITICAL = "#D93025"
CHANGE = "#5F6368"


def value_label(unit: str, value: float) -> str:
    if unit == "ratio":
        text = f"{value * 100:.0f}%" if value >= 0.1 or value == 0 else f"{value * 100:.1f}%"
        return text.replace(".0%", "%")
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    if unit == "req/s":
        return f"{value:.0f}/s" if value >= 10 else f"{value:.1f}/s"
    return f"{value:.3g}"


def draw(chart: Chart, *, width: int = 720, height: int = 260, colours: int | None = None) -> bytes:
    """The chart as PNG bytes, `width` × `height` pixels; `colours` quantises the palette for a small file
    (a card that carries the image inline)."""
    # matplotlib and PIL cost a second to import: only a process that draws pays it, not every one importing
    # integrations.slack or integrations.teams (the CLI, each test worker)
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter
    from PIL import Image

    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axes = figure.add_subplot()
    times = [t.astimezone(UTC) for t, _ in chart.points]
    values = [v for _, v in chart.points]
    axes.plot(times, values, color=LINE, linewidth=2, label=chart.title)
    axes.fill_between(times, values, color=LINE, alpha=0.08)
    for level, colour, name in ((chart.warning, WARNING, "warning"), (chart.critical, CRITICAL, "critical")):
        if level is not None and level <= max(values) * 1.5:
            axes.axhline(level, color=colour, linewidth=1, linestyle=":")
            axes.annotate(f"{name} {value_label(chart.unit, level)}", (times[0], level), fontsize=7, color=colour,
                          xytext=(2, 2), textcoords="offset points")
    top = max(values + [v for v in (chart.warning, chart.critical) if v is not None and v <= max(values) * 1.5])
    axes.set_ylim(0, top * 1.25 if top > 0 else 1)
    for index, mark in enumerate(chart.marks):
        at = mark.at.astimezone(UTC)
        onset = mark.kind == "onset"
        colour = CRITICAL if onset else CHANGE
        axes.axvline(at, color=colour, linewidth=1.5, linestyle="--" if onset else "-")
        # the change comes before the onset: its label to the left of its line, the onset's to the right
        axes.annotate(f"{mark.label} {at:%H:%M}", (at, axes.get_ylim()[1]), fontsize=8, color=colour,
                      ha="left" if onset else "right", va="top", xytext=(3 if onset else -3, -2 - 11 * index),
                      textcoords="offset points", bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"})
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=UTC))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: value_label(chart.unit, v)))
    axes.tick_params(labelsize=8)
    axes.grid(True, color="#E8EAED", linewidth=0.8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.set_title(f"{chart.title} (UTC)", fontsize=10, loc="left")
    figure.tight_layout(pad=0.6)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    if colours is None:
        return buffer.getvalue()
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=colours)
    small = io.BytesIO()
    image.save(small, format="PNG", optimize=True)
    return small.getvalue()
