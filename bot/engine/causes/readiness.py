"""Readiness never passing: the container runs (no restarts) but the pod never becomes Ready, so it gets no
traffic. When every pod fails, the workload's own Service has no ready endpoint left: its callers get nothing (503,
connection refused). A probe that also checks a dependency (its command or path names it, or the app logs its
readiness check failing on it) turns that dependency's slowness into this outage: readiness should check the
process itself, and a dependency's trouble degrade it instead."""
from __future__ import annotations

import re

from bot.engine.causes.base import (
    ERRORS, SLOW, TIMED_OUT, Obj, Plan, Rule, Verdict, World, name, probe_text, ready, restarts, short,
)

# an exec probe that can only fail: `exit 1`, `false`
ALWAYS_FAILS = re.compile(r"\bexit\s+[1-9]\d*\b|(?:^|\s|`)false`")
# an application line about its own readiness check
READINESS_LINE = re.compile(r"(?i)readiness|readyz|health/ready|not ready|/ready\b")


def _selects(service: Obj, pod: Obj) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def own_services(world: World) -> list[tuple[Obj, int]]:
    """The Services that route to the workload's pods, each with its ready endpoints (EndpointSlices when the
    world has them, else the selected pods that are ready)."""
    snap, pods = world.snap, world.pods()
    if snap is None or not pods or not snap.described("services"):
        return []
    out = []
    for service in snap.items("services"):
        if not any(_selects(service, p) for p in pods):
            continue
        slices = [e for e in snap.items("endpointslices")
                  if ((e.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name") == name(service)]
        count = (sum(1 for e in slices for ep in e.get("endpoints") or [] if (ep.get("conditions") or {}).get("ready"))
                 if slices else sum(1 for p in snap.pods if _selects(service, p) and ready(p)))
        out.append((service, count))
    return out


def checked_dependency(world: World, probe: Obj, message: str) -> tuple[str, str] | None:
    """(dependency, where it is named) when the readiness check also checks another service: the probe's command or
    path, the Unhealthy message, or the app's own readiness log lines name a Service or catalog service."""
    snap = world.snap
    own = {name(s) for s, _ in own_services(world)} | {world.service}
    names = ({name(s) for s in snap.items("services")} if snap else set()) | world.known
    names = {n for n in names - own if len(n) > 2}
    places = [(f"readinessProbe {probe_text(probe)}", probe_text(probe)), (f"Unhealthy event: {message}", message)]
    places += [(f"log ({where}): {line}", line) for where, line in world.log_lines() if READINESS_LINE.search(line)]
    for where, text in places:
        for dep in sorted(names, key=len, reverse=True):
            if re.search(rf"(?<![\w-]){re.escape(dep)}(?![\w-])", text):
                return dep, where
    return None


def detect(world: World) -> list[Verdict]:
    failures = [e for e in world.events("Unhealthy") if "readiness probe failed" in (e.get("message") or "").lower()]
    unready = [p for p in world.pods() if not ready(p) and (p.get("status") or {}).get("phase") == "Running"]
    if not failures or not unready:
        return []
    pod = unready[0]
    spec = ((pod.get("spec") or {}).get("containers") or [{}])[0]
    probe = next((c.get("readinessProbe") for c in (pod.get("spec") or {}).get("containers") or []
                  if c.get("readinessProbe")), {}) or {}
    count = sum(int(e.get("count") or 1) for e in failures)
    message = (failures[0].get("message") or "").strip()
    always = bool(ALWAYS_FAILS.search(probe_text(probe)))
    evidence = [short(f"event Unhealthy ×{count} on pod {name(pod)}: {message}", 300),
                f"pod {name(pod)}: condition Ready False, phase Running, {restarts(pod)} restarts; readinessProbe "
                f"{probe_text(probe)} every {probe.get('periodSeconds', 10)}s"]
    note = " — it can never pass" if always else ""
    dependency = None if always else checked_dependency(world, probe, message)
    empty = [s for s, ready_count in own_services(world) if ready_count == 0]
    cause = f"its readiness probe ({probe_text(probe)}) failing{note}: the pod runs but is never Ready"
    title = (f"{len(unready)} of {len(world.pods())} pods not ready: readiness probe {probe_text(probe)} fails"
             f"{note} (×{count}); the container runs with {restarts(pod)} restarts")
    fix = (f"Fix the readiness probe of {spec.get('name')} ({probe_text(probe)}) or what it checks; a restart cannot "
           "help, the same probe runs on the new pod")
    if dependency is not None:
        dep, where = dependency
        cause = (f"its readiness probe ({probe_text(probe)}) also checking its dependency {dep}, which fails it: "
                 "the pods run but are not Ready")
        title += f"; the readiness check depends on {dep}"
        evidence.append(short(f"{dep} named by the readiness check: {where}", 300))
        fix = (f"Make the readiness probe of {spec.get('name')} check only the process itself, not {dep} (degrade "
               f"when {dep} is slow instead of leaving no pod to serve), and look at {dep}'s own trouble; a restart "
               "cannot help, the same probe runs on the new pod")
    if empty:
        services = ", ".join(name(s) for s in empty)
        cause += f"; Service {services} has no ready endpoints"
        title += (f"; Service {services} has 0 ready endpoints: nothing to route to, its callers get 503 or "
                  "connection refused")
        evidence.append(f"service {services}: 0 ready endpoints (its selector matches only not-ready pods)")
    return [Verdict(
        family="readiness",
        cause=cause,
        title=title,
        evidence=evidence,
        severity="critical" if len(unready) == len(world.pods()) else "warning",
        ruled_out=[("Crash", f"{restarts(pod)} restarts: readiness failures do not restart the container, it keeps "
                             "running"),
                   ("Liveness probe", "no liveness kills")],
        plans=[Plan(fix)],
        subjects={name(p) for p in unready} | ({dependency[0]} if dependency else set()),
        # a probe that can pass but gets no answer in time observes a process too slow to answer (a probe that checks
        # a dependency on purpose is its own design, the mechanism)
        shows={SLOW} if not always and dependency is None
        and all(TIMED_OUT.search(e.get("message") or "") for e in failures) else set(),
    )]


RULE = Rule("readiness", 50, ("events", "pods (probes, conditions)", "services", "endpointslices", "logs"), detect,
            "Readiness never passing: Unhealthy events, Running but not Ready, no restarts; the dependency the probe "
            "checks; the workload's Service left with no ready endpoints", explains=(ERRORS,))
