"""Startup probe failing: the container is killed before it ever finishes starting."""
from __future__ import annotations

from bot.engine.causes.base import Plan, Rule, Verdict, World, name, probe_text, restarts, short


def detect(world: World) -> list[Verdict]:
    failures = [e for e in world.events("Unhealthy") if "startup probe failed" in (e.get("message") or "").lower()]
    pods = {name(p): p for p in world.pods()}
    hit = [pods[n] for n in {(e.get("involvedObject") or {}).get("name") for e in failures} if n in pods]
    if not hit:
        return []
    pod = hit[0]
    container = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("startupProbe")), {})
    probe = container.get("startupProbe") or {}
    budget = int(probe.get("failureThreshold", 3)) * int(probe.get("periodSeconds", 10))
    return [Verdict(
        family="startup",
        cause=f"its startup probe ({probe_text(probe)}) failing: the container gets {budget}s to start and is "
              "killed before it is up",
        title=f"Startup probe {probe_text(probe)} of {container.get('name')} fails (budget {budget}s): "
              f"{restarts(pod)} restarts",
        evidence=[short(f"event Unhealthy on pod {name(pod)}: {failures[0].get('message')}", 300),
                  f"pod {name(pod)}: startupProbe {probe_text(probe)} failureThreshold "
                  f"{probe.get('failureThreshold', 3)} × periodSeconds {probe.get('periodSeconds', 10)}"],
        severity="critical",
        ruled_out=[("Application crash", "the kubelet kills it for the startup probe")],
        plans=[Plan(f"Give {container.get('name')} a longer startup budget (failureThreshold × periodSeconds) or fix "
                    "the endpoint the startup probe checks; a restart cannot help")],
        subjects={name(p) for p in hit},
    )]


RULE = Rule("startup", 34, ("events", "pods (probes)"), detect, "Startup probe failing: killed before it is up")
