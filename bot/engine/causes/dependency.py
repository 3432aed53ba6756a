"""A named dependency refusing or timing out, read from logs — followed one hop: a Service of the cluster, a service
of the catalog, or a control-plane resource (a stopped database) is named with its state."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, SLOW, Plan, Rule, Verdict, World, name, short

FAILED_CALL = re.compile(
    r"(?i)connection refused|refused|timed out|timeout|can't connect|cannot connect|could not connect|"
    r"unable to connect|no available connection|unreachable|connection reset|deadline exceeded|\b50[234]\b|"
    r"circuit.?breaker|connect failed|connection failed|connection to \S+ failed|bad gateway|service unavailable|"
    r"gateway timeout")
# the names a failing call gives its target, most telling first
TARGETS = [re.compile(p, re.IGNORECASE) for p in (
    r"https?://(?P<host>[A-Za-z][\w.-]*)(?::(?P<port>\d+))?",
    r"(?:server on|connect(?:ing|ion)? to|tried:|calling|call to|request to|upstream|dial tcp|host=|"
    r"failed to connect to)\s*[\"'`(]?(?P<host>[A-Za-z][\w-]*(?:\.[\w-]+)*)(?::(?P<port>\d+))?",
    # Go and many clients prefix the error with the callee: 'redis: dial tcp …', 'checkout: 502 Bad Gateway'
    r"(?:^|[\s(])(?P<host>[A-Za-z][\w.-]*[A-Za-z0-9]):\s+(?:\d{3}\b|dial |connect|read |write |EOF|i/o timeout)",
    r"(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):(?P<port>\d{2,5})",
)]
# 'Target host: prod-db, port: 3333', 'host=prod-db port=3333'
HOST_PORT = re.compile(r"(?i)\bhost\W{1,3}(?P<host>[A-Za-z][\w.-]*)[,;\s]+port\W{1,3}(?P<port>\d{2,5})")
NOT_HOSTS = {"the", "server", "host", "upstream", "service", "remote", "peer", "backend", "localhost", "database",
             "db", "http", "https", "port", "required", "a", "an", "to", "from", "returned", "returns", "is", "was",
             "failed", "with", "error", "request", "get", "post", "put", "delete", "render", "login", "send", "token",
             "validation", "read", "write", "lookup", "dial", "tcp", "udp", "connect", "warn", "info", "fatal", "caused",
             # what a failure says about its callee, not its name: 'upstream unavailable', 'upstream timed out'
             "unavailable", "unreachable", "down", "timeout", "timed", "failure", "refused", "reset", "closed",
             "busy", "overloaded", "errors", "responded", "response", "connection"}
# a bare address names its dependency by the port it listens on
WELL_KNOWN = {"6379": "redis", "5432": "postgres", "3306": "mysql", "27017": "mongodb", "9092": "kafka",
              "5672": "rabbitmq", "11211": "memcached", "9200": "elasticsearch", "2181": "zookeeper"}


def _named(world: World, line: str) -> list[tuple[str, str | None]]:
    """(host, port) every target pattern finds in a failing line; an address becomes its Service or its port's
    usual name."""
    services = {(s.get("spec") or {}).get("clusterIP"): name(s) for s in world.snap.items("services")} \
        if world.snap else {}
    known = world.known | set(services.values())
    out = []
    for pattern in TARGETS:
        for m in pattern.finditer(line):
            groups = m.groupdict()
            if groups.get("ip"):
                host = services.get(groups["ip"]) or WELL_KNOWN.get(groups["port"] or "")
                if host:
                    out.append((host, groups["port"]))
                continue
            host = groups["host"].rstrip(".")
            if host.lower() == world.service.lower() or len(host) < 2:
                continue
            if host.lower() not in NOT_HOSTS or host.split(".")[0] in known:  # a Service may be called "backend"
                out.append((host, groups.get("port")))
    return out


def failing_dependencies(world: World) -> list[tuple[str, str | None, str, str]]:
    """(host, port, where, line) of failed calls, the most often named first (a name the cluster or the catalog
    knows before one it does not); a host named next to the failures ('Target host: prod-db, port: 3333') counts
    as theirs."""
    failing = world.find_lines(FAILED_CALL)
    if not failing:
        return []
    known = world.known | ({name(s) for s in world.snap.items("services")} if world.snap else set()) | {
        r.name for r in world.resources}

    def knows(host: str) -> bool:
        return host.split(".")[0] in known

    hits: dict[str, list[tuple[str, str | None, str, str]]] = {}
    places = {where for where, _, _ in failing}
    for where, line in world.log_lines():
        if where not in places:
            continue
        for match in HOST_PORT.finditer(line):
            hits.setdefault(match.group("host"), []).append((match.group("host"), match.group("port"), where, line))
    for where, line, _ in failing:
        named = _named(world, line)
        if named:  # the most host-like name of the line: 'server on db-1.example.com' over 'connect to MySQL'
            host, port = max(named, key=lambda hp: (knows(hp[0]), hp[1] is not None, "." in hp[0], "-" in hp[0]))
            hits.setdefault(host, []).append((host, port, where, line))
    ranked = sorted(hits.values(), key=lambda v: (knows(v[0][0]), any(port for _, port, _, _ in v), len(v)),
                    reverse=True)
    out = []
    for found in ranked:
        with_port = next((f for f in found if f[1]), found[0])
        failing_line = next(((h, p, w, line) for h, p, w, line in found if FAILED_CALL.search(line)), None)
        line_of = failing_line or next(((with_port[0], with_port[1], w, line) for w, line, _ in failing
                                        if w == with_port[2]), with_port)
        out.append((with_port[0], with_port[1], line_of[2], line_of[3]))
    return out


def follow(world: World, host: str) -> tuple[str | None, list[str]]:
    """What the dependency is, one hop on: ('the database promotions-db is stopped', evidence)."""
    first = host.split(".")[0]
    for resource in world.resources:
        if resource.name in (host, first) or host in str(resource.metadata.get("endpoint", "")):
            state = next((str(v) for k, v in resource.metadata.items() if k.endswith("status") or k == "state"),
                         resource.status)
            what = f"{resource.type} {resource.name}" + (f" ({resource.description})" if resource.description else "")
            return (f"{resource.type} {resource.name} is {state}",
                    [f"control-plane resource {resource.id} {resource.name}: type {resource.type}, status "
                     f"{resource.status}" + "".join(f", {k} {v}" for k, v in resource.metadata.items()
                                                    if k.endswith("status") or k == "state") + f"; {what}"])
    services = {name(s) for s in world.snap.items("services")} if world.snap else set()
    if first in services:
        return (f"{first} is a Service of {world.namespace}: diagnose it too (“diagnose {first}”)",
                [f"service {world.namespace}/{first} exists"])
    if first in world.known:
        return (f"{first} is a known service: diagnose it too (“diagnose {first}”)", [])
    return None, []


def detect(world: World) -> list[Verdict]:
    found = failing_dependencies(world)
    if not found or world.calls_healthy() and world.pods_fine():
        return []
    host, port, where, line = found[0]
    target = f"{host}:{port}" if port else host
    state, more = follow(world, host)
    calls = [s for s in (world.signals.get("error_rate"), world.signals.get("latency_p99"))
             if s is not None and s.health in ("warning", "critical")]
    severity = "critical" if any(s.health == "critical" for s in calls) else "warning"
    kind = "refuses connections" if re.search(r"(?i)refused|no available connection", line) else (
        "times out" if re.search(r"(?i)time", line) else "fails")
    evidence = [f"log ({where}): {short(line, 300)}"] + more
    evidence += [f"metric {s.query}: {s.value:.3g} ({s.health})" for s in calls if s.value is not None]
    return [Verdict(
        family="dependency",
        cause=f"its dependency {target}, which {kind}" + (f" ({state})" if state else "") + f": “{short(line, 200)}”",
        title=f"Calls to {target} fail: it {kind}" + (f"; {state}" if state else ""),
        evidence=evidence,
        severity=severity,
        ruled_out=[r for r in (world.pods_fine(),) if r],
        plans=[Plan((f"Bring {host.split('.')[0]} back ({state})" if state and "diagnose" not in state else
                     f"Diagnose {host.split('.')[0]}: {world.service}'s errors are failed calls to it (ask “diagnose "
                     f"{host.split('.')[0]}”)") + f"; restarting {world.service} cannot help")],
        sources={"logs"} | ({"metrics"} if calls else set()) | ({"control_plane"} if more else set()),
        subjects={host},
    )]


RULE = Rule("dependency", 55, ("logs", "services", "control-plane resources", "error rate / latency"), detect,
            "A named dependency refusing or timing out, followed one hop (Service, catalog, control-plane resource)",
            explains=(ERRORS, SLOW))
