"""Liveness-probe kills: the kubelet restarts a container whose liveness probe fails (often a wrong port or
path, or a timeout shorter than the pauses the process makes), which looks like a crash loop but is not the
application exiting."""
from __future__ import annotations

from bot.engine.causes.base import (ERRORS, SLOW, TIMED_OUT, Obj, Plan, Rule, Verdict, World, gc_pauses,
                                    last_terminated, name, probe_text, restarts, short, spec_container, statuses)


def _paused(world: World, pod: Obj, probe: Obj, failures: list[Obj]) -> Verdict | None:
    """The probe times out while the process is stopped in garbage-collection pauses longer than its timeout."""
    timeout = float(probe.get("timeoutSeconds") or 1)  # the API's default is 1 s
    if not failures or not all(TIMED_OUT.search(e.get("message") or "") for e in failures):
        return None
    pauses = [p for p in gc_pauses(world) if p.seconds >= timeout]
    if not pauses:
        return None
    longest, seconds = pauses[0], [round(p.seconds, 1) for p in pauses]
    span = f"{seconds[-1]:g}–{seconds[0]:g} s" if seconds[-1] != seconds[0] else f"{seconds[0]:g} s"
    period, threshold = probe.get("periodSeconds") or 10, probe.get("failureThreshold") or 3
    exits = sorted({int(t["exitCode"]) for s in statuses(pod) for t in [last_terminated(s)]
                    if t and t.get("exitCode") is not None})
    signal = {137: "SIGKILL", 143: "SIGTERM"}
    killed = ", ".join(f"{c} ({signal[c]})" if c in signal else str(c) for c in exits)
    cause = (f"its liveness probe ({probe_text(probe)}, timeoutSeconds {timeout:g}) timing out during garbage-"
             f"collection pauses of up to {seconds[0]:g} s, so the kubelet kills and restarts the container")
    suggested = max(5, int(longest.seconds * 2 + 0.999))
    return Verdict(
        family="liveness",
        cause=cause,
        title=f"Liveness probe of {name(pod)} times out during GC pauses: {len(pauses)} pause(s) of {span} "
              f"against a {timeout:g} s timeoutSeconds; the kubelet "
              f"restarts it ({restarts(pod)} restarts" + (f", exit {killed}" if killed else "") + ")",
        evidence=[short(f"event Unhealthy on pod {name(pod)}: {failures[0].get('message')}", 300),
                  f"pod {name(pod)}: livenessProbe {probe_text(probe)} timeoutSeconds {timeout:g}, periodSeconds "
                  f"{period}, failureThreshold {threshold}" + (f"; lastState exit {killed}" if killed else ""),
                  f"log ({longest.where}): {short(longest.line, 300)}"],
        ruled_out=[("OOM", "not an OOM kill: the kubelet stopped it for a failed liveness probe"
                           + (f" (exit {killed}), not OOMKilled" if killed else "")),
                   ("Application crash", "the process does not exit by itself; it is paused and stops answering")],
        plans=[Plan(f"Raise the liveness probe's timeoutSeconds to {suggested} (above the longest GC pause, "
                    f"{seconds[0]:g} s) and its failureThreshold, so a pause is not taken for a dead process; "
                    "then tune the heap and GC so the pauses shrink (a heap still nearly full after a full "
                    "collection needs more memory or less live data); a restart cannot help")],
        subjects={name(pod)},
    )


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
    paused = _paused(world, pod, probe, failures)
    if paused is not None:
        return [paused]
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
        # a probe that gets no answer in time observes a process too slow to answer: what makes it slow explains it
        shows={SLOW} if failures and not mismatch and all(TIMED_OUT.search(e.get("message") or "") for e in failures)
        else set(),
    )]


RULE = Rule("liveness", 35, ("events", "pods (probes, ports)", "logs (GC pauses)"), detect,
            "Liveness-probe kills: Unhealthy + Killing events, the probe vs the container's ports, a probe timing out "
            "during the garbage-collection pauses the logs show (vs its timeoutSeconds)", explains=(ERRORS,))
