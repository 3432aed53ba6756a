"""DNS failures read from logs: the host that does not resolve, whether it is a Service of the namespace, where
the name comes from (a ConfigMap), and whether the cluster DNS itself is healthy."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, Plan, Rule, Verdict, World, name, short

HOST = re.compile(
    r"Could not resolve host:?\s*(?P<a>[\w.-]+)|Failed to resolve '(?P<b>[^']+)'|lookup (?P<c>[\w.-]+)(?: on [\d.:]+)?: "
    r"no such host|UnknownHostException:?\s*(?P<d>[\w.-]+)|getaddrinfo (?:ENOTFOUND|EAI_AGAIN) (?P<e>[\w.-]+)|"
    r"host='(?P<f>[^']+)'[^\n]*(?:NameResolution|Name or service not known|Temporary failure in name resolution)|"
    r"lookup (?P<g>[\w.-]+) on [\d.:\[\]]+: (?:read udp \S+: )?(?:i/o timeout|server misbehaving|no such host)",
    re.IGNORECASE)
DNS_ERROR = re.compile(r"(?i)NameResolutionError|Name or service not known|Temporary failure in name resolution|"
                       r"no such host|NXDOMAIN|Could not resolve host|UnknownHostException|ENOTFOUND|EAI_AGAIN|"
                       r"Failed to resolve|lookup \S+ on \S+: (?:read udp \S+: )?i/o timeout|server misbehaving")


def dns_hosts(world: World) -> list[tuple[str, str, str]]:
    """(host, where, line) of log lines that say a name did not resolve."""
    out = []
    for where, line, _ in world.find_lines(DNS_ERROR):
        match = HOST.search(line)
        host = next((g for g in match.groups() if g), None) if match else None
        out.append((host or "?", where, line))
    return out


def config_source(world: World, host: str) -> str | None:
    """'ConfigMap meme-generator-config key MEME_API_URL (http://memcom:5000/)' when a referenced ConfigMap has it."""
    for cm_name, cm in (world.snap.configmaps if world.snap else {}).items():
        for key, value in ((cm or {}).get("data") or {}).items():
            if re.search(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", str(value)):
                return f"ConfigMap {cm_name} key {key} ({short(str(value), 80)})"
    return None


def dns_server(world: World) -> tuple[str, str] | None:
    """The cluster DNS as a ruled-out cause when its deployments are all ready."""
    deployments = world.snap.dns if world.snap else None
    if not deployments:
        return None
    parts = [f"{name(d)} {(d.get('status') or {}).get('readyReplicas', 0)}/{(d.get('spec') or {}).get('replicas', 1)}"
             for d in deployments]
    healthy = all((d.get("status") or {}).get("readyReplicas", 0) >= (d.get("spec") or {}).get("replicas", 1)
                  for d in deployments)
    return ("CoreDNS", f"the cluster DNS is healthy: {', '.join(parts)} ready in kube-system") if healthy else None


def detect(world: World) -> list[Verdict]:
    found = dns_hosts(world)
    if not found or world.calls_healthy() and world.pods_fine():
        return []
    host, where, line = found[0]
    count = len(found)
    short_name = host.split(".")[0]
    services = {name(s) for s in world.snap.items("services")} if world.snap else set()
    evidence = [f"log ({where}): {short(line, 300)}"]
    reasons = []
    source = config_source(world, host)
    if source:
        evidence.append(f"{source} sets the address")
        reasons.append(f"the address comes from the app's config, {source}")
    if world.snap and world.snap.described("services") and "." not in host and short_name not in services:
        reasons.append(f"there is no Service {short_name} in {world.namespace}")
    server = dns_server(world)
    ruled = [r for r in (server, world.pods_fine()) if r]
    down = [d for d in (world.snap.dns or [] if world.snap else [])
            if (d.get("status") or {}).get("readyReplicas", 0) < (d.get("spec") or {}).get("replicas", 1)]
    if down:
        reasons.insert(0, "the cluster DNS is down (" + ", ".join(
            f"{name(d)} {(d.get('status') or {}).get('readyReplicas', 0)}/{(d.get('spec') or {}).get('replicas', 1)} "
            "ready in kube-system" for d in down) + ")")
    if down:
        fix = "Bring the cluster DNS (kube-system) back: every name lookup fails until it is"
    else:
        fix = (f"Fix the address in {source.split(' (')[0]}" if source else f"Fix the host name {host} the app uses") + (
            " (point it at an existing Service or a resolvable name); a restart cannot help")
    return [Verdict(
        family="dns",
        cause=f"DNS resolution failing for {host}" + (f": {'; '.join(reasons)}" if reasons else ""),
        title=f"Name resolution fails: {host} cannot be resolved ({count} log line(s))"
              + (f"; {'; '.join(reasons)}" if reasons else ""),
        evidence=evidence,
        severity="critical",
        ruled_out=ruled,
        plans=[Plan(fix)],
        sources={"logs"} | ({"kubernetes"} if source or reasons else set()),
        subjects={host},
    )]


RULE = Rule("dns", 45, ("logs", "services", "configmaps", "cluster DNS deployments"), detect,
            "DNS failures from logs: the unresolved host, missing Service, the ConfigMap that sets it, CoreDNS health",
            explains=(ERRORS,))
