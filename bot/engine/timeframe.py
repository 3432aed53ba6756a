"""The time a diagnosis looks at. By default the catalog's window (15m): what is wrong now. A question about an
earlier moment ("I got paged at 13:05", "40 minutes ago", "this morning"), or an alert about the service that fired
and resolved before the window, widens it back to that moment, so the metrics and logs of that time are read and
the answer can say what happened then — and that it is over."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from tools.control_plane import Alert

# read this much before the moment asked about: what led up to it
LEAD = timedelta(minutes=10)
# never further back than this: a day of logs and metrics is the most one answer reads
FURTHEST = timedelta(hours=24)
# a resolved alert this recent is what the user is likely asking about
RECENT_ALERT = timedelta(hours=6)

CLOCK = re.compile(r"(?i)(?<![\d:.])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?![\d:])\s*(?:UTC|Z)?")
AGO = re.compile(r"(?i)\b(?P<n>\d+|an?|one|two|three|half an?)\s+(?P<u>min(?:ute)?s?|h(?:ou)?rs?|hours?)\s+ago\b")
WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}
# parts of today a question names, by the hour they start; not "overnight": a night's logs mix several container
# instances, and a question about a night's OOM kills is about the limit now
PARTS_OF_DAY = {"this morning": 6, "this afternoon": 12, "this evening": 18}


def asked_since(question: str, now: datetime) -> datetime | None:
    """The earliest moment the question names: a clock time (today, or yesterday when that is still to come),
    'N minutes/hours ago', or a part of the day; None when it names none."""
    moments = []
    for m in CLOCK.finditer(question):
        at = now.replace(hour=int(m.group("h")), minute=int(m.group("m")), second=0, microsecond=0)
        moments.append(at if at <= now + timedelta(minutes=5) else at - timedelta(days=1))
    for m in AGO.finditer(question):
        count = m.group("n").lower()
        n = 0.5 if count.startswith("half") else WORDS.get(count) or int(count)
        unit = timedelta(minutes=1) if m.group("u").lower().startswith("min") else timedelta(hours=1)
        moments.append(now - n * unit)
    lowered = question.lower()
    for words, hour in PARTS_OF_DAY.items():
        if words in lowered:
            start = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=hour)
            moments.append(start if start <= now else start - timedelta(days=1))
    moments = [m for m in moments if now - m <= FURTHEST]
    return min(moments, default=None)


# a question about something that already happened ("what happened", "I got paged", "it resolved on its own")
PAST = re.compile(r"(?i)\b(?:what happened|happened|earlier|paged|resolved|recovered|went away|blip|spiked?|"
                  r"was (?:it|there|this)|were there)\b")


def resolved_since(question: str, alerts: Iterable[Alert], now: datetime) -> datetime | None:
    """When the earliest recently resolved alert fired, if the question is about something that already happened:
    a question about now is answered on the window."""
    if not PAST.search(question):
        return None
    fired = [a.fired_at for a in alerts if a.status == "resolved" and a.fired_at is not None
             and now - (a.resolved_at or a.fired_at) <= RECENT_ALERT]
    return min(fired, default=None)


def widened(since: datetime | None, now: datetime, default_seconds: float) -> str | None:
    """The duration ('52m', in minutes: PromQL and the catalog read it alike) that reaches LEAD before `since`, when that is further back than the
    default window; else None (the default covers it)."""
    if since is None:
        return None
    span = now - since + LEAD
    if span.total_seconds() <= default_seconds:
        return None
    return f"{math.ceil(min(span, FURTHEST + LEAD).total_seconds() / 60)}m"
