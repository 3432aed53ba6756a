"""Memory that grows steadily toward its limit, read from the application's own heap/memory log lines."""
from __future__ import annotations

import re

from bot.engine.causes.base import SLOW, Plan, Query, Rule, Verdict, World, short

_WORKING_SET = ('max by (container) (container_memory_working_set_bytes{{namespace="{namespace}",'
                'pod=~"{workload}-.*",container!="",container!="POD"}}')
NOW = Query("memory_now", _WORKING_SET + ")")
BEFORE = Query("memory_30m_ago", _WORKING_SET + " offset 30m)")

HEAP = re.compile(r"(?i)(?:heap|memory|rss)[^\n]{0,40}?(?P<n>\d+(?:\.\d+)?)\s?(?P<u>[KMG]i?B)\b")
MIN_READINGS = 4  # a trend, not two samples
GROWTH = 1.25  # and it went somewhere: a quarter up at least, never down
UNIT = {"KB": 1 / 1024, "KiB": 1 / 1024, "MB": 1, "MiB": 1, "GB": 1024, "GiB": 1024}


def growth(world: World) -> tuple[str, float, float] | None:
    """(container, MiB 30 minutes ago, MiB now) of a container whose working set grew by half or more."""
    now, before = world.metrics.get(NOW.key), world.metrics.get(BEFORE.key)
    if now is None or before is None:
        return None
    then = {s.labels.get("container", "?"): s.samples[-1].value for s in before.series if s.samples}
    for series in now.series:
        container = series.labels.get("container", "?")
        if series.samples and container in then and series.samples[-1].value >= 1.5 * then[container] > 0:
            return container, then[container] / 2**20, series.samples[-1].value / 2**20
    return None


def detect(world: World) -> list[Verdict]:
    out = []
    grown = growth(world)
    if grown is not None:
        container, before, after = grown
        out.append(Verdict(
            "memory_leak", f"memory of {container} growing steadily ({before:.0f} → {after:.0f} MiB in 30 min): a leak",
            f"Memory of {container} grows: {before:.0f} MiB 30 min ago, {after:.0f} MiB now",
            [f"metric {NOW.promql.format(namespace=world.namespace, workload=world.snap.name if world.snap else world.service)}"
             f" now vs offset 30m"], "warning",
            plans=[Plan("Take a heap dump and find what grows; raising the limit or restarting only delays the OOM "
                        "kill")], sources={"metrics"}))
        return out
    # readings of one source at a time, in time order: the newest raw lines, each failed run's output
    by_pod: dict[str, list[tuple[str, str]]] = {}
    for t in world.tail:
        where = f"Loki, {t.labels.get('pod') or world.service}"
        by_pod.setdefault(where, []).append((where, t.line))
    sources = list(by_pod.values()) + [[(key, line) for line in text.splitlines()]
                                       for key, text in world.pod_logs.items()]
    for lines in sources:
        heap = [(w, line, float(m.group("n")) * UNIT.get(m.group("u"), 1)) for w, line in lines
                for m in [HEAP.search(line)] if m]
        if len(heap) >= MIN_READINGS and heap[-1][2] >= GROWTH * heap[0][2] and all(
                b[2] >= a[2] for a, b in zip(heap, heap[1:], strict=False)):
            out.append(Verdict(
                "memory_leak", f"memory growing steadily ({heap[0][2]:g} → {heap[-1][2]:g} MiB): a leak",
                f"Memory grows in the logs: {heap[0][2]:g} MiB → {heap[-1][2]:g} MiB over {len(heap)} readings",
                [f"log ({heap[0][0]}): {short(heap[0][1], 200)}", f"log ({heap[-1][0]}): {short(heap[-1][1], 200)}"],
                "warning", plans=[Plan("Take a heap dump and find what grows; raising the limit or restarting only "
                                       "delays the OOM kill")], sources={"logs"}))
            break
    return out


RULE = Rule("memory_leak", 32, ("logs", "cAdvisor working set"), detect,
            "Memory leak: working set or heap readings in the logs growing steadily", (NOW, BEFORE), explains=(SLOW,))
