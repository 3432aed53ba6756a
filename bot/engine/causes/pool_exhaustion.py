"""Connection-pool exhaustion read from logs: every connection in use (used/max), requests waiting for one."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, SLOW, Plan, Rule, Verdict, World, short

POOL = re.compile(r"(?i)pool (?:is )?exhausted|connection pool.*(?:full|exhausted|timeout)|too many connections|"
                  r"timeout waiting for (?:a )?(?:connection|idle object)|unable to acquire (?:a )?connection|"
                  r"Connection is not available|\d+\s*/\s*\d+ connections")
# how full it is: 'active=100, max=100', 'total=10, active=10', '100/100 connections', 'in use 50/50'
USAGE = [re.compile(p, re.IGNORECASE) for p in (
    r"(?:active|in use|used|busy)\W{1,3}(?P<used>\d+)\W+(?:max\w*|total|limit|size)\W{1,3}(?P<max>\d+)",
    r"(?:max\w*|total|limit|size)\W{1,3}(?P<max>\d+)\W+(?:active|in use|used|busy)\W{1,3}(?P<used>\d+)",
    r"(?P<used>\d+)\s*/\s*(?P<max>\d+)\s*(?:connections|conns|in use|active)",
    r"(?:active|in use|used|busy)\W{1,3}(?P<used>\d+)\s*/\s*(?P<max>\d+)",
)]


def usage(line: str) -> tuple[str, str] | None:
    for pattern in USAGE:
        match = pattern.search(line)
        if match:
            return match.group("used"), match.group("max")
    return None


def detect(world: World) -> list[Verdict]:
    pool = world.find_lines(POOL)
    if not pool:
        return []
    where, line, _ = pool[0]
    full = next((u for _, l, _ in pool for u in [usage(l)] if u), None)
    shown = f" ({full[0]}/{full[1]} in use)" if full else ""
    return [Verdict(
        "pool_exhaustion", f"connection-pool exhaustion{shown}: every connection is in use, new requests wait",
        f"Connection pool exhausted{shown}: {len(pool)} log line(s)", [f"log ({where}): {short(line, 300)}"],
        "critical" if not world.calls_healthy() else "warning",
        plans=[Plan("Find what holds connections (slow queries, connections not returned) before raising the pool "
                    "size; a restart frees them only until they are exhausted again")],
        sources={"logs"})]


RULE = Rule("pool_exhaustion", 52, ("logs",), detect,
            "Connection-pool exhaustion from logs (used/max, waits for a connection)", explains=(ERRORS, SLOW),
            impact=("error_rate", "latency_p99"))
