"""Pending with FailedScheduling: the scheduler's message parsed — insufficient cpu/memory/GPU (what the pod asks
for against what nodes have), node selector or affinity that no node matches, anti-affinity with more replicas
than nodes, untolerated taints, too many pods, unbound PVCs (the storage rule says why)."""
from __future__ import annotations

import re

from bot.engine.causes.base import (
    Obj, Plan, Rule, Verdict, World, event_text, event_time, meta, name, quantity, selects, short,
)

INSUFFICIENT = re.compile(r"Insufficient ([\w./-]*\w)")
TAINT = re.compile(r"untolerated taint(?:\(s\))?\s*\{?([^}]*)\}?|had taints? that the pod didn't tolerate")


def _requests(pod_spec: dict, resource: str) -> float:
    total = 0.0
    for c in pod_spec.get("containers") or []:
        res = c.get("resources") or {}
        total += quantity((res.get("requests") or {}).get(resource) or (res.get("limits") or {}).get(resource)) or 0
    return total


def _amount(resource: str, value: float | None) -> str:
    if value is None:
        return "?"
    if resource == "cpu":
        return f"{value:g} CPU" if value >= 1 else f"{value * 1000:.0f}m CPU"
    if resource == "memory":
        return f"{value / 2**30:.3g}Gi" if value >= 2**30 else f"{value / 2**20:.0f}Mi"
    return f"{value:g}"


def _volume_conflicts(world: World, pod: Obj, nodes: list[Obj]) -> list[tuple[str, str, str]]:
    """(why, fix, evidence) for each claim of the pod whose PersistentVolume is pinned (spec.nodeAffinity) where no
    node is — a zonal disk whose zone lost its nodes."""
    snap = world.snap
    claims = {name(c): c for c in snap.items("persistentvolumeclaims")} if snap else {}
    volumes = {name(v): v for v in snap.items("persistentvolumes")} if snap else {}
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        pv = volumes.get(((claims.get(claim) or {}).get("spec") or {}).get("volumeName") or "")
        terms = (((pv or {}).get("spec") or {}).get("nodeAffinity") or {}).get("required", {}).get("nodeSelectorTerms")
        if not terms or any(selects({"matchExpressions": t.get("matchExpressions")}, meta(n).get("labels") or {})
                            for t in terms for n in nodes):
            continue
        exprs = [e for t in terms for e in t.get("matchExpressions") or []]
        where = " or ".join(f"{e.get('key')} {', '.join(e.get('values') or [])}".strip() for e in exprs)
        pinned = " or ".join(", ".join(e.get("values") or []) for e in exprs if e.get("operator") == "In") or where
        keys = {e.get("key") for e in exprs}
        have = sorted({f"{meta(n).get('labels', {}).get(k)}" for n in nodes for k in keys
                       if meta(n).get("labels", {}).get(k)})
        reclaim = ((pv or {}).get("spec") or {}).get("persistentVolumeReclaimPolicy")
        out.append((
            f"volume {name(pv)} of claim {claim} is in {pinned} (its PersistentVolume's nodeAffinity: {where}) and no "
            f"node is there" + (f" — the nodes are in {', '.join(have)}" if have else ""),
            f"bring a node back in {pinned} (scale that zone's node group) so that {name(pod)} can run beside its "
            f"volume; do not delete claim {claim}" + (f" (reclaimPolicy {reclaim}: its data would be lost)"
                                                      if reclaim == "Delete" else " (its data is on that volume)"),
            f"persistentvolume {name(pv)} (bound to claim {claim}): spec.nodeAffinity.required {where}; nodes: "
            + ", ".join(f"{name(n)} {', '.join(str(meta(n).get('labels', {}).get(k)) for k in keys)}" for n in nodes),
        ))
    return out


