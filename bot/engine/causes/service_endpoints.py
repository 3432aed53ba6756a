"""A Service its callers fail to reach because it has no ready endpoints: its selector matches no running pod (a
label typo, a renamed app), or the pods it selects are not ready."""
from __future__ import annotations

from bot.engine.causes.base import Plan, Rule, Verdict, World, name, ready, short
from bot.engine.causes.dependency import failing_dependencies


def _labels(selector: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in selector.items())


def detect(world: World) -> list[Verdict]:
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


RULE = Rule("service_endpoints", 53, ("services", "endpointslices", "pods of the namespace", "logs"), detect,
            "A called Service with no ready endpoints: selector matches no pod, or its pods are not ready")
