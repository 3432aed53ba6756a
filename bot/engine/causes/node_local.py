"""Failures confined to the pods on one node: when exactly the workload's pods there log errors and those elsewhere
do not, the node is the suspect, not the names or services the errors mention. What the node shows says why: its
connection-tracking table full (the kernel drops new connections, so DNS lookups and connects time out from every
pod there), or an alert firing on it. The fix is on the node: move the pods off it and relieve it."""
from __future__ import annotations

from bot.engine.causes.base import ERRORS, SLOW, Plan, Query, Rule, Verdict, World, name, short

CONNTRACK = Query("conntrack_ratio", "node_nf_conntrack_entries / node_nf_conntrack_entries_limit")
CONNTRACK_LIMIT = Query("conntrack_limit", "node_nf_conntrack_entries_limit")
FULL = 0.95  # of nf_conntrack_max: new flows are dropped at the limit, and bursts reach it first
ERROR_LEVELS = {"error", "critical", "fatal"}


def _node_of(world: World, labels: dict[str, str]) -> str | None:
    """The node a node-exporter series is about: its node label, else its instance's address."""
    nodes = world.snap.items("nodes") if world.snap else []
    if labels.get("node"):
        return labels["node"]
    host = labels.get("instance", "").rsplit(":", 1)[0]
    return next((name(n) for n in nodes for a in (n.get("status") or {}).get("addresses") or []
                 if a.get("address") == host), None)


def _by_node(world: World, query: Query) -> dict[str, float]:
    result = world.metrics.get(query.key)
    out = {}
    for series in result.series if result else []:
        node = _node_of(world, series.labels)
        if node and series.samples:
            out[node] = series.samples[-1].value
    return out


def detect(world: World) -> list[Verdict]:
    pods = world.pods()
    node_of = {name(p): (p.get("spec") or {}).get("nodeName") for p in pods}
    if len(set(node_of.values()) - {None}) < 2:
        return []
    erring = {line.labels.get("pod") for line in world.tail if line.level in ERROR_LEVELS} & set(node_of)
    speaking = {line.labels.get("pod") for line in world.tail} & set(node_of)
    if not erring:
        return []
    bad_nodes = {node_of[p] for p in erring}
    fine = speaking - erring
    # every pod on the bad nodes fails, and pods elsewhere answer without errors
    if any(node_of[p] in bad_nodes for p in fine) or not fine or any(
            node_of[p] in bad_nodes and p not in erring for p in node_of):
        return []
    signal = world.signals.get("error_rate")
    ratios, limits = _by_node(world, CONNTRACK), _by_node(world, CONNTRACK_LIMIT)
    out = []
    for node in sorted(bad_nodes - {None}):
        alerts = [a for a in world.alerts if a.resource_name == node or node in (a.message or "")]
        full = ratios.get(node, 0) >= FULL
        if not full and not alerts:
            continue
        here = sorted(p for p in erring if node_of[p] == node)
        others = sorted({node_of[p] for p in fine} - {None})
        line = next((ln for ln in reversed(world.tail) if ln.labels.get("pod") in here and ln.level in ERROR_LEVELS), None)
        evidence = [f"pods: {len(here)} of {len(pods)} log errors, all on {node} ({', '.join(here)}); the pods on "
                    f"{', '.join(others)} log none"]
        if line is not None:
            evidence.append(f"log (Loki, {line.labels.get('pod')}): {short(line.line, 240)}")
        neighbours = sorted(name(p) for p in (world.snap.node_pods.get(node) or [] if world.snap else [])
                            if name(p) not in node_of)
        limit = limits.get(node)
        if full:
            evidence.append(f"metric {CONNTRACK.promql}: {node} at {ratios[node]:.0%}"
                            + (f" of {limit:.0f} entries (nf_conntrack_max)" if limit else "")
                            + "".join(f"; {n} at {v:.0%}" for n, v in sorted(ratios.items()) if n != node))
        evidence += [f"alert {a.name} firing on {node}: {short(a.message or '', 200)}" for a in alerts]
        what = (f"{node}'s conntrack table being full ({ratios[node]:.0%}" + (f" of {limit:.0f} entries" if limit else "")
                + "): the kernel drops new connections, so DNS lookups and connects from the pods there time out") \
            if full else f"node {node} ({'; '.join(a.name + ': ' + short(a.message or '', 120) for a in alerts)})"
        fix = (f"Cordon {node} and move {world.service}'s pods off it (`kubectl cordon {node}`, then delete "
               f"{', '.join(here)} so they reschedule elsewhere)")
        if full:
            fix += (f"; raise net.netfilter.nf_conntrack_max on {node}" + (f" above {limit:.0f}" if limit else "")
                    + " or stop what fills it" + (f" (other pods there: {', '.join(neighbours[:4])})" if neighbours
                                                   else "") + "; a restart in place cannot help")
        out.append(Verdict(
            family="node_local",
            cause=what,
            title=f"Only {world.service}'s pods on {node} fail ({len(here)} of {len(pods)}): "
                  + (f"{node}'s conntrack table is full and the kernel is dropping packets" if full else
                     f"{node} has alerts firing"),
            evidence=evidence,
            severity="critical" if signal is not None and signal.health == "critical" else "warning",
            ruled_out=[("The called service or DNS itself", f"the same calls succeed from the pods on "
                                                            f"{', '.join(others)}")],
            plans=[Plan(fix)],
            sources={"kubernetes", "logs"} | ({"metrics"} if full else set()) | ({"control_plane"} if alerts else set()),
            subjects={node, *here},
        ))
    return out


RULE = Rule("node_local", 16, ("pods (node)", "logs (per pod)", "node_nf_conntrack_*", "alerts"), detect,
            "Failures confined to the pods on one node that shows trouble (conntrack table full, its alerts): the "
            "node, not the names its pods fail to reach",
            queries=(CONNTRACK, CONNTRACK_LIMIT), explains=(ERRORS, SLOW))
