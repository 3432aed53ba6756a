"""NetworkPolicies that deny the workload's traffic: an egress policy with no rules (DNS blocked too), one that admits
DNS but not the port of a dependency whose calls time out, or ingress admitted only from labels its clients do not
carry."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, SLOW, Plan, Query, Rule, Verdict, World, name, short
from bot.engine.causes.dns import DNS_ERROR, dns_server
from bot.engine.causes.dependency import FAILED_CALL, failing_dependencies

# what a dependency's exporter says about it, by the name its port gives it (dependency.WELL_KNOWN): 1 when it is up
EXPORTER_UP = Query("exporter_up", '{{__name__=~"pg_up|mysql_up|redis_up|mongodb_up|rabbitmq_up|memcached_up|'
                                   'elasticsearch_up|kafka_up"}}')
UP_METRIC = {"postgres": "pg_up", "mysql": "mysql_up", "redis": "redis_up", "mongodb": "mongodb_up",
             "rabbitmq": "rabbitmq_up", "memcached": "memcached_up", "elasticsearch": "elasticsearch_up",
             "kafka": "kafka_up"}
# a dropped packet is never answered: the caller times out (a closed port or a dead host refuses or resets)
TIMED_OUT = re.compile(r"(?i)i/o timeout|timed out|timeout|deadline exceeded")


def _selects(policy: dict, labels: dict[str, str]) -> bool:
    selector = (policy.get("spec") or {}).get("podSelector") or {}
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()) and not selector.get(
        "matchExpressions")


def _allows_dns(policy: dict) -> bool:
    for rule in (policy.get("spec") or {}).get("egress") or []:
        ports = rule.get("ports") or []
        if not ports or any(p.get("port") in (53, "53", "dns") for p in ports):
            return True
    return False


def detect(world: World) -> list[Verdict]:
    if world.snap is None or not world.snap.items("networkpolicies"):
        return []
    pods = world.pods()
    labels = ((pods[0].get("metadata") or {}).get("labels") or {}) if pods else {}
    policies = [p for p in world.snap.items("networkpolicies") if _selects(p, labels)]
    out = []
    dns_lines = world.find_lines(DNS_ERROR)
    call_lines = world.find_lines(FAILED_CALL)
    for policy in policies:
        spec = policy.get("spec") or {}
        types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
        selector = spec.get("podSelector") or {}
        scope = "every pod of the namespace" if not selector.get("matchLabels") else "these pods"
        if "Egress" in types and not _allows_dns(policy) and (dns_lines or call_lines):
            rules = spec.get("egress") or []
            what = "denies all egress" if not rules else "allows egress but not DNS (port 53)"
            line = (dns_lines or call_lines)[0]
            server = dns_server(world)
            out.append(Verdict(
                family="network_policy",
                cause=f"NetworkPolicy {name(policy)}, which {what} for {scope}, so DNS lookups and outbound calls "
                      "fail",
                title=f"NetworkPolicy {name(policy)} {what} ({scope}): DNS queries to kube-dns are blocked, names "
                      "do not resolve",
                evidence=[f"networkpolicy {name(policy)}: policyTypes {', '.join(types)}, egress rules {len(rules)}, "
                          f"podSelector {selector or '{}'}", f"log ({line[0]}): {short(line[1], 300)}"],
                severity="critical",
                ruled_out=([server] if server else []) + [("The called service", "the calls never leave the pod")],
                plans=[Plan(f"Allow egress to kube-dns (UDP/TCP 53) and to the services it calls in NetworkPolicy "
                            f"{name(policy)}; a restart cannot help")],
                sources={"kubernetes", "logs"},
                subjects={name(policy)},
            ))
        ingress = spec.get("ingress")
        if "Ingress" in types and ingress is not None:
            sources = [f for r in ingress for f in r.get("from") or []]
            allowed = [", ".join(f"{k}={v}" for k, v in ((f.get("podSelector") or {}).get("matchLabels") or {}).items())
                       for f in sources if f.get("podSelector")]
            if not ingress or allowed:
                only = "no ingress at all" if not ingress else f"ingress only from pods labelled {' or '.join(allowed)}"
                out.append(Verdict(
                    family="network_policy",
                    cause=f"NetworkPolicy {name(policy)}, which admits {only}",
                    title=f"NetworkPolicy {name(policy)} admits {only} to {scope}: other clients' connections time out",
                    evidence=[f"networkpolicy {name(policy)}: ingress {short(str(ingress), 200)}"],
                    severity="warning",
                    plans=[Plan(f"Add the calling pods' labels to NetworkPolicy {name(policy)}'s ingress.from")],
                    subjects={name(policy)},
                ))
    out += _egress_denied(world, policies)
    out += _denied_by_callee(world, labels)
    return out


def _admits_port(policy: dict, port: str) -> bool:
    """Whether some egress rule of `policy` may let traffic to `port` out (a rule without ports admits every port;
    its peers are not judged here)."""
    return any(not rule.get("ports") or any(str(p.get("port")) == port for p in rule.get("ports") or [])
               for rule in (policy.get("spec") or {}).get("egress") or [])


def _exporter_up(world: World, host: str) -> str | None:
    """'pg_up is 1 (service refunds-db): it is up' when the dependency's exporter says it answers."""
    metric = UP_METRIC.get(host.split(".")[0])
    result = world.metrics.get(EXPORTER_UP.key)
    ups = [s for s in (result.series if result else []) if s.labels.get("__name__") == metric and s.samples]
    if not ups or any(s.samples[-1].value < 1 for s in ups):
        return None
    where = ", ".join(sorted({s.labels.get("service") or s.labels.get("instance") or "" for s in ups} - {""}))
    return f"{metric} is 1" + (f" ({where})" if where else "") + f": {host} itself is up"


