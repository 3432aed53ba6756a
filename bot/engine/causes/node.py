"""Nodes: NotReady / Unknown (the kubelet stopped posting status), memory/disk/PID pressure, or at its pod
capacity — which of the workload's pods it takes down, and that the other nodes are fine. A node the question or an
alert names is described even when the workload's pods do not run there."""
from __future__ import annotations

from bot.engine.causes.base import (
    ERRORS, SETTLED, Plan, Rule, Verdict, World, condition, event_time, name, quantity, short, when,
)

PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure")


def _state(node: dict) -> tuple[str, dict | None]:
    ready = condition(node, "Ready")
    if ready is None:
        return "unknown", None
    return {"True": "Ready", "False": "NotReady"}.get(ready.get("status"), "Unknown"), ready


def named_nodes(world: World) -> list[dict]:
    """Nodes the question or a firing alert names."""
    nodes = world.snap.items("nodes") if world.snap else []
    texts = [world.question] + [f"{a.resource_name} {a.message}" for a in world.alerts]
    return [n for n in nodes if any(name(n) in t or name(n).split(".")[0] in t for t in texts)]


def detect(world: World) -> list[Verdict]:
    snap = world.snap
    if snap is None or not snap.described("nodes"):
        return []
    nodes = {name(n): n for n in snap.items("nodes")}
    ours = {(p.get("spec") or {}).get("nodeName") for p in world.pods()} - {None}
    out = []
    for node_name in sorted(ours | {name(n) for n in named_nodes(world)}):
        node = nodes.get(node_name)
        if node is None:
            continue
        state, ready = _state(node)
        pressures = [c for c in PRESSURES if (condition(node, c) or {}).get("status") == "True"]
        fine = [c for c in PRESSURES if (condition(node, c) or {}).get("status") == "False"]
        on_node = snap.node_pods.get(node_name)
        capacity = quantity(((node.get("status") or {}).get("allocatable") or {}).get("pods"))
        running = [p for p in on_node or [] if (p.get("status") or {}).get("phase") in ("Running", "Pending")
                   and not (p.get("metadata") or {}).get("deletionTimestamp")]
        affected = [p for p in world.pods() if (p.get("spec") or {}).get("nodeName") == node_name]
        others = [n for n in nodes if n != node_name and _state(nodes[n])[0] == "Ready"]
        evidence = [f"node {node_name}: Ready {(ready or {}).get('status', '?')}"
                    + (f" ({ready.get('reason')}: {short(ready.get('message') or '', 160)})" if ready and state != "Ready"
                       else "") + "; " + ", ".join(f"{c} {(condition(node, c) or {}).get('status', '?')}"
                                                   for c in PRESSURES)]
        if capacity and on_node is not None:
            evidence.append(f"node {node_name}: {len(running)} pods of {capacity:g} allocatable (status.allocatable.pods)")
        ruled = [(c.replace("Pressure", " pressure"), f"{c} False on {node_name}") for c in fine]
        if state != "Ready":
            since = when((ready or {}).get("lastTransitionTime"))
            out.append(Verdict(
                family="node",
                cause=f"node {node_name} being {state}" + (" (the kubelet stopped posting status)" if state == "Unknown"
                                                            else ""),
                title=f"Node {node_name} is {state}" + (f" since {since:%H:%M} UTC" if since else "")
                      + f": {len(affected)} of this workload's pods run there"
                      + (f"; other nodes are Ready ({', '.join(others[:3])})" if others else ""),
                evidence=evidence, severity="critical",
                ruled_out=[("The application", "its pods fail only on this node")] if others else [],
                plans=[Plan(f"Recover or drain node {node_name} (kubectl drain) so its pods reschedule on Ready nodes; "
                            "restarting the workload cannot help while the node is down")],
                subjects={node_name} | {name(p) for p in affected},
            ))
        elif pressures:
            out.append(Verdict(
                family="node", cause=f"{', '.join(pressures)} on node {node_name}",
                title=f"Node {node_name} reports {', '.join(pressures)}: the kubelet evicts pods there",
                evidence=evidence, severity="warning", ruled_out=ruled,
                plans=[Plan(f"Free {', '.join(p.replace('Pressure', '').lower() for p in pressures)} on {node_name} or "
                            "move pods off it")], subjects={node_name},
            ))
        elif capacity and on_node is not None and len(running) >= capacity:
            out.append(Verdict(
                family="node", cause=f"node {node_name} being at its pod capacity ({len(running)}/{capacity:g} pods)",
                title=f"Node {node_name} runs {len(running)}/{capacity:g} pods: at its pod capacity (max pods), new pods "
                      "cannot be scheduled there",
                evidence=evidence, severity="warning", ruled_out=ruled,
                plans=[Plan(f"Spread pods to other nodes or add nodes; {node_name}'s max pods ({capacity:g}) is set by "
                            "its kubelet / instance type")], subjects={node_name},
            ))
        elif flapped := _flap(world, node, ready):
            out.append(flapped)
        elif node_name not in ours:
            out.append(Verdict(
                family="node", cause=f"node {node_name}, which is healthy", current=False, severity="info",
                title=f"Node {node_name} is Ready with no pressure"
                      + (f", {len(running)}/{capacity:g} pods" if capacity and on_node is not None else ""),
                evidence=evidence, ruled_out=ruled, subjects={node_name},
            ))
    return out


def _flap(world: World, node: dict, ready: dict | None) -> Verdict | None:
    """A node that went NotReady recently and is Ready again: history, not a current fault."""
    events = [e for e in world.events("NodeNotReady", kind="Node") if (e.get("involvedObject") or {}).get("name")
              == name(node)] + [e for e in (world.snap.events if world.snap else []) if (e.get("involvedObject") or {})
                                .get("name") == name(node) and e.get("reason") in ("NodeNotReady", "NodeReady")]
    back = when((ready or {}).get("lastTransitionTime"))
    down = min((t for e in events if e.get("reason") == "NodeNotReady" for t in [event_time(e)] if t), default=None)
    if down is None or back is None or back < down or (world.ago(back) or SETTLED) > 4 * SETTLED:
        return None
    return Verdict("node", f"node {name(node)} flapping NotReady at {down:%H:%M} UTC",
                   f"Node {name(node)} was NotReady at {down:%H:%M} UTC for {(back - down).total_seconds():.0f} s and "
                   f"is Ready again since {back:%H:%M} UTC: recovered, nothing failing on it now",
                   [f"event NodeNotReady on node {name(node)} at {down:%H:%M:%S} UTC",
                    f"node {name(node)}: condition Ready True since {back:%H:%M:%S} UTC"], "info", current=False,
                   subjects={name(node)})


RULE = Rule("node", 18, ("nodes (conditions, allocatable)", "pods per node", "node events"), detect,
            "Node NotReady / Unknown / pressure / at pod capacity: pods it takes down, other nodes fine",
            explains=(ERRORS,))
