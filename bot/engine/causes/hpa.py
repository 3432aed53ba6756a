"""HorizontalPodAutoscalers that cannot scale: no metrics, a container without the resource request its target is
a percentage of, or pinned at maxReplicas while the metric is above target."""
from __future__ import annotations

import math

from bot.answer import Action
from bot.engine.causes.base import Obj, Plan, Rule, Verdict, World, condition, event_text, name, short
from bot.engine.text import value_text

# traffic this much above an hour ago is what the autoscaler is answering
RISEN = 1.5


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
            driven = _load_driven(world, hpa)
            if driven is not None:
                out.append(driven)
                continue
            out.append(Verdict("hpa", f"HPA {name(hpa)} at its maximum of {spec.get('maxReplicas')} replicas",
                               f"HorizontalPodAutoscaler {name(hpa)} is at maxReplicas {spec.get('maxReplicas')} and "
                               "wants more", evidence, "warning",
                               plans=[Plan(f"Raise maxReplicas of {name(hpa)} (check the cluster has room) or make "
                                           "each replica do more")], subjects={name(hpa)}))
    return out


def _load_driven(world: World, hpa: Obj) -> Verdict | None:
    """An HPA pinned at maxReplicas because traffic rose and every replica's CPU is saturated: the load is the cause
    and more replicas the fix (their throttling at the limit is the symptom). None when traffic did not rise or the
    CPU is not saturated."""
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    rate, cpu = world.signals.get("request_rate"), world.signals.get("cpu_ratio")
    if rate is None or not rate.value or not rate.baseline or rate.value / rate.baseline < RISEN or cpu is None \
            or cpu.health not in ("warning", "critical"):
        return None
    current, top = int(status.get("currentReplicas") or 0), int(spec.get("maxReplicas") or 0)
    target = next((m["resource"]["target"].get("averageUtilization") for m in spec.get("metrics") or []
                   if (m.get("resource") or {}).get("name") == "cpu"), None)
    used = next((m["resource"]["current"].get("averageUtilization") for m in status.get("currentMetrics") or []
                 if (m.get("resource") or {}).get("name") == "cpu"), None)
    # what the HPA would run without its ceiling: ceil(current × used / target), at least half again
    wanted = max(math.ceil(current * used / target) if used and target else 0, top + max(1, math.ceil(top / 2)))
    calls = [s for s in (world.signals.get("latency_p99"), world.signals.get("error_rate"))
             if s is not None and s.health in ("warning", "critical")]
    factor = rate.value / rate.baseline
    load = f"traffic up {factor:.1f}× ({value_text(rate, rate.baseline)} an hour ago → {value_text(rate)})"
    saturated = f"CPU at {value_text(cpu)} of its limit" + (f", {used}% of request against a {target}% target"
                                                             if used and target else "")
    target_ref = f"{world.namespace}/{world.snap.name if world.snap else world.service}"
    return Verdict(
        family="hpa",
        cause=f"{load} with HPA {name(hpa)} pinned at its maxReplicas {top}: every replica is CPU-saturated",
        title=f"HorizontalPodAutoscaler {name(hpa)} is at maxReplicas {top} ({current}/{top}) while {load.replace('traffic up', 'traffic is up', 1)}: "
              f"{saturated}; it cannot add the replicas the load needs",
        evidence=[f"horizontalpodautoscaler {name(hpa)}: replicas {current}/{spec.get('minReplicas', 1)}–{top}",
                  f"metric {rate.query}: {value_text(rate)} now, {value_text(rate, rate.baseline)} an hour ago",
                  f"metric {cpu.query}: {value_text(cpu)}"]
                 + [f"metric {s.query}: {value_text(s)} ({s.health})" for s in calls],
        severity="critical" if any(s.health == "critical" for s in calls) else "warning",
        ruled_out=[("A limit too low for the load", f"the load per replica rose with traffic; more replicas share it, "
                    "a higher CPU limit per pod would only delay the next ceiling")],
        plans=[Plan(f"Raise maxReplicas of HPA {name(hpa)} from {top} to {wanted} (kubectl patch hpa {name(hpa)} -n "
                    f"{world.namespace} -p '{{\"spec\":{{\"maxReplicas\":{wanted}}}}}') and scale out "
                    f"{world.service} to {wanted} replicas; without the new ceiling the HPA scales it back to {top}. "
                    "Check the nodes have room first",
                    Action(kind="scale", target=target_ref, params={"replicas": wanted}))],
        sources={"kubernetes", "metrics"},
        subjects={name(hpa)},
    )


RULE = Rule("hpa", 60, ("horizontalpodautoscalers (conditions)", "events"), detect,
            "HPA cannot scale: missing resource requests, no metrics, at maxReplicas")
