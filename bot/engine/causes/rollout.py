"""A rollout that is stuck (ProgressDeadlineExceeded) with the old ReplicaSet still serving — or one that was
rolled back, which is history: what failed, and that the old version serves again."""
from __future__ import annotations

from bot.engine.causes.base import (
    Plan, Rule, Verdict, World, condition, event_time, meta, name, ready, short, when,
)

REVISION = "deployment.kubernetes.io/revision"


def _images(rs: dict) -> str:
    return ", ".join(c.get("image", "?") for c in (((rs.get("spec") or {}).get("template") or {}).get("spec") or {})
                     .get("containers") or [])


def detect(world: World) -> list[Verdict]:
    if world.kind != "Deployment" or world.workload is None or world.snap is None:
        return []
    progressing = condition(world.workload, "Progressing") or {}
    current = world.current_replicaset()
    old_serving = [rs for rs in world.snap.replicasets if rs is not current and
                   ((rs.get("status") or {}).get("readyReplicas") or 0) > 0]
    out = []
    if progressing.get("reason") == "ProgressDeadlineExceeded" and current is not None:
        serving = ", ".join(f"{name(rs)} ({_images(rs)}, {(rs.get('status') or {}).get('readyReplicas')} ready)"
                            for rs in old_serving) or "none"
        out.append(Verdict(
            family="rollout",
            cause=f"a rollout of {_images(current)} that cannot progress (ProgressDeadlineExceeded)",
            title=f"Rollout of {_images(current)} (ReplicaSet {name(current)}) stuck: ProgressDeadlineExceeded; "
                  f"old ReplicaSets still serving: {serving}",
            evidence=[f"deployment {name(world.workload)}: condition Progressing False ProgressDeadlineExceeded: "
                      f"{short(progressing.get('message') or '', 200)}",
                      f"replicaset {name(current)}: {(current.get('status') or {}).get('readyReplicas') or 0}/"
                      f"{(current.get('spec') or {}).get('replicas')} ready"],
            severity="warning" if old_serving else "critical",
            plans=[Plan((f"Roll back {world.service} to the ReplicaSet still serving, then fix" if old_serving else "Fix")
                        + " why the new pods do not become ready (the pod findings say why)")],
            subjects={name(current)},
        ))
    # a rollback: the current ReplicaSet is older than another one, and its pods are ready
    newer = [rs for rs in world.snap.replicasets if current is not None and rs is not current
             and (meta(rs).get("creationTimestamp") or "") > (meta(current).get("creationTimestamp") or "")]
    if current is not None and newer and all(ready(p) for p in world.pods()) and world.pods():
        bad = max(newer, key=lambda rs: meta(rs).get("creationTimestamp") or "")
        # when the old ReplicaSet was scaled up again after the bad one appeared, else the last progress
        created = when(meta(bad).get("creationTimestamp"))
        back = [t for e in world.events("ScalingReplicaSet") if f"Scaled up replica set {name(current)} " in (
            e.get("message") or "") for t in [event_time(e)] if t and (created is None or t >= created)]
        at = min(back, default=None) or when((condition(world.workload, "Progressing") or {}).get("lastUpdateTime"))
        changes = [a for a in world.audit if at is not None and a.action in ("update", "execute", "rollback")
                   and a.result != "failure" and abs((a.timestamp - at).total_seconds()) <= 1800]
        who = min(changes, key=lambda a: abs((a.timestamp - at).total_seconds()), default=None)  # type: ignore[operator]
        by = f" by {who.username or who.user_id} (audit log {who.id})" if who else ""
        out.append(Verdict(
            family="rollout",
            cause=f"the rollout of {_images(bad)}, since rolled back",
            title=f"Rolled back: {_images(bad)} (ReplicaSet {name(bad)}) was replaced by {_images(current)} again"
                  + (f" at {at:%H:%M} UTC" if at else "") + by + f"; all {len(world.pods())} pods are ready now",
            evidence=[f"replicaset {name(current)} (revision {meta(current).get('annotations', {}).get(REVISION)}) is "
                      f"current and older than {name(bad)} (revision {meta(bad).get('annotations', {}).get(REVISION)})"],
            severity="info", current=False, subjects={name(bad)},
        ))
    return out


RULE = Rule("rollout", 68, ("deployments (conditions)", "replicasets"), detect,
            "Rollout stuck (ProgressDeadlineExceeded) with the old ReplicaSet serving; a rollback that recovered")