def _egress_denied(world: World, policies: list[dict]) -> list[Verdict]:
    """Egress policies that select the pods and admit DNS but no rule for the port a timing-out dependency listens on:
    the connections are dropped silently, so they time out while the dependency itself is up."""
    egress = [p for p in policies if "Egress" in ((p.get("spec") or {}).get("policyTypes") or [])]
    if not egress or not all(_allows_dns(p) for p in egress):
        return []  # without DNS the branch above says it
    for host, port, where, line in failing_dependencies(world):
        if not port or port == "53" or not TIMED_OUT.search(line) or any(_admits_port(p, port) for p in egress):
            continue
        names = ", ".join(name(p) for p in egress)
        up = _exporter_up(world, host)
        allowed = sorted({str(q.get("port")) for p in egress for r in (p.get("spec") or {}).get("egress") or []
                          for q in r.get("ports") or []})
        return [Verdict(
            family="network_policy",
            cause=f"NetworkPolicy {names}, which allows {world.service}'s egress only to port(s) {', '.join(allowed)}, "
                  f"so its connections to {host}:{port} are dropped and time out",
            title=f"NetworkPolicy {names} denies egress from {world.service} to {host}:{port}: no egress rule admits "
                  f"port {port} (only {', '.join(allowed)})",
            evidence=[f"networkpolicy {name(p)}: policyTypes Egress, egress ports "
                      f"{', '.join(sorted({str(q.get('port')) for r in (p.get('spec') or {}).get('egress') or [] for q in r.get('ports') or []})) or 'any'}"
                      for p in egress] + [f"log ({where}): {short(line, 300)}"] + ([f"metric {up}"] if up else []),
            severity="critical",
            ruled_out=[(f"{host} down", (f"{up}; " if up else "") + "the connections time out because the policy "
                        "drops them before they leave the namespace; a dependency that is down refuses them")],
            plans=[Plan(f"Allow egress from {world.service} to {host} port {port} in NetworkPolicy {names} (an egress "
                        f"rule with that port and the dependency's namespace or address), or remove the policy; a "
                        "restart cannot help")],
            sources={"kubernetes", "logs"} | ({"metrics"} if up else set()),
            subjects={name(p) for p in egress} | {host},
        )]
    return []


def _admits(rule_from: list[dict], labels: dict[str, str]) -> bool:
    """Whether ingress `from` entries admit a pod with `labels` of the same namespace."""
    for peer in rule_from:
        selector = peer.get("podSelector")
        if selector is None and peer.get("namespaceSelector") is None and peer.get("ipBlock") is None:
            return True
        if selector is not None and peer.get("namespaceSelector") is None and all(
                labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
            return True
    return False


def _denied_by_callee(world: World, labels: dict[str, str]) -> list[Verdict]:
    """The service it fails to call is guarded by a NetworkPolicy whose ingress does not admit its pods."""
    if world.snap is None or not labels:
        return []
    services = {name(s): s for s in world.snap.items("services")}
    for host, port, where, line in failing_dependencies(world):
        service = services.get(host.split(".")[0])
        if service is None:
            continue
        selector = (service.get("spec") or {}).get("selector") or {}
        for policy in world.snap.items("networkpolicies"):
            spec = policy.get("spec") or {}
            guarded = (spec.get("podSelector") or {}).get("matchLabels") or {}
            if not all(selector.get(k) == v for k, v in guarded.items()) or "Ingress" not in (
                    spec.get("policyTypes") or ["Ingress"]):
                continue
            rules = spec.get("ingress") or []
            if any(_admits(r.get("from") or [], labels) for r in rules if r.get("from") is not None) or any(
                    r.get("from") is None for r in rules):
                continue
            allowed = " or ".join(", ".join(f"{k}={v}" for k, v in ((f.get("podSelector") or {}).get("matchLabels")
                                                                    or {}).items()) or "nothing"
                                  for r in rules for f in r.get("from") or []) or "nothing"
            ours = ", ".join(f"{k}={v}" for k, v in labels.items())
            return [Verdict(
                family="network_policy",
                cause=f"NetworkPolicy {name(policy)}, which admits ingress to {name(service)} only from pods labelled "
                      f"{allowed}; {world.service}'s pods ({ours}) are not admitted",
                title=f"NetworkPolicy {name(policy)} denies {world.service} → {name(service)}: it admits only {allowed}",
                evidence=[f"networkpolicy {name(policy)}: podSelector {guarded}, ingress from {allowed}",
                          f"service {name(service)}: selector {selector}", f"log ({where}): {short(line, 300)}"],
                severity="critical",
                ruled_out=[(f"{name(service)} down", "the connections are dropped by the policy before they reach it")],
                plans=[Plan(f"Admit {world.service}'s pods in NetworkPolicy {name(policy)} (add a from.podSelector "
                            f"matching {ours}) or label its pods as the policy expects; a restart cannot help")],
                sources={"kubernetes", "logs"},
                subjects={name(policy), name(service)},
            )]
    return []


RULE = Rule("network_policy", 22, ("networkpolicies", "pods (labels)", "logs"), detect,
            "NetworkPolicy denying traffic: egress without DNS or without the port of a dependency that times out, "
            "ingress only from some labels", queries=(EXPORTER_UP,), explains=(ERRORS, SLOW))
