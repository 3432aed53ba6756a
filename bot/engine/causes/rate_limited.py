"""An upstream that rate-limits us: it answers 429 Too Many Requests, "rate limit exceeded" or "quota exceeded",
often with a Retry-After. The limit is the provider's, per key or account, not per replica: more replicas make
more calls against the same quota (and more 429s), so scaling out — or raising an HPA's maxReplicas — cannot help.
The fix is fewer calls (backoff honouring Retry-After, caching, batching, lower concurrency) or a higher quota."""
from __future__ import annotations

import re

from bot.engine.causes import retries
from bot.engine.causes.base import ERRORS, Plan, Rule, Verdict, World, condition, name, short
from bot.engine.causes.dependency import NOT_HOSTS, TARGETS

# an upstream refusing for our rate, not a CPU limit's throttling
LIMITED = re.compile(
    r"(?i)\b429\b|too many requests|rate[- ]?limit(?:ed|ing)?\b(?:\s+exceeded)?|quota\b[^.;]{0,60}?\bexceeded|"
    r"exceeded (?:the |your |its )?(?:rate limit|quota)|ThrottlingException|RESOURCE_EXHAUSTED|SlowDown|"
    r"(?:requests?|api|calls?) (?:(?:was|were|is|are|being) )?throttled|RequestLimitExceeded")
# 'quota 3000 requests/minute', 'limit: 50 req/s', 'rate limit of 100 per second'
QUOTA = re.compile(r"(?i)(?:quota|limit)\W{0,3}(?:of\s+)?(?P<n>\d[\d,.]*)\s*(?P<unit>(?:requests?|req|calls?|"
                   r"queries)?\s*(?:/|per\s+)\s*(?:seconds?|sec|s|minutes?|min|m|hours?|h|day))\b")
RETRY_AFTER = re.compile(r"(?i)Retry-After\W{1,3}(?P<s>\d+)")
# 'from api.geocoder.example', 'upstream geocoder rate limited'
FROM_HOST = re.compile(r"(?i)\b(?:from|by|upstream)\s+(?P<host>[A-Za-z][\w-]*(?:\.[\w-]+)*)")
SCALING = re.compile(r"(?i)replica|scal(?:e|ing)|hpa|autoscal|more pods|maxReplicas")


def _host(world: World, line: str) -> str | None:
    for pattern in (TARGETS[0], FROM_HOST, TARGETS[1]):
        for m in pattern.finditer(line):
            host = m.group("host").rstrip(".")
            if host.lower() not in NOT_HOSTS | {"key", "account", "client", "rate", "quota", "user"} \
                    and host.lower() != world.service.lower() and not host.isdigit():
                return host
    return None


def _at_max(world: World) -> str | None:
    """'HPA geo-enricher at maxReplicas 10 and wanting more' when the workload's autoscaler is pinned."""
    snap = world.snap
    for hpa in snap.items("horizontalpodautoscalers") if snap else []:
        spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
        if (spec.get("scaleTargetRef") or {}).get("name") != (snap.name if snap else world.service):
            continue
        limited = condition(hpa, "ScalingLimited")
        if status.get("currentReplicas") == spec.get("maxReplicas") or (limited or {}).get("status") == "True":
            return f"HPA {name(hpa)} at maxReplicas {spec.get('maxReplicas')}"
    return None


def _minority(world: World) -> bool:
    """Whether the rate-limit lines are a small part of the errors: something else fails the requests."""
    patterns = world.logs.patterns if world.logs else []
    total = sum(p.count for p in patterns)
    limited = sum(p.count for p in patterns if LIMITED.search(p.sample))
    limited += sum(1 for line in world.tail if LIMITED.search(line.line) and line.line not in {p.sample for p in patterns})
    return total >= 20 and limited * 10 < total


def detect(world: World) -> list[Verdict]:
    lines = world.find_lines(LIMITED)
    if not lines or retries.nothing_lost(world) or _minority(world):  # retried and delivered, or not what fails
        return []
    texts = [line for _, line, _ in lines]
    hosts = [h for h in (_host(world, t) for t in texts) if h]
    # the most specific name the lines give: a hostname over a bare word ('api.geocoder.example' over 'geocoder')
    host = max(set(hosts), key=lambda h: ("." in h, hosts.count(h))) if hosts else None
    quota = next((m for t in texts for m in [QUOTA.search(t)] if m), None)
    retry = next((m.group("s") for t in texts for m in [RETRY_AFTER.search(t)] if m), None)
    where, line, _ = next(((w, t, m) for w, t, m in lines if QUOTA.search(t) or RETRY_AFTER.search(t)), lines[0])
    limit = (f"its quota of {quota.group('n')} {quota.group('unit').strip()}" if quota else "its rate limit")
    who = host or "an upstream"
    calls = [s for s in (world.signals.get("error_rate"), world.signals.get("latency_p99"))
             if s is not None and s.health in ("warning", "critical")]
    severity = "critical" if any(s.health == "critical" for s in calls) else "warning"
    pinned = _at_max(world)
    asked = bool(SCALING.search(world.question))
    evidence = [f"log ({where}): {short(line, 300)}", f"{len(lines)} log line(s) of rate limiting (429 / quota)"]
    evidence += [f"metric {s.query}: {s.value:.3g} ({s.health})" for s in calls if s.value is not None]
    scaling = ("more replicas will not help: the quota is the provider's, per key, not per replica — more replicas "
               "make more calls against the same quota and get more 429s")
    if pinned:
        scaling = f"{pinned}: " + scaling + "; do not raise maxReplicas for this"
    ruled_out = [("Too few replicas", scaling)] if pinned or asked else []
    ruled_out += [r for r in (world.pods_fine(),) if r]
    return [Verdict(
        family="rate_limited",
        cause=f"{who} rate-limiting it (429 Too Many Requests: {limit} exceeded"
              + (f", Retry-After {retry} s" if retry else "") + ")",
        title=f"{who} answers 429 Too Many Requests: {limit} exceeded ({len(lines)} log line(s))"
              + (f"; {scaling}" if pinned or asked else ""),
        evidence=evidence,
        severity=severity,
        ruled_out=ruled_out,
        plans=[Plan(f"Make fewer calls to {who}: back off and retry after the Retry-After it sends"
                    + (f" ({retry} s)" if retry else "") + ", cache or batch lookups, lower the callers' concurrency; "
                    "or ask the provider for a higher quota. Scaling out or restarting cannot help: more replicas "
                    "only make more calls against the same quota")],
        sources={"logs"} | ({"metrics"} if calls else set()) | ({"kubernetes"} if pinned else set()),
        subjects={host} if host else set(),
    )]


RULE = Rule("rate_limited", 54, ("logs", "horizontalpodautoscalers", "error rate / latency"), detect,
            "Upstream rate limiting (429, quota exceeded, Retry-After): which upstream and quota; more replicas "
            "cannot help", explains=(ERRORS,),
            impact=("error_rate",))
