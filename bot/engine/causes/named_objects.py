"""What a pod named in the question or in a firing alert is, when it is not a current fault: a pod of an old
ReplicaSet being replaced after a healthy rollout, or a restart that did not repeat. (A pod that is failing now is
explained by the rule of its failure; a node by the node rule.)"""
from __future__ import annotations

from bot.engine.causes.base import (
    SETTLED, Rule, Verdict, World, last_terminated, meta, name, ready, restarts, statuses, when,
)


def _named(world: World) -> list[dict]:
    texts = [world.question] + [f"{a.resource_name or ''} {a.message or ''}" for a in world.alerts]
    pods = world.snap.pods if world.snap else []
    return [p for p in pods if any(name(p) and name(p) in t for t in texts)]


def detect(world: World) -> list[Verdict]:
    out = []
    current = {name(p) for p in world.pods()}
    for pod in _named(world):
        alert = next((a for a in world.alerts if name(pod) in f"{a.resource_name} {a.message}"), None)
        about = f"alert {alert.name} concerns pod {name(pod)}" if alert else f"pod {name(pod)}"
        if name(pod) not in current:
            if not world.old_replicaset_pod(pod):
                continue  # a bare pod, or one of another owner, is no old ReplicaSet's: its own rules say what it is
            leaving = "being terminated" if meta(pod).get("deletionTimestamp") else "left over"
            healthy = all(ready(p) for p in world.pods()) and world.pods()
            owner = next(r.get("name") for r in meta(pod).get("ownerReferences") or [] if r.get("kind") == "ReplicaSet")
            out.append(Verdict(
                "named_objects", f"{about}: a pod of the old ReplicaSet {owner}",
                f"{about[0].upper() + about[1:]}: it belongs to the old ReplicaSet {owner}, {leaving} after the rollout"
                + (f"; the current pods are all ready ({len(world.pods())}/{len(world.pods())})" if healthy else ""),
                [f"pod {name(pod)}: ownerReferences ReplicaSet {owner} (not the current one)"
                 + (f", deletionTimestamp {meta(pod).get('deletionTimestamp')}" if meta(pod).get("deletionTimestamp")
                    else "")],
                "info", current=False, subjects={name(pod)}))
            continue
        last = max((when((last_terminated(s) or {}).get("finishedAt")) for s in statuses(pod)
                    if last_terminated(s)), default=None, key=lambda t: t or world.now)
        if ready(pod) and restarts(pod) and last is not None and (world.ago(last) or SETTLED) >= SETTLED:
            out.append(Verdict(
                "named_objects", f"{about}: a restart at {last:%H:%M} UTC that did not repeat",
                f"{about[0].upper() + about[1:]}: it restarted {restarts(pod)} time(s), last at {last:%H:%M} UTC, and "
                "has been ready since: nothing is failing now", [f"pod {name(pod)}: restartCount {restarts(pod)}, "
                                                                  f"lastState.terminated at {last:%H:%M:%S} UTC, Ready"],
                "info", current=False, subjects={name(pod)}))
    return out


RULE = Rule("named_objects", 90, ("pods (all ReplicaSets)", "alerts", "the question"), detect,
            "A pod named by the question or an alert: old ReplicaSet's pod being replaced, a restart that did not repeat")
