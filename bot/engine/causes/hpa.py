"""HorizontalPodAutoscalers that cannot scale: no metrics, a container without the resource request its target is
a percentage of, or pinned at maxReplicas while the metric is above target."""
from __future__ import annotations

from bot.engine.causes.base import Plan, Rule, Verdict, World, condition, event_text, name, short


def detect(world: World) -> list[Verdict]:
    snap = world.snap
    if snap is None:
        return []
    hpas = [h for h in snap.items("horizontalpodautoscalers")
            if ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == snap.name]
    out = []
    for hpa in hpas:
        spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
        active, limited = condition(hpa, "ScalingActive"), condition(hpa, "ScalingLimited")
        events = [e for e in world.events("FailedGetResourceMetric", "FailedComputeMetricsReplicas",
                                          "FailedGetExternalMetric", "FailedGetPodsMetric")
                  if (e.get("involvedObject") or {}).get("name") == name(hpa)]
        evidence = [f"horizontalpodautoscaler {name(hpa)}: replicas {status.get('currentReplicas')}/"
                    f"{spec.get('minReplicas', 1)}–{spec.get('maxReplicas')}"]
        if active is not None and active.get("status") == "False":
            message = active.get("message") or ""
            evidence.append(f"condition ScalingActive False ({active.get('reason')}): {short(message, 240)}")
            evidence += [short(event_text(e), 300) for e in events[:1]]
            missing = "missing request" in message or any("missing request" in (e.get("message") or "") for e in events)
            resource = "cpu" if "cpu" in message.lower() else "memory" if "memory" in message.lower() else "the resource"
            why = (f"a container has no {resource} request, and utilisation is a percentage of the request"
                   if missing else "it gets no metrics (is metrics-server or the adapter running?)")
            fix = (f"Set resources.requests.{resource} on every container of {snap.name} (sidecars too)" if missing
                   else "Make the metrics it scales on available (metrics-server / custom metrics adapter)")
            out.append(Verdict("hpa", f"HPA {name(hpa)} that cannot compute its metric: {why}",
                               f"HorizontalPodAutoscaler {name(hpa)} cannot scale: {why}", evidence, "warning",
                               plans=[Plan(fix)], subjects={name(hpa)}))
        elif limited is not None and limited.get("status") == "True" and status.get("currentReplicas") == spec.get(
                "maxReplicas"):
            evidence.append(f"condition ScalingLimited True ({limited.get('reason')}): {short(limited.get('message') or '', 200)}")
            out.append(Verdict("hpa", f"HPA {name(hpa)} at its maximum of {spec.get('maxReplicas')} replicas",
                               f"HorizontalPodAutoscaler {name(hpa)} is at maxReplicas {spec.get('maxReplicas')} and "
                               "wants more", evidence, "warning",
                               plans=[Plan(f"Raise maxReplicas of {name(hpa)} (check the cluster has room) or make "
                                           "each replica do more")], subjects={name(hpa)}))
    return out


RULE = Rule("hpa", 60, ("horizontalpodautoscalers (conditions)", "events"), detect,
            "HPA cannot scale: missing resource requests, no metrics, at maxReplicas")