def detect(world: World) -> list[Verdict]:
    pending = [p for p in world.pods() if (p.get("status") or {}).get("phase") == "Pending"
               and not (p.get("spec") or {}).get("nodeName")]
    events = world.events("FailedScheduling")
    if not events:
        return []
    if not pending:
        return _recovered(world, events)
    message = events[0].get("message") or ""
    pod = pending[0]
    spec = pod.get("spec") or {}
    nodes = world.snap.items("nodes") if world.snap else []
    described = world.snap is not None and world.snap.described("nodes")
    evidence = [short(f"event FailedScheduling on pod {name(pod)}: {message}", 400)]
    reasons: list[str] = []
    fixes: list[str] = []
    ruled: list[tuple[str, str]] = []
    for resource in INSUFFICIENT.findall(message):
        asks = _requests(spec, resource)
        free = [quantity((n.get("status") or {}).get("allocatable", {}).get(resource)) for n in nodes]
        have = ", ".join(f"{name(n)} {_amount(resource, f)}" for n, f in zip(nodes, free, strict=True)
                         if f is not None) or ("no node has any" if described else "nodes not described")
        reasons.append(f"insufficient {resource}: the pod requests {_amount(resource, asks)} {resource}, "
                       f"nodes have {have} allocatable")
        fixes.append(f"lower the {resource} request ({_amount(resource, asks)}) or add nodes with enough {resource}")
    selector = spec.get("nodeSelector") or {}
    if "node affinity/selector" in message or "didn't match Pod's node affinity" in message:
        if selector:
            wanted = ", ".join(f"{k}={v}" for k, v in selector.items())
            matching = [name(n) for n in nodes if all((n.get("metadata") or {}).get("labels", {}).get(k) == v
                                                      for k, v in selector.items())]
            reasons.append(f"its nodeSelector {wanted} matches no node" + (
                f" (none of the {len(nodes)} nodes is labelled {wanted})" if described and not matching else ""))
            fixes.append(f"label a node {wanted} or remove/fix the nodeSelector")
        else:
            reasons.append("its node affinity matches no node")
            fixes.append("fix the pod's required node affinity or label nodes to match it")
    if "anti-affinity" in message:
        replicas = ((world.workload or {}).get("spec") or {}).get("replicas")
        reasons.append("its pod anti-affinity allows one pod per node" + (
            f": {replicas} replicas for {len(nodes)} nodes" if replicas and described else ""))
        fixes.append("add nodes or relax the anti-affinity to preferred")
    taint = TAINT.search(message)
    if taint:
        reasons.append("nodes carry taints it does not tolerate" + (f" ({taint.group(1).strip()})" if taint.group(1) else ""))
        fixes.append("add a matching toleration or remove the taint")
    if "Too many pods" in message:
        reasons.append("nodes are at their pod capacity (Too many pods)")
        fixes.append("add nodes or raise the kubelet's max pods")
    if "volume node affinity conflict" in message:
        conflicts = _volume_conflicts(world, pod, nodes) if described else []
        reasons += [why for why, _, _ in conflicts] or ["its volume is pinned (PersistentVolume nodeAffinity, "
                                                        "usually a zone) where no node is"]
        fixes += [fix for _, fix, _ in conflicts] or ["add a node where its volume is (the PV's nodeAffinity) — "
                                                      "deleting the claim would lose its data"]
        evidence += [e for _, _, e in conflicts]
    if "unbound immediate PersistentVolumeClaims" in message or "persistentvolumeclaim" in message.lower():
        reasons.append("its PersistentVolumeClaim is not bound")
        fixes.append("make the claim bind (see the storage finding)")
    if not INSUFFICIENT.search(message):
        ruled.append(("Insufficient CPU or memory", "the scheduler's message names no insufficient resource"))
    if not reasons:
        reasons.append(short(message, 200))
    why = "; ".join(reasons)
    return [Verdict(
        family="scheduling",
        cause=f"pods that cannot be scheduled: {why}",
        title=f"{len(pending)} of {len(world.pods())} pods Pending, unschedulable: {why}",
        evidence=evidence,
        severity="critical" if len(pending) == len(world.pods()) else "warning",
        ruled_out=ruled + [("Application crash", "the pods were never scheduled, so never started")],
        plans=[Plan("To schedule them: " + "; ".join(dict.fromkeys(fixes or ["fix what the scheduler's message says"]))
                    + ". A restart cannot help: the new pod asks the scheduler the same thing")],
        subjects={name(p) for p in pending},
    )]


def _recovered(world: World, events: list[dict]) -> list[Verdict]:
    """Pods that were unschedulable and are scheduled now: how (a node the autoscaler added, capacity freed)."""
    last = event_time(events[0])
    scaled = world.events("TriggeredScaleUp")
    how = ("the cluster autoscaler added capacity (" + short(scaled[0].get("message") or "", 160) + ")") if scaled \
        else "capacity became available"
    return [Verdict(
        "scheduling", f"pods that could not be scheduled until {last:%H:%M} UTC" if last else "pods unschedulable earlier",
        f"Recovered: pods were Pending (FailedScheduling: {short(events[0].get('message') or '', 160)})"
        + (f" until {last:%H:%M} UTC" if last else "") + f"; {how}; every pod is scheduled now",
        [short(event_text(e), 300) for e in (events[:1] + scaled[:1])], "info", current=False,
    )]


RULE = Rule("scheduling", 25, ("pods (spec)", "events", "nodes (labels, allocatable, taints)"), detect,
            "Pending / FailedScheduling: insufficient cpu/memory/GPU (asked vs allocatable), node selector, "
            "affinity/anti-affinity vs replicas and nodes, taints, too many pods, unbound PVC")
