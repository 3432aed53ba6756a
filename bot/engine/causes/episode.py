"""An episode that is over: the error rate or latency went over its warning level and came back (or an alert about
the service fired and resolved), so nothing fails now. Said as history — when it started, how long it lasted,
how bad it got, what the logs said then (the failing calls, the dependency they name) and the alert that paged —
never raised as a current fault. The window reaches back to it when the question names that moment."""
from __future__ import annotations

from datetime import datetime, timedelta

from bot.engine.causes.base import Rule, Verdict, World, short
from bot.engine.causes.dependency import FAILED_CALL, failing_dependencies
from bot.engine.text import clock, duration, label, value_text
from tools.metrics import RECOVERED_FOR, Signal

# lines this close before the signal crossed its level, or after it came back, belong to the episode
MARGIN = timedelta(minutes=3)
# an alert that fired this close to the episode is about it
ALERT_MARGIN = timedelta(minutes=10)


def episode_span(signal: Signal, now: datetime) -> tuple[datetime, datetime, float, datetime] | None:
    """(start, back, peak, peak at) when the signal went over its warning level inside the window and has been
    back under it for RECOVERED_FOR; None while it is still over, or when it never was."""
    if signal.thresholds is None or signal.health in ("warning", "critical") or not signal.points:
        return None
    over = [p for p in signal.points if p.value >= signal.thresholds[0]]
    after = [p for p in signal.points if over and p.time > over[-1].time]
    if not over or not after or now - after[0].time < RECOVERED_FOR:
        return None
    peak = max(over, key=lambda p: p.value)
    return over[0].time, after[0].time, peak.value, peak.time


def _lines(world: World, start: datetime, end: datetime) -> list[tuple[str, int]]:
    """The failing lines of [start, end] with how often each shape was seen: Loki's error patterns that overlap it,
    and the raw lines of its newest tail."""
    out: dict[str, int] = {}
    for p in world.logs.patterns if world.logs else []:
        overlaps = p.first_seen <= end + MARGIN and p.last_seen >= start - MARGIN
        if overlaps and (p.level == "error" or FAILED_CALL.search(p.sample)):
            out[p.sample] = max(out.get(p.sample, 0), p.count)
    for line in world.tail:
        if start - MARGIN <= line.time <= end + MARGIN and (line.level == "error" or FAILED_CALL.search(line.line)):
            out.setdefault(line.line, 1)
    return sorted(out.items(), key=lambda kv: -kv[1])


def detect(world: World) -> list[Verdict]:
    episodes = [(s, e) for s in (world.signals.get("error_rate"), world.signals.get("latency_p99")) if s is not None
                for e in [episode_span(s, world.now)] if e is not None]
    # only alerts inside what was read: an older one is not what this answer can tell about
    read_from = world.logs.start if world.logs else world.now - timedelta(seconds=world.window_seconds)
    alerts = [a for a in world.resolved_alerts if a.fired_at is not None and a.fired_at >= read_from]
    if not episodes and not alerts:
        return []
    if episodes:
        signal, (start, back, peak, peak_at) = episodes[0]
        what = (f"{label(signal.name)} was over its warning level ({value_text(signal, signal.thresholds[0])}) from "  # type: ignore[index]
                f"{clock(start)} to {clock(back)} (about {duration(back - start + timedelta(seconds=1))}), peaking at "
                f"{value_text(signal, peak)} at {clock(peak_at)}; it is back at {value_text(signal)} since "
                f"{clock(back)}")
        evidence = [f"metric {signal.query}: over {value_text(signal, signal.thresholds[0])} from {clock(start)} to "  # type: ignore[index]
                    f"{clock(back)}, peak {value_text(signal, peak)}, now {value_text(signal)}"]
        sources = {"metrics"}
    else:
        start = min(a.fired_at for a in alerts)  # type: ignore[type-var]
        back = max((a.resolved_at or a.fired_at) for a in alerts)  # type: ignore[type-var]
        what = f"an alert fired at {clock(start)} and resolved at {clock(back)}"
        evidence, sources = [], set()
    paged = [a for a in alerts if start - ALERT_MARGIN <= a.fired_at <= back + ALERT_MARGIN]  # type: ignore[operator]
    lines = _lines(world, start, back)
    texts = {line for line, _ in lines}
    named = [(h, p) for h, p, _, line in failing_dependencies(world) if line in texts]
    # the name a person knows it by: a hostname over the usual name of a bare address's port
    dependency = next((d for d in named if "." in d[0]), named[0] if named else None)
    said = ""
    if lines:
        said = "; then the logs said " + "; ".join(f"“{short(line, 160)}”" + (f" ×{n}" if n > 1 else "")
                                                  for line, n in lines[:2])
        evidence += [f"log (Loki, {clock(start)}–{clock(back)}): {short(line, 300)}" for line, _ in lines[:2]]
        sources.add("logs")
    if dependency is not None:
        host, port = dependency
        said += f" — its calls to {host}{':' + port if port else ''} failed then, and succeed now"
    for alert in paged:
        said += (f"; alert {alert.name} ({alert.severity}) fired at {clock(alert.fired_at)}"  # type: ignore[arg-type]
                 + (f" and resolved at {clock(alert.resolved_at)}" if alert.resolved_at else ""))
        evidence.append(f"control plane alert {alert.id}: {alert.status}"
                        + (f", {short(alert.message, 160)}" if alert.message else ""))
        sources.add("control_plane")
    return [Verdict(
        family="episode",
        cause=f"the episode of {clock(start)}–{clock(back)}" + (f" (failing calls to {dependency[0]})" if dependency
                                                                  else ""),
        title=f"Over since {clock(back)}: {what}{said}",
        evidence=evidence,
        severity="info",
        current=False,
        sources=sources,
        subjects={dependency[0]} if dependency else set(),
    )]


RULE = Rule("episode", 95, ("error rate / latency over the window", "logs", "resolved alerts"), detect,
            "An episode that is over: when the error rate or latency was bad, for how long, what the logs said then, "
            "the alert that fired and resolved")
