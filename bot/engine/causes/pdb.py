"""A PodDisruptionBudget that allows no disruption while a node the workload's pods run on is drained: the eviction
API refuses (429) to evict them and the drain retries forever. The service is up; the drain is what is blocked."""
from __future__ import annotations

import re

from bot.answer import Action
from bot.engine.causes.base import Obj, Plan, Rule, Verdict, World, meta, name, pod_list, ready, selects, when

DRAIN = re.compile(r"\b(drain\w*|evict\w*|cordon\w*)\b", re.IGNORECASE)
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def _cordon(node: Obj) -> tuple[bool, str]:
    """(whether the node is cordoned, since when as text)."""
    spec = node.get("spec") or {}
    taint = next((t for t in spec.get("taints") or [] if t.get("key") == UNSCHEDULABLE_TAINT), None)
    since = when((taint or {}).get("timeAdded"))
    return bool(spec.get("unschedulable") or taint), f"{since:%H:%M} UTC" if since else ""


def _budget(pdb: Obj, replicas: int) -> tuple[str, list[str]]:
    """Why it allows none, and what would let it allow one."""
    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
    healthy, desired = status.get("currentHealthy"), status.get("desiredHealthy")
    wanted = spec.get("minAvailable")
    if healthy is not None and desired is not None and healthy < desired:
        return (f"only {healthy} of the {desired} pods it requires are healthy",
                ["make the unhealthy pods ready first: the budget counts only healthy pods"])
    if wanted is not None:
        why = f"minAvailable {wanted} with {replicas} replica(s), {healthy if healthy is not None else '?'} healthy"
        fixes = []
        if isinstance(wanted, int) and wanted >= replicas:
            fixes.append(f"scale to {wanted + 1} replicas first (the new pod starts on another node, the budget then "
                         "allows 1 disruption and the drain goes on; scale back afterwards)")
        fixes.append(f"relax the budget: minAvailable {wanted - 1 if isinstance(wanted, int) and wanted > 0 else 'lower'}"
                     " or maxUnavailable: 1 instead, so pods are evicted one at a time")
        return why, fixes
    return (f"maxUnavailable {spec.get('maxUnavailable')}",
            ["relax the budget: maxUnavailable: 1, so pods are evicted one at a time"])


def detect(world: World) -> list[Verdict]:
    snap = world.snap
    if snap is None or not snap.items("poddisruptionbudgets"):
        return []
    pods = world.pods()
    nodes = {name(n): n for n in snap.items("nodes")}
    asked = bool(DRAIN.search(world.question))
    replicas = int(((world.workload or {}).get("spec") or {}).get("replicas") or len(pods))
    out = []
    for pdb in snap.items("poddisruptionbudgets"):
        selector = (pdb.get("spec") or {}).get("selector")
        covered = [p for p in pods if selector is not None and selects(selector, meta(p).get("labels") or {})]
        allowed = (pdb.get("status") or {}).get("disruptionsAllowed")
        if not covered or allowed is None or allowed > 0:
            continue
        # a pod on a cordoned node — or on the node the question says it drains, when nodes are not described
        stuck = []
        for p in covered:
            node = (p.get("spec") or {}).get("nodeName") or ""
            cordoned, since = _cordon(nodes[node]) if node in nodes else (asked and node in world.question, "")
            if cordoned:
                stuck.append((p, node, since))
        if not stuck:
            continue
        why, fixes = _budget(pdb, replicas)
        node, since = stuck[0][1], stuck[0][2]
        pods_text = pod_list([p for p, *_ in stuck])
        plans = [Plan(f"To let the drain of {node} go on, {fix}") for fix in fixes]
        if world.kind == "Deployment" and fixes[0].startswith("scale to"):
            wanted = int((pdb.get("spec") or {}).get("minAvailable")) + 1
            plans[0].action = Action(kind="scale", target=f"{world.namespace}/{name(world.workload)}",
                                     params={"replicas": wanted})
        up = sum(1 for p in pods if ready(p))
        out.append(Verdict(
            family="pdb",
            cause=f"PodDisruptionBudget {name(pdb)} allowing 0 disruptions ({why}): the eviction API refuses to evict "
                  f"{pods_text} from node {node}, cordoned for a drain",
            title=f"The drain of node {node} is blocked: PodDisruptionBudget {name(pdb)} allows 0 disruptions ({why}), "
                  f"so {pods_text} cannot be evicted; node {node} is cordoned"
                  + (f" since {since}" if since else "") + f"; {world.service} itself is up ({up}/{len(pods)} ready)",
            evidence=[f"poddisruptionbudget {name(pdb)}: spec {_spec_text(pdb)}; status.disruptionsAllowed {allowed}, "
                      f"currentHealthy {(pdb.get('status') or {}).get('currentHealthy')}, desiredHealthy "
                      f"{(pdb.get('status') or {}).get('desiredHealthy')}, expectedPods "
                      f"{(pdb.get('status') or {}).get('expectedPods')}"]
                     + [f"node {n}: spec.unschedulable true (cordoned{' at ' + s if s else ''}); pod {name(p)} runs on it"
                        for p, n, s in stuck[:2]],
            severity="warning",
            ruled_out=[("An outage of " + world.service, f"{up}/{len(pods)} pods ready: it serves; only the voluntary "
                                                         "eviction is refused")],
            plans=plans,
            subjects={name(pdb), node},
            service_ok=up == len(pods) > 0,
        ))
    return out


def _spec_text(pdb: Obj) -> str:
    spec = pdb.get("spec") or {}
    return ", ".join(f"{k} {spec[k]}" for k in ("minAvailable", "maxUnavailable") if k in spec) or "no bound"


RULE = Rule("pdb", 21, ("poddisruptionbudgets", "nodes (spec.unschedulable, taints)", "pods", "the question"),
            detect, "PodDisruptionBudget allowing 0 disruptions while a node of the workload is drained: the budget, "
                    "why (minAvailable vs replicas, unhealthy pods), how to unblock (scale up first, relax it)")
