"""Evicted pods. Two different faults share the reason Evicted: the node ran low on something (memory, disk,
ephemeral storage) and the kubelet evicted pods to relieve it — node work — or the pod exceeded its OWN
ephemeral-storage limit (the containers' limits, one container's, an emptyDir's sizeLimit) — the pod's fix: a higher
limit or less written to its emptyDir. The pod's status message says which."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, Obj, Plan, Rule, Verdict, World, meta, name, short

LOW_ON = re.compile(r"low on resource:?\s*(?P<resource>[\w-]+)", re.IGNORECASE)
USING = re.compile(r"Container (?P<container>\S+) was using (?P<used>\S+), (?:request|which exceeds its request) "
                   r"(?:is|of) (?P<request>[^,.]+)", re.IGNORECASE)
# The kubelet's messages for a pod over its own limits (pkg/kubelet/eviction): whose limit, and how much.
OWN_LIMIT = (
    re.compile(r"ephemeral local storage usage exceeds the total limit of containers (?P<limit>[\w.]+?)\.?\s*$",
               re.IGNORECASE),
    re.compile(r"Container (?P<container>\S+) exceeded its local ephemeral storage limit \"?(?P<limit>[\w.]+?)\"?\.?"
               r"\s*$", re.IGNORECASE),
    re.compile(r"Usage of EmptyDir volume \"?(?P<volume>[^\" ]+)\"? exceeds the limit \"?(?P<limit>[\w.]+?)\"?\.?\s*$",
               re.IGNORECASE),
)


def _scratch(pod: Obj, only: str | None) -> list[tuple[str, str, str]]:
    """(volume, mount path, sizeLimit) of the pod's disk-backed emptyDirs, those of volume `only` when given."""
    spec = pod.get("spec") or {}
    dirs = {v.get("name"): v["emptyDir"] for v in spec.get("volumes") or []
            if isinstance(v.get("emptyDir"), dict) and v["emptyDir"].get("medium") != "Memory"}
    return [(m.get("name"), m.get("mountPath"), dirs[m.get("name")].get("sizeLimit") or "")
            for c in spec.get("containers") or [] for m in c.get("volumeMounts") or []
            if m.get("name") in dirs and (only is None or m.get("name") == only)]


def _own_limit(world: World, pod: Obj, match: re.Match[str], current: bool, evicted: list[Obj]) -> Verdict:
    fields = match.groupdict()
    limit, container, volume = fields["limit"], fields.get("container"), fields.get("volume")
    whose = (f"its emptyDir {volume}'s sizeLimit" if volume else f"container {container}'s limit" if container
             else "the total of its containers' limits")
    spec = pod.get("spec") or {}
    limits = [f"{c.get('name')} limit {((c.get('resources') or {}).get('limits') or {}).get('ephemeral-storage')}"
              f", request {((c.get('resources') or {}).get('requests') or {}).get('ephemeral-storage') or 'none'}"
              for c in spec.get("containers") or []
              if ((c.get("resources") or {}).get("limits") or {}).get("ephemeral-storage")]
    dirs = _scratch(pod, volume)
    paths = [path for _, path, _ in dirs if path]
    written = [(where, line) for where, line in world.log_lines() if any(p in line for p in paths)][-2:]
    what = (f"what it writes to its emptyDir {', '.join(f'{v} ({p})' for v, p, _ in dirs)}, its writable layer and "
            "its logs") if dirs else "its writable layer, logs and emptyDir volumes"
    bare = not meta(pod).get("ownerReferences")
    evidence = [f"pod {name(pod)}: status.reason Evicted: {short((pod.get('status') or {}).get('message') or '', 300)}"]
    evidence += [f"container {line}" for line in limits]
    evidence += [f"log ({where}): {short(line, 200)}" for where, line in written]
    fix = (f"raise the ephemeral-storage limit ({limit}) to what the work really writes, or write less to "
           + (f"{', '.join(paths)} (clean up as it goes, or put the scratch data on a PersistentVolume)" if paths
              else "local disk") + " — the node has room: this is the pod's own limit, node work does not help")
    return Verdict(
        family="eviction",
        cause=f"the pod exceeding its own ephemeral-storage limit ({whose}, {limit}): the kubelet evicted it — "
              "not node pressure",
        title=f"Pod {name(pod)} was evicted for exceeding its own ephemeral-storage limit of {limit} ({whose}): "
              f"{what} count against it" + (f" (the logs show it writing to {', '.join(paths)})" if written else "")
              + ("; it is a bare pod: nothing recreates it" if bare else ""),
        evidence=evidence,
        severity="critical" if current else "warning",
        current=current or len(evicted) > 1,
        ruled_out=[("Node pressure", "the kubelet's message is the pod's own limit, not “The node was low on "
                                     "resource”"),
                   ("Out of memory", "the container was not OOMKilled: exit 137 here is the kubelet's SIGKILL of the "
                                     "evicted pod")],
        plans=[Plan(fix[0].upper() + fix[1:] + (f"; then run {name(pod)} again: a bare pod is not recreated" if bare
                                                 else ""))],
        sources={"kubernetes", "logs"} if written else {"kubernetes"},
        subjects={name(p) for p in evicted},
    )


def detect(world: World) -> list[Verdict]:
    pods = world.snap.pods if world.snap else []
    evicted = [p for p in pods if (p.get("status") or {}).get("reason") == "Evicted"]
    if not evicted:
        return []
    message = (evicted[0].get("status") or {}).get("message") or ""
    running = [p for p in world.pods() if (p.get("status") or {}).get("phase") == "Running"]
    current = not running
    own = next((m for pattern in OWN_LIMIT for m in [pattern.search(message)] if m), None)
    if own is not None:
        return [_own_limit(world, evicted[0], own, current, evicted)]
    low = LOW_ON.search(message)
    resource = low.group("resource") if low else "a resource"
    node = (evicted[0].get("spec") or {}).get("nodeName")
    usage = [f"container {m.group('container')} used {m.group('used')} against a request of {m.group('request')}"
             for m in USING.finditer(message)]
    return [Verdict(
        family="eviction",
        cause=f"evictions: node {node or '?'} ran low on {resource} and the kubelet evicted {len(evicted)} pod(s)",
        title=f"{len(evicted)} pod(s) Evicted ({short(message, 200)})"
              + ("" if current else f"; {len(running)} replacement pod(s) are running now"),
        evidence=[f"pod {name(evicted[0])}: status.reason Evicted: {short(message, 300)}"] + usage,
        severity="critical" if current else "warning",
        current=current or len(evicted) > len(running),
        plans=[Plan(f"Set requests for {resource} close to what the containers really use (pods above their request are "
                    f"evicted first) and free {resource} on node {node or 'the node'}")],
        subjects={name(p) for p in evicted},
    )]


RULE = Rule("eviction", 19, ("pods (status.reason, message, ephemeral-storage limits, emptyDir)", "logs"), detect,
            "Evicted pods: the pod's own ephemeral-storage limit (containers, emptyDir sizeLimit) vs node pressure "
            "(what the node ran low on, usage against requests)", explains=(ERRORS,))
