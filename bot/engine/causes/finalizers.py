"""An object stuck in Terminating: it was deleted (`deletionTimestamp` set, its grace period over) but
`metadata.finalizers` still lists a key that only some controller removes. The API server keeps the object until the
list is empty, so `kubectl delete` hangs; usually the controller that owns the finalizer is gone or scaled to 0."""
from __future__ import annotations

import re
from datetime import timedelta

from bot.engine.causes.base import Obj, Plan, Rule, Verdict, World, meta, name, short, statuses, terminated, when
from bot.engine.text import ago, duration

# Past its deletionTimestamp (the end of the grace period) by this much, an object still there is stuck.
STUCK = timedelta(minutes=2)

# Finalizers Kubernetes itself removes: who does it, and once what holds.
BUILTIN = {
    "kubernetes.io/pvc-protection": ("the PVC-protection controller", "no pod uses the claim"),
    "kubernetes.io/pv-protection": ("the PV-protection controller", "no claim is bound to the volume"),
    "foregroundDeletion": ("the garbage collector", "every dependent with blockOwnerDeletion is deleted"),
    "orphan": ("the garbage collector", "its dependents no longer name it as owner"),
    "batch.kubernetes.io/job-tracking": ("the Job controller", "it has counted the pod"),
    "service.kubernetes.io/load-balancer-cleanup": ("the cloud controller manager", "the load balancer is deleted"),
}
# Words of a finalizer that say nothing about which controller owns it.
_NOISE = {"com", "io", "org", "net", "dev", "example", "k8s", "kubernetes", "x", "www", "finalizer", "finalizers",
          "protection", "protect", "cleanup", "controller", "operator", "v1", "v1alpha1", "v1beta1"}


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) > 2 and w not in _NOISE}


def _controller(world: World, finalizer: str) -> Obj | None:
    """The Deployment or StatefulSet (any namespace) that most likely owns `finalizer`: one whose spec names it,
    else the one whose name shares most of its words (its namespace's words count as a tie-breaker)."""
    snap = world.snap
    candidates = [o for plural in ("all_deployments", "all_statefulsets") for o in (snap.items(plural) if snap else [])]
    wanted = _words(finalizer)

    def score(obj: Obj) -> tuple[int, int, int]:
        mentions = int(finalizer in str(obj.get("spec") or {}))
        return mentions, len(wanted & _words(name(obj))), len(wanted & _words(str(meta(obj).get("namespace", ""))))

    ranked = sorted(((score(o), o) for o in candidates), key=lambda t: t[0], reverse=True)
    best = next((o for (mentions, by_name, _), o in ranked if mentions or by_name), None)
    return best


def _kind(obj: Obj) -> str:
    return "StatefulSet" if "serviceName" in (obj.get("spec") or {}) else "Deployment"


def _stuck(world: World) -> list[Obj]:
    snap = world.snap
    objects = ([snap.workload] if snap and snap.workload and snap.kind != "Pod" else []) + (snap.pods if snap else [])
    out = []
    for obj in objects:
        deleted = when(meta(obj).get("deletionTimestamp"))
        if deleted is not None and meta(obj).get("finalizers") and world.now - deleted >= STUCK:
            out.append(obj)
    return out


def owners(world: World) -> list[str]:
    """Names of the controllers that would remove the finalizers of the objects stuck in Terminating."""
    found = [_controller(world, str(f)) for obj in _stuck(world) for f in meta(obj).get("finalizers") or []
             if str(f) not in BUILTIN]
    return list(dict.fromkeys(name(c) for c in found if c is not None))


def _stopped(world: World, controller: Obj) -> str:
    """' by tom at 2026-11-30 18:02 UTC (3 days ago: “cost cleanup”)' when the audit log says who scaled it down."""
    entries = [a for a in world.dependency_audit if a.resource_name == name(controller)
               and isinstance((a.changes or {}).get("replicas"), dict)
               and (a.changes["replicas"].get("to") in (0, "0"))]
    if not entries:
        return ""
    entry = max(entries, key=lambda a: a.timestamp)
    reason = (entry.changes or {}).get("reason")
    why = reason.get("to") if isinstance(reason, dict) else reason
    return (f" by {entry.username or entry.user_id or 'someone'} at {entry.timestamp:%Y-%m-%d %H:%M} UTC "
            f"({ago(entry.timestamp, world.now)}" + (f": “{short(str(why), 80)}”" if why else "") + ")")


