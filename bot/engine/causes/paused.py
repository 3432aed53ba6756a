"""A Deployment whose rollout someone paused (`kubectl rollout pause`: spec.paused) and nobody resumed: the controller
makes no new ReplicaSet, so every later change to its template waits and the old version keeps serving. Who paused it
and why come from the audit log (read back to when it was paused) or managedFields."""
from __future__ import annotations

from bot.engine.causes.base import Plan, Rule, Verdict, World, condition, name, set_true_by
from bot.engine.text import ago, clock, tags


def detect(world: World) -> list[Verdict]:
    deployment = world.workload if world.kind == "Deployment" else None
    if deployment is None or not (deployment.get("spec") or {}).get("paused"):
        return []
    dep, ns = name(deployment), world.namespace
    who, at, why = set_true_by(world, deployment, "paused")
    since = (f" since {at:%Y-%m-%d %H:%M} UTC ({ago(at, world.now)})" if at else "") + (f" by {who}" if who else "")
    because = f" (“{why}”)" if why else ""
    progressing = condition(deployment, "Progressing") or {}
    evidence = [f"deployment {dep}: spec.paused true; Progressing={progressing.get('status')} "
                f"{progressing.get('reason') or ''}".rstrip()]
    # template changes made while it is paused: they are what the person is waiting for
    waiting = [a for a in world.audit if a.resource_name == dep and a.action == "update" and (at is None or a.timestamp > at)
               and not any("paused" in k for k in (a.changes or {}))]
    wanted = [c.get("image", "") for c in world.template().get("containers") or []]
    running = sorted({c.get("image", "") for p in world.pods() for c in (p.get("spec") or {}).get("containers") or []})
    held = ""
    if waiting:
        last = max(waiting, key=lambda a: a.timestamp)
        held = f"; {last.username or 'someone'}'s update at {clock(last.timestamp)} ({ago(last.timestamp, world.now)}) " \
               "has not rolled out"
        evidence.append(f"audit log {last.id}: update of {dep} by {last.username} while paused")
    if running and wanted and tags(running) != tags(wanted):
        held += f"; its pods still run {tags(running)}, the template asks for {tags(wanted)}"
    return [Verdict(
        family="paused",
        cause=f"Deployment {dep}'s rollout being paused{since}{because}",
        title=f"Deployment {dep} is paused (spec.paused: true){since}{because}: the controller rolls out no change to "
              f"its template{held}",
        evidence=evidence,
        severity="warning",
        plans=[Plan(f"Resume the rollout once the reason it was paused no longer holds: `kubectl rollout resume "
                    f"deployment/{dep} -n {ns}`; the waiting change then rolls out")],
        subjects={dep},
        service_ok=True,  # paused on purpose: the old version serves; what waits is the change
    )]


RULE = Rule("paused", 5, ("Deployment spec.paused", "audit log"), detect,
            "A Deployment whose rollout was paused and not resumed: who paused it, the change that waits, resume it")
