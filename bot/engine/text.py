"""How numbers, times and durations read in an answer ("8.3%", "3.1 s", "10:42 UTC", "2 min")."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from bot.wording import short
from tools.redact import redact
from tools.metrics import Signal

__all__ = ["short"]  # part of how answers read, with the helpers below

LABELS = {
    "request_rate": "Request rate",
    "error_rate": "Error rate",
    "latency_p99": "p99 latency",
    "cpu_ratio": "CPU",
    "memory_ratio": "Memory",
    "restarts": "Restarts",
}
# what "rose" after a change, by signal
RISING = {
    "error_rate": "Errors",
    "latency_p99": "Latency",
    "cpu_ratio": "CPU",
    "memory_ratio": "Memory",
    "restarts": "Restarts",
    "request_rate": "Traffic",
}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def percent(ratio: float) -> str:
    value = ratio * 100
    if value == 0:
        return "0%"
    if abs(value) < 0.1:
        return f"{value:.2f}%"
    if abs(value) < 10:
        return f"{value:.1f}%".replace(".0%", "%")
    return f"{value:.0f}%"


def seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s".replace(".0 s", " s")


def number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e6:
        return f"{int(value)}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def value_text(signal: Signal, value: float | None = None) -> str:
    """A signal's value as it reads in a sentence; `value` overrides the signal's own (a threshold, a baseline)."""
    v = signal.value if value is None else value
    if v is None:
        return "no data"
    if signal.unit == "ratio":
        return percent(v)
    if signal.unit == "s":
        return seconds(v)
    if signal.unit == "req/s":
        return f"{number(v)} req/s"
    return number(v)


def clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M UTC")


def duration(delta: timedelta | float) -> str:
    """'40 s', '2 min', '1 h 5 min', '3 days'."""
    total = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    total = abs(total)
    if total < 60:
        return f"{total:.0f} s"
    if total < 3600:
        return f"{total / 60:.0f} min"
    if total < 2 * 86400:
        hours, minutes = divmod(int(total // 60), 60)
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days = total / 86400
    return f"{days:.0f} day{'s' if round(days) != 1 else ''}"


def ago(moment: datetime, now: datetime) -> str:
    return f"{duration(now - moment)} ago"


def image_tag(image: str) -> str:
    """'registry/shop/checkout:v2.1.0' → 'v2.1.0'; an image without a tag stays whole."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return last.split("@", 1)[1][:19]
    return last.rsplit(":", 1)[1] if ":" in last else image


def tags(images: list[str]) -> str:
    return ", ".join(dict.fromkeys(image_tag(i) for i in images)) or "?"


def join(items: list[str], last: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def lower_first(text: str | None) -> str:
    """Sentence case inside a sentence: 'Error rate 8%' → 'error rate 8%'; acronyms stay ('CPU at 97%')."""
    if not text:
        return ""
    first = text.split()[0]
    if len(first) > 1 and first.isupper() or first.startswith("p99"):
        return text
    return text[0].lower() + text[1:]




def changes_text(changes: dict[str, object]) -> str:
    """An audit record's changes as people read them ("replicas 6 → 2; image a → b"), redacted: a record may
    carry a value that must not reach a chat message."""
    parts = []
    for key, value in list(changes.items())[:4]:
        if isinstance(value, dict) and ({"from", "to"} <= value.keys() or {"old", "new"} <= value.keys()):
            before = value.get("from", value.get("old"))
            after = value.get("to", value.get("new"))
            parts.append(f"{key} {before} → {after}")
        else:
            parts.append(f"{key}: {value}")
    return redact(short("; ".join(parts), 200))
