"""Failures that were retried and delivered: "failed to flush chunk …, retry in 9 seconds" followed by "… succeeded
at retry 1", with the client's own counters of failed retries and dropped records at zero. That answers "are we
losing data?" with no: the warnings are noise, nothing is lost. A retry that gave up, or a dropped-records counter
that grows, is data loss and is said as such."""
from __future__ import annotations

import re

from bot.engine.causes.base import Plan, Query, Rule, Verdict, World, short

RETRY_OK = re.compile(r"(?i)succeeded (?:at|after|on) (?:retry|attempt)|retry (?:#?\d+ |attempt )?succeeded|"
                      r"succeeded after \d+ (?:retries|retry|attempts)|delivered (?:at|after|on) retry|"
                      r"recovered after \d+ retr")
RETRY_FAILED = re.compile(r"(?i)retries exhausted|retry limit|giving up|gave up|max(?:imum)? retries (?:reached|exceeded)|"
                          r"(?:dropp|discard)(?:ed|ing) (?:the )?(?:chunk|records?|events?|messages?|logs?|data)|"
                          r"could not be delivered|not retrying")
# the clients' own counts of what was lost (fluent-bit's retries_failed and dropped_records, and alike), now and an
# hour ago: their difference is what was lost in the last hour (by name: increase() would drop the names apart)
_LOST = ('sum by (__name__) ({{__name__=~".+_(retries_failed|dropped_records|records_dropped)_total",'
         'namespace="{namespace}"}}{offset})')
LOST = Query("lost_records", _LOST.replace("{offset}", ""))
LOST_BEFORE = Query("lost_records_before", _LOST.replace("{offset}", " offset 1h"))


def _lost(world: World) -> float | None:
    """What the loss counters grew by in the last hour (a reset counts from zero); None without such counters."""
    now, before = world.metrics.get(LOST.key), world.metrics.get(LOST_BEFORE.key)
    if now is None or not now.series:
        return None
    earlier = {s.labels.get("__name__"): s.samples[-1].value for s in (before.series if before else []) if s.samples}
    grown = [s.samples[-1].value - earlier.get(s.labels.get("__name__"), 0.0) for s in now.series if s.samples]
    return sum(g if g >= 0 else 0.0 for g in grown)


def nothing_lost(world: World) -> bool:
    """Failures in the logs were retried and succeeded, none gave up, and the loss counters (if any) are zero."""
    lost = _lost(world)
    return bool(world.find_lines(RETRY_OK)) and not world.find_lines(RETRY_FAILED) and not lost


def detect(world: World) -> list[Verdict]:
    delivered = world.find_lines(RETRY_OK)
    if not delivered:
        return []
    gave_up = world.find_lines(RETRY_FAILED)
    lost = _lost(world)
    where, line, _ = delivered[-1]
    evidence = [f"log ({where}): {short(line, 300)}", f"{len(delivered)} log line(s) of a retry that succeeded"]
    if lost is not None:
        evidence.append(f"metric {LOST.promql.format(namespace=world.namespace)}: grew by {lost:g} in the last hour")
    if gave_up or lost:
        how = (f"{lost:g} failed retries or dropped records in the last hour" if lost else
               f"{len(gave_up)} log line(s) of a retry that gave up")
        where, line, _ = gave_up[0] if gave_up else (where, line, None)
        return [Verdict(
            "retries", f"deliveries that failed for good ({how})",
            f"Some deliveries are lost: {how}, although {len(delivered)} retries succeeded",
            evidence + ([f"log ({where}): {short(line, 300)}"] if gave_up else []), "warning",
            plans=[Plan("Find why the destination rejects or times out (its load, its queue) and give the sender "
                        "more retries or buffer; a restart of the sender loses what it buffers")],
            sources={"logs"} | ({"metrics"} if lost is not None else set()))]
    counted = "; failed retries and dropped records: 0 in the last hour" if lost is not None else ""
    return [Verdict(
        "retries", "data loss (failed deliveries)",
        f"Nothing is lost: every failed delivery in the logs was retried and succeeded ({len(delivered)} line(s) like "
        f"“{short(line, 120)}”){counted}", evidence, "info", current=False,
        sources={"logs"} | ({"metrics"} if lost is not None else set()))]


RULE = Rule("retries", 85, ("logs", "failed-retry and dropped-record counters"), detect,
            "Failures retried and delivered (\"succeeded at retry\", 0 failed retries / dropped records): nothing "
            "lost, or what was lost", (LOST, LOST_BEFORE),
            impact=("error_rate",))