def detect(world: World) -> list[Verdict]:
    out = []
    for obj in _stuck(world):
        kind = obj.get("kind") or ("Pod" if "containers" in (obj.get("spec") or {}) else world.kind or "object")
        deleted = when(meta(obj).get("deletionTimestamp"))
        finalizers = [str(f) for f in meta(obj).get("finalizers") or []]
        first = finalizers[0]
        evidence = [f"{kind.lower()} {name(obj)}: metadata.deletionTimestamp {meta(obj).get('deletionTimestamp')} "
                    f"({ago(deleted, world.now)}), metadata.finalizers {', '.join(finalizers)}"]
        ruled_out = []
        if kind == "Pod":
            owners = meta(obj).get("ownerReferences") or []
            exited = [s for s in statuses(obj) if terminated(s)]
            phase = (obj.get("status") or {}).get("phase")
            if statuses(obj) and len(exited) == len(statuses(obj)):
                evidence.append(f"pod {name(obj)}: phase {phase}, every container has exited")
                ruled_out.append(("The node or a slow shutdown", f"the containers have exited (phase {phase}); only "
                                  "the finalizer keeps the object"))
            if not owners:
                evidence.append(f"pod {name(obj)}: no ownerReferences (a bare pod, no ReplicaSet or Job owns it)")
        builtin = BUILTIN.get(first)
        controller = None if builtin else _controller(world, first)
        plans = []
        if builtin:
            who, once = builtin
            holder = f"{first}, which {who} removes once {once}"
            plans.append(Plan(f"See why not yet: {who} removes {first} once {once}; remove the finalizer by hand "
                              "only as a last resort"))
        elif controller is not None:
            spec, status = controller.get("spec") or {}, controller.get("status") or {}
            wanted, ready_count = int(spec.get("replicas", 1) or 0), int(status.get("readyReplicas") or 0)
            where = f"{_kind(controller).lower()} {name(controller)} in {meta(controller).get('namespace')}"
            evidence.append(f"{where}: spec.replicas {wanted}, {ready_count} ready (the likely owner of {first})")
            if wanted == 0 or ready_count == 0:
                state = (f"was scaled to 0 replicas{_stopped(world, controller)}" if wanted == 0
                         else f"has 0 of {wanted} replicas ready")
                holder = (f"{first}, whose controller {name(controller)} ({meta(controller).get('namespace')}) "
                          f"{state}, so nothing removes it")
                plans.append(Plan(
                    f"Scale {name(controller)} back up (`kubectl scale {_kind(controller).lower()} {name(controller)} "
                    f"-n {meta(controller).get('namespace')} --replicas=1`): it does its work and removes the "
                    f"finalizer; or, knowing that work is skipped, remove the finalizer by patch (`kubectl patch "
                    f"{kind.lower()} {name(obj)} -n {world.namespace} --type=json -p "
                    "'[{\"op\":\"remove\",\"path\":\"/metadata/finalizers/0\"}]'`)"))
            else:
                holder = (f"{first}, which its controller {name(controller)} ({meta(controller).get('namespace')}, "
                          f"{ready_count}/{wanted} ready) has not removed")
                plans.append(Plan(f"Read the logs of {name(controller)} to see why it does not remove {first}; "
                                  "remove the finalizer by patch only once you know its work is done or not needed"))
        else:
            holder = f"{first}, and no running controller that would remove it was found"
            plans.append(Plan(f"Find the controller or operator that adds {first} and bring it back; or, knowing what "
                              f"it guards is skipped, remove the finalizer by patch (`kubectl patch {kind.lower()} "
                              f"{name(obj)} -n {world.namespace} --type=json -p "
                              "'[{\"op\":\"remove\",\"path\":\"/metadata/finalizers/0\"}]'`)"))
        out.append(Verdict(
            family="finalizers",
            cause=f"the finalizer {holder}",
            title=f"{kind} {name(obj)} is stuck in Terminating for {duration(world.now - deleted)}: it was deleted, "
                  f"but the finalizer {first} is still set",
            evidence=evidence,
            severity="warning",
            ruled_out=ruled_out,
            plans=plans,
            subjects={name(obj)} | ({name(controller)} if controller is not None else set()),
        ))
    return out


RULE = Rule("finalizers", 7, ("pods and the workload (deletionTimestamp, finalizers)",
                              "deployments and statefulsets of every namespace"), detect,
            "Object stuck in Terminating: deleted, but a finalizer is left; which controller removes it (scaled to "
            "0, not running, or built in) and how to release it")
