"""Readiness never passing: the container runs (no restarts) but the pod never becomes Ready, so it gets no
traffic."""
from __future__ import annotations

import re

from bot.engine.causes.base import Plan, Rule, Verdict, World, name, probe_text, ready, restarts, short

# an exec probe that can only fail: `exit 1`, `false`
ALWAYS_FAILS = re.compile(r"\bexit\s+[1-9]\d*\b|(?:^|\s|`)false`")


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
    return [Verdict(
        family="readiness",
        cause=f"its readiness probe ({probe_text(probe)}) failing{note}: the pod runs but is never Ready",
        title=f"{len(unready)} of {len(world.pods())} pods not ready: readiness probe {probe_text(probe)} fails"
              f"{note} (×{count}); the container runs with {restarts(pod)} restarts",
        evidence=evidence,
        severity="critical" if len(unready) == len(world.pods()) else "warning",
        ruled_out=[("Crash", f"{restarts(pod)} restarts: readiness failures do not restart the container, it keeps "
                             "running"),
                   ("Liveness probe", "no liveness kills")],
        plans=[Plan(f"Fix the readiness probe of {spec.get('name')} ({probe_text(probe)}) or what it checks; a "
                    "restart cannot help, the same probe runs on the new pod")],
        subjects={name(p) for p in unready},
    )]


RULE = Rule("readiness", 50, ("events", "pods (probes, conditions)"), detect,
            "Readiness never passing: Unhealthy events, Running but not Ready, no restarts")
