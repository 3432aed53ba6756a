"""Memory that grows steadily toward its limit, read from the application's own heap/memory log lines."""
from __future__ import annotations

import re

from bot.engine.causes.base import Plan, Rule, Verdict, World, short

HEAP = re.compile(r"(?i)(?:heap|memory|rss)[^\n]{0,40}?(?P<n>\d+(?:\.\d+)?)\s?(?P<u>[KMG]i?B)\b")
UNIT = {"KB": 1 / 1024, "KiB": 1 / 1024, "MB": 1, "MiB": 1, "GB": 1024, "GiB": 1024}


def detect(world: World) -> list[Verdict]:
    out = []
    # readings of one source in time order: the newest raw lines, else a failed run's output
    lines = [(f"Loki, {t.labels.get('pod') or world.service}", t.line) for t in world.tail] or [
        (key, line) for key, text in world.pod_logs.items() for line in text.splitlines()]
    heap = [(w, line, float(m.group("n")) * UNIT.get(m.group("u"), 1)) for w, line in lines
            for m in [HEAP.search(line)] if m]
    if len(heap) >= 3 and heap[-1][2] > 2 * heap[0][2] and all(b[2] >= a[2] for a, b in zip(heap, heap[1:], strict=False)):
        out.append(Verdict(
            "memory_leak", f"memory growing steadily ({heap[0][2]:g} → {heap[-1][2]:g} MiB): a leak",
            f"Memory grows in the logs: {heap[0][2]:g} MiB → {heap[-1][2]:g} MiB over {len(heap)} readings",
            [f"log ({heap[0][0]}): {short(heap[0][1], 200)}", f"log ({heap[-1][0]}): {short(heap[-1][1], 200)}"],
            "warning", plans=[Plan("Take a heap dump and find what grows; raising the limit or restarting only "
                                   "delays the OOM kill")], sources={"logs"}))
    return out


RULE = Rule("memory_leak", 32, ("logs",), detect, "Memory leak: heap/memory readings in the logs growing steadily")
