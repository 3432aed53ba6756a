"""Connection-pool exhaustion read from logs: every connection in use (used/max), requests waiting for one."""
from __future__ import annotations

import re

from bot.engine.causes.base import Plan, Rule, Verdict, World, short

POOL = re.compile(r"(?i)pool (?:is )?exhausted|connection pool.*(?:full|exhausted|timeout)|(?:active|in use|used)\W+"
                  r"(?P<used>\d+)\s*/\s*(?P<max>\d+)|(?P<used2>\d+)\s*/\s*(?P<max2>\d+) connections|too many connections|"
                  r"timeout waiting for (?:a )?(?:connection|idle object)|unable to acquire (?:a )?connection")


def detect(world: World) -> list[Verdict]:
    out = []
    pool = world.find_lines(POOL)
    if pool:
        where, line, m = pool[0]
        used = m.group("used") or m.group("used2")
        top = m.group("max") or m.group("max2")
        full = f" ({used}/{top} in use)" if used and top else ""
        out.append(Verdict(
            "pool_exhaustion", f"connection-pool exhaustion{full}: every connection is in use, new requests wait",
            f"Connection pool exhausted{full}: {len(pool)} log line(s)", [f"log ({where}): {short(line, 300)}"],
            "critical" if not world.calls_healthy() else "warning",
            plans=[Plan("Find what holds connections (slow queries, leaks: connections not returned) before raising "
                        "the pool size; a restart frees them only until they are exhausted again")],
            sources={"logs"}))
    return out


RULE = Rule("pool_exhaustion", 52, ("logs",), detect, "Connection-pool exhaustion from logs (used/max, waits for a connection)")
