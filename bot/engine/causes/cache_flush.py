"""A cache the service reads through was emptied (FLUSHALL, FLUSHDB, a purge) just before its calls went bad: every
read misses at once and goes to the database behind it (a thundering herd), which runs out of connections or CPU
until the cache has refilled. Read from the audit log of the hosts the pods are configured to reach, the
cache-miss and database-overload lines of the logs, and the error rate and latency."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.engine.causes.base import ERRORS, SLOW, Rule, Verdict, World, short
from bot.engine.causes.episode import episode_span
from bot.engine.text import ago, clock, duration
from tools.control_plane import AuditLog

# How an operation that empties a cache reads in an audit record (a command, a script, an API call).
FLUSH = re.compile(r"(?i)\bFLUSH(?:ALL|DB)\b|\bflush_all\b|\bcache\W+(?:flush|purge|clear|invalidat|wipe)\w*"
                   r"|\b(?:flush|purge|clear|invalidat|wipe)\w*\W+(?:\w+\W+){0,2}?cache\b")
# A read that missed the cache; a database (or its pool) that has no connection left.
MISS = re.compile(r"(?i)cache miss|\bmiss(?:es)? rate|\bcache\W+(?:\w+\W+){0,2}?miss")
OVERLOAD = re.compile(r"(?i)too many (?:clients|connections)|remaining connection slots|max_connections|"
                      r"connection limit|could not acquire (?:a )?connection|pool (?:is )?exhausted")
# The trouble must begin this soon after the flush to be its doing.
FOLLOWS = timedelta(minutes=10)


def _text(entry: AuditLog) -> str:
    return f"{entry.action} {entry.resource_name} " + " ".join(
        f"{k} {v.get('to') if isinstance(v, dict) else v}" for k, v in (entry.changes or {}).items())


def _command(entry: AuditLog) -> str:
    """The command as recorded (`redis-cli -h catalog-cache FLUSHALL`), else the action."""
    for value in (entry.changes or {}).values():
        to = value.get("to") if isinstance(value, dict) else value
        if isinstance(to, str) and FLUSH.search(to):
            return to
    return f"{entry.action} on {entry.resource_name}"


def _trouble(world: World) -> tuple[datetime, datetime | None] | None:
    """(start, back) of the episode of bad calls, back None while they are still bad now."""
    for key in ("latency_p99", "error_rate"):
        signal = world.signals.get(key)
        if signal is None:
            continue
        episode = episode_span(signal, world.now)
        if episode is not None:
            return episode[0], episode[1]
        if signal.health in ("warning", "critical") and signal.thresholds and signal.points:
            over = [p for p in signal.points if p.value >= signal.thresholds[0]]
            if over:
                return over[0].time, None
    return None


def detect(world: World) -> list[Verdict]:
    flushes = sorted((a for a in world.dependency_audit if FLUSH.search(_text(a))), key=lambda a: a.timestamp,
                     reverse=True)
    trouble = _trouble(world)
    if not flushes or trouble is None:
        return []
    start, back = trouble
    flush = next((a for a in flushes if timedelta(minutes=-2) <= start - a.timestamp <= FOLLOWS), None)
    if flush is None:
        return []
    who = flush.username or flush.user_id or "someone"
    cache = flush.resource_name or "the cache"
    misses = world.find_lines(MISS)
    overloads = world.find_lines(OVERLOAD)
    evidence = [f"audit log {flush.id}: {flush.action} by {who} at {clock(flush.timestamp)}: {short(_command(flush))}"]
    evidence += [f"log ({where}): {short(line, 300)}" for where, line, _ in (misses[:1] + overloads[:1])]
    said = (f"{who} ran `{short(_command(flush), 80)}` on {cache} at {clock(flush.timestamp)} "
            f"({ago(flush.timestamp, world.now)})")
    herd = ", so every read missed the empty cache and went to the database at once (a thundering herd)"
    if misses:
        herd += f": “{short(misses[0][1], 140)}”"
    if overloads:
        herd += f"; the database ran out of connections: “{short(overloads[0][1], 140)}”"
    reasons = [("A rollout or a restart", f"the calls turned bad within "
                                          f"{duration(abs(start - flush.timestamp))} of the flush of {cache}, and "
                                          "no change to the service itself explains it")]
    now = (f"The calls recovered as the cache refilled (back to normal since {clock(back)}): nothing to do now; next "
           "time flush selectively or warm the cache first") if back is not None else (
        "The calls have not recovered yet: the cache is still refilling")
    return [Verdict(
        family="cache_flush",
        cause=f"the flush of {cache} by {who} at {clock(flush.timestamp)} (cache misses overloading the database)",
        title=f"{said}{herd}. {now}",
        evidence=evidence,
        severity="info" if back is not None else "warning",
        current=back is None,  # recovered: said as what happened, not as a fault now
        ruled_out=reasons,
        sources={"control_plane", "logs", "metrics"},
        subjects={cache},
    )]


RULE = Rule("cache_flush", 56, ("audit log of the hosts the pods are configured to reach", "logs (cache misses, "
                                "database connections)", "error rate / latency"), detect,
            "A cache the service reads through emptied (FLUSHALL, purge) just before its calls went bad: misses "
            "overloading the database (thundering herd), recovered as it refilled or not yet", explains=(ERRORS, SLOW))
