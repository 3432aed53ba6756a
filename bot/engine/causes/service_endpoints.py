"""A Service its callers fail to reach: it has no ready endpoints (its selector matches no running pod — a label typo,
a renamed app — or the pods it selects are not ready), or it sends to a targetPort its pods do not listen on."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, Obj, Plan, Rule, Verdict, World, meta, name, ready, selects, short
from bot.engine.causes.dependency import failing_dependencies


def _labels(selector: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in selector.items())


LISTENING = re.compile(r"(?i)\blisten\w*\s+(?:on\s+)?(?:port\s+)?\S*?:?(\d{2,5})\b")


def _ports(pods: list[Obj]) -> list[Obj]:
    return [p for pod in pods for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]


def _port_mismatches(world: World) -> list[Verdict]:
    """Services selecting the workload's pods whose targetPort (a number, or a port name) is no port the pods
    declare: the endpoints exist, the connections are refused."""
    snap, pods = world.snap, world.pods()
    declared = _ports(pods)
    if snap is None or not pods or not declared:  # pods that declare no port say nothing about where they listen
        return []
    out = []
    for service in snap.items("services"):
        selector = (service.get("spec") or {}).get("selector")
        if not selector or not all(selects({"matchLabels": selector}, meta(p).get("labels") or {}) for p in pods):
            continue
        for port in (service.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if any(target in (d.get("containerPort"), d.get("name")) for d in declared):
                continue
            listen = sorted({str(d.get("containerPort")) for d in declared})
            names = sorted({d.get("name") for d in declared if d.get("name")})
            heard = [(where, line) for where, line, m in world.find_lines(LISTENING) if m.group(1) in listen][:1]
            changed = [a for a in world.audit if re.search(r"(?i)target.?port", " ".join(map(str, a.changes or {})))]
            when = ""
            evidence = [f"service {name(service)}: spec.ports[{port.get('name') or port.get('port')}] port "
                        f"{port.get('port')} → targetPort {target}",
                        f"pods of {world.service}: containerPort {', '.join(listen)}"
                        + (f" (named {', '.join(names)})" if names else "")]
            evidence += [f"log ({where}): {short(line, 200)}" for where, line in heard]
            slices = [e for e in snap.items("endpointslices")
                      if (meta(e).get("labels") or {}).get("kubernetes.io/service-name") == name(service)]
            if slices:
                count = sum(1 for e in slices for ep in e.get("endpoints") or []
                            if (ep.get("conditions") or {}).get("ready", True))
                evidence.append(f"endpointslices of {name(service)}: {count} ready endpoints on port "
                                + ", ".join(str(p.get("port")) for e in slices for p in e.get("ports") or []))
            if changed:
                entry = max(changed, key=lambda a: a.timestamp)
                who = entry.username or entry.user_id or "someone"
                when = f" since {who}'s {entry.action} at {entry.timestamp:%H:%M} UTC"
                evidence.append(f"audit log {entry.id}: {entry.action} by {who}: " + "; ".join(
                    f"{k} {v.get('from')} → {v.get('to')}" if isinstance(v, dict) else f"{k} {v}"
                    for k, v in (entry.changes or {}).items()))
            back = f"{listen[0]}" + (f" (or the named port {names[0]})" if names else "")
            out.append(Verdict(
                family="service_endpoints",
                cause=f"Service {name(service)} sending to targetPort {target}, where its pods do not listen (they "
                      f"listen on {', '.join(listen)}){when}",
                title=f"Service {name(service)} sends to {target}, the containers listen on {', '.join(listen)}: "
                      f"every connection through it is refused although the pods are ready{when}",
                evidence=evidence,
                severity="critical",
                ruled_out=[("The pods", f"{sum(1 for p in pods if ready(p))}/{len(pods)} pods ready: they serve on "
                                        f"{', '.join(listen)}; nothing listens on {target}")],
                plans=[Plan(f"Set targetPort of Service {name(service)} port {port.get('port')} back to {back}: "
                            f"`kubectl patch service {name(service)} -n {world.namespace} --type=json -p "
                            f"'[{{\"op\":\"replace\",\"path\":\"/spec/ports/"
                            f"{((service.get('spec') or {}).get('ports') or []).index(port)}/targetPort\","
                            f"\"value\":{listen[0]}}}]'` (and in the chart that set it); restarting or rolling back "
                            "the pods cannot help")],
                subjects={name(service)},
            ))
    return out


def detect(world: World) -> list[Verdict]:
    return _no_endpoints(world) + _port_mismatches(world)


def _no_endpoints(world: World) -> list[Verdict]:
    snap = world.snap
    if snap is None or not snap.described("services") or not snap.described("pods"):
        return []
    services = {name(s): s for s in snap.items("services")}
    for host, port, where, line in failing_dependencies(world):
        service = services.get(host.split(".")[0])
        if service is None or not (service.get("spec") or {}).get("selector"):
            continue
        selector = service["spec"]["selector"]
        pods = [p for p in snap.items("pods") if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                                                     for k, v in selector.items())]
        if pods and any(ready(p) for p in pods):
            continue
        slices = [e for e in snap.items("endpointslices")
                  if ((e.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name") == name(service)]
        ready_endpoints = sum(1 for e in slices for ep in e.get("endpoints") or []
                              if (ep.get("conditions") or {}).get("ready", True))
        if pods:
            why = f"the {len(pods)} pod(s) it selects are not ready"
            fix = f"Make the pods behind {name(service)} ready (see their diagnosis)"
        else:
            near = sorted({f"{k}={v}" for p in snap.items("pods") for k, v in ((p.get("metadata") or {}).get("labels")
                                                                              or {}).items() if k in selector})
            why = f"its selector {_labels(selector)} matches no pod" + (
                f" (pods here carry {', '.join(near[:4])})" if near else "")
            fix = f"Fix the selector of Service {name(service)} (or the pods' labels) so that it matches the pods"
        return [Verdict(
            family="service_endpoints",
            cause=f"Service {name(service)} having no endpoints: {why}",
            title=f"Service {name(service)} has no ready endpoints ({ready_endpoints} in its EndpointSlices): {why}",
            evidence=[f"service {name(service)}: spec.selector {_labels(selector)}",
                      f"endpointslices of {name(service)}: {ready_endpoints} ready endpoints",
                      f"log ({where}): {short(line, 300)}"],
            severity="critical",
            ruled_out=[("DNS", f"{name(service)} resolves; nothing answers behind it")],
            plans=[Plan(fix + "; restarting the caller cannot help")],
            sources={"kubernetes", "logs"},
            subjects={name(service)},
        )]
    return []


RULE = Rule("service_endpoints", 53, ("services", "endpointslices", "pods of the namespace", "logs", "audit log"),
            detect, "A called Service with no ready endpoints: selector matches no pod, or its pods are not ready; "
                    "a Service whose targetPort is no port its pods declare (the change that set it)",
            explains=(ERRORS,))
