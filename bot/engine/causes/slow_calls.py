"""Slow downstream calls read from logs, with the durations they report."""
from __future__ import annotations

import re

from bot.engine.causes.base import SLOW, GC_PAUSE, Plan, Rule, Verdict, World, short

DURATION = re.compile(r"(?i)(?:took|duration|elapsed|latency|in|after)\W{0,3}(?P<n>\d+(?:\.\d+)?)\s?(?P<u>ms|s|sec|seconds)\b")
SLOW_LINE = re.compile(r"(?i)slow|took|duration|elapsed|latency")


def _seconds(n: str, unit: str) -> float:
    return float(n) / 1000 if unit.lower() == "ms" else float(n)


def detect(world: World) -> list[Verdict]:
    out = []
    slow = [(w, line, _seconds(m.group("n"), m.group("u"))) for w, line in world.log_lines()
            # a garbage-collection pause is the process stopping, not a call waiting on a dependency
            if SLOW_LINE.search(line) and not GC_PAUSE.search(line) for m in [DURATION.search(line)] if m]
    slow = [s for s in slow if s[2] >= 1.0]
    if slow:
        durations = sorted(d for _, _, d in slow)
        where, line, _ = max(slow, key=lambda s: s[2])
        out.append(Verdict(
            "slow_calls", f"slow downstream calls taking {durations[0]:g}–{durations[-1]:g} s",
            f"Slow calls in the logs: {len(slow)} line(s) with durations {durations[0]:g}–{durations[-1]:g} s",
            [f"log ({where}): {short(line, 300)}"], "warning",
            plans=[Plan("Look at the slow dependency named in these lines (its load, locks, missing index); add a "
                        "timeout so callers fail fast; a restart cannot make it faster")],
            sources={"logs"}))
    return out


RULE = Rule("slow_calls", 57, ("logs",), detect, "Slow downstream calls from logs, with their durations",
            explains=(SLOW,),
            impact=("latency_p99",))
