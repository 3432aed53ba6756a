"""File-descriptor exhaustion: a process at its open-files limit (`process_open_fds` = `process_max_fds`, the nofile
ulimit) cannot accept a connection, open a file or dial out — "too many open files" (EMFILE). When the count climbs
steadily while traffic is flat, descriptors leak (sockets or response bodies never closed): the exhausted pods stay
broken until restarted, which is the mitigation; the fix is the leak (or a higher limit buys time)."""
from __future__ import annotations

import re

from bot.answer import Action
from bot.engine.causes.base import ERRORS, Plan, Query, Rule, Verdict, World, short

_SELECTOR = '{{namespace="{namespace}",pod=~"{workload}-.*"}}'
OPEN = Query("open_fds", f"max by (pod) (process_open_fds{_SELECTOR})")
LIMIT = Query("max_fds", f"max by (pod) (process_max_fds{_SELECTOR})")
# descriptors per hour over the last three hours, per pod: a leak climbs, a busy pool goes up and down
PER_HOUR = Query("open_fds_per_hour", f"max by (pod) (deriv(process_open_fds{_SELECTOR}[3h])) * 3600")
EMFILE = re.compile(r"(?i)too many open files|\bEMFILE\b")
FULL = 0.95  # of the limit: the next burst of connections fails
LEAKING = 1.0  # descriptors per hour that never come back


def _by_pod(world: World, query: Query) -> dict[str, float]:
    result = world.metrics.get(query.key)
    return {s.labels.get("pod", "?"): s.samples[-1].value for s in (result.series if result else []) if s.samples}


def detect(world: World) -> list[Verdict]:
    lines = world.find_lines(EMFILE)
    open_fds, limits, per_hour = _by_pod(world, OPEN), _by_pod(world, LIMIT), _by_pod(world, PER_HOUR)
    full = sorted(p for p, n in open_fds.items() if limits.get(p) and n >= FULL * limits[p])
    if not lines and not full:
        return []
    limit = max(limits.values()) if limits else None
    evidence = []
    if lines:
        where, line, _ = lines[-1]
        evidence.append(f"log ({where}): {short(line, 300)}")
    if open_fds and limits:
        evidence.append("metric process_open_fds / process_max_fds: " + ", ".join(
            f"{p} {open_fds[p]:.0f}/{limits.get(p, 0):.0f}" for p in sorted(open_fds)))
    where_full = (f"{len(full)} of {len(open_fds)} pods ({', '.join(full)}) have used all {limit:.0f} file descriptors "
                  "they may open (process_open_fds = process_max_fds)") if full and limit else \
        "its processes hit their open-files limit"
    growing = {p: r for p, r in per_hour.items() if r >= LEAKING}
    leak = bool(open_fds) and len(growing) == len(open_fds)
    ruled_out = []
    rate = world.signals.get("request_rate")
    flat = rate is not None and rate.value and rate.baseline and 0.8 <= rate.value / rate.baseline <= 1.25
    if leak:
        pace = sum(growing.values()) / len(growing)
        evidence.append(f"metric deriv(process_open_fds[3h]): +{pace:.0f} descriptors an hour per pod, never down")
        rest = [p for p in open_fds if p not in full and limits.get(p)]
        soon = "; ".join(f"{p} at {open_fds[p]:.0f} reaches the limit in about "
                         f"{(limits[p] - open_fds[p]) / growing[p]:.0f} h" for p in rest)
        what = (f"a file-descriptor leak: descriptors climb steadily (+{pace:.0f} an hour per pod"
                + (", with traffic flat" if flat else "") + ") and are never released")
        if soon:
            evidence.append(soon)
    else:
        what = "file-descriptor exhaustion"
    if flat and rate is not None:
        ruled_out.append(("Traffic surge", "requests are as many as an hour ago: the descriptors are not taken by load"))
    plans = [Plan(f"Restart the exhausted pods of {world.service} ({', '.join(full) or 'those logging too many open files'}) "
                  "to free their descriptors: the mitigation, not the fix",
                  Action(kind="restart", target=f"{world.namespace}/{world.snap.name if world.snap else world.service}")),
             Plan("Find the leak (sockets, files or HTTP response bodies never closed) and fix it; raising the nofile "
                  f"limit above {limit:.0f} only buys time" if leak and limit else
                  "Raise the open-files (nofile) limit of the container, or lower the connections it keeps")]
    signal = world.signals.get("error_rate")
    return [Verdict(
        family="fd_exhaustion",
        cause=f"{what}: {where_full}, so accept, open and dial fail with “too many open files”",
        title=f"“Too many open files”: {where_full}" + (f" ({len(lines)} log line(s))" if lines else ""),
        evidence=evidence,
        severity="critical" if signal is not None and signal.health == "critical" or full else "warning",
        ruled_out=ruled_out,
        plans=plans,
        sources={"logs"} | ({"metrics"} if open_fds else set()),
        subjects=set(full),
    )]


RULE = Rule("fd_exhaustion", 33, ("logs", "process_open_fds / process_max_fds"), detect,
            "File descriptors exhausted (“too many open files”, process_open_fds at process_max_fds): a leak when "
            "they climb with flat traffic; restart the exhausted pods, then fix the leak",
            queries=(OPEN, LIMIT, PER_HOUR), explains=(ERRORS,))
