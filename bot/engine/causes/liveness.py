"""Liveness-probe kills: the kubelet restarts a container whose liveness probe fails (often a wrong port or
path), which looks like a crash loop but is not the application exiting."""
from __future__ import annotations

from bot.engine.causes.base import Plan, Rule, Verdict, World, name, probe_text, restarts, short, spec_container


def detect(world: World) -> list[Verdict]:
    kills = [e for e in world.events("Killing") if "liveness" in (e.get("message") or "").lower()]
    failures = [e for e in world.events("Unhealthy") if "liveness probe failed" in (e.get("message") or "").lower()]
    if not failures and not kills:
        return []
    pods = {name(p): p for p in world.pods()}
    hit = [(e.get("involvedObject") or {}).get("name") for e in failures + kills]
    pod = next((pods[n] for n in hit if n in pods), None)
    if pod is None:
        return []
    container = ((failures or kills)[0].get("involvedObject") or {}).get("fieldPath", "")
    container = container.split("{")[-1].rstrip("}") if "{" in container else ""
    spec = spec_container(pod.get("spec") or {}, container) or ((pod.get("spec") or {}).get("containers") or [{}])[0]
    probe = spec.get("livenessProbe") or {}
    ports = [p.get("containerPort") for p in spec.get("ports") or []]
    probed = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
    mismatch = probed is not None and ports and probed not in ports and not isinstance(probed, str)
    evidence = [short(f"event Unhealthy on pod {name(pod)}: {failures[0].get('message')}", 300)] if failures else []
    evidence += [short(f"event Killing on pod {name(pod)}: {kills[0].get('message')}", 300)] if kills else []
    evidence.append(f"pod {name(pod)} container {spec.get('name')}: livenessProbe {probe_text(probe)}"
                    + (f", containerPort {', '.join(map(str, ports))}" if ports else "") + f", {restarts(pod)} restarts")
    why = f" on port {probed}, but the container listens on {', '.join(map(str, ports))}" if mismatch else ""
    return [Verdict(
        family="liveness",
        cause=f"its liveness probe ({probe_text(probe)}) failing{why}, so the kubelet kills and restarts the container",
        title=f"Liveness probe {probe_text(probe)} of {spec.get('name')} fails{why}: the kubelet restarts it "
              f"({restarts(pod)} restarts)",
        evidence=evidence,
        severity="critical",
        ruled_out=[("Application crash", "the kubelet kills the container after failed liveness probes; it does "
                                         "not exit by itself"),
                   ("OOM", "killed for a failed probe, not OOMKilled")],
        plans=[Plan(f"Fix the liveness probe of {spec.get('name')}" + (f": point it at port {ports[0]}" if mismatch
                    else " (port, path, timeout, initialDelaySeconds) or what makes the endpoint fail")
                    + "; a restart cannot help")],
        subjects=set(hit) - {None},
    )]


RULE = Rule("liveness", 35, ("events", "pods (probes, ports)"), detect,
            "Liveness-probe kills: Unhealthy + Killing events, the probe vs the container's ports")
