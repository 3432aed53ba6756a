"""Evicted pods: the kubelet evicted them to relieve node pressure (memory, disk, ephemeral storage); the pod's
own status says what the node ran low on and what the container used against its request."""
from __future__ import annotations

import re

from bot.engine.causes.base import Plan, Rule, Verdict, World, name, short

LOW_ON = re.compile(r"low on resource:?\s*(?P<resource>[\w-]+)", re.IGNORECASE)


def detect(world: World) -> list[Verdict]:
    pods = world.snap.pods if world.snap else []
    evicted = [p for p in pods if (p.get("status") or {}).get("reason") == "Evicted"]
    if not evicted:
        return []
    message = (evicted[0].get("status") or {}).get("message") or ""
    low = LOW_ON.search(message)
    resource = low.group("resource") if low else "a resource"
    running = [p for p in world.pods() if (p.get("status") or {}).get("phase") == "Running"]
    current = not running
    return [Verdict(
        family="eviction",
        cause=f"evictions: the node ran low on {resource} and the kubelet evicted {len(evicted)} pod(s)",
        title=f"{len(evicted)} pod(s) Evicted ({short(message, 200)})"
              + ("" if current else f"; {len(running)} replacement pod(s) are running now"),
        evidence=[f"pod {name(evicted[0])}: status.reason Evicted: {short(message, 300)}"],
        severity="critical" if current else "warning",
        current=current or len(evicted) > len(running),
        plans=[Plan(f"Set requests for {resource} close to what the containers really use (pods above their request are "
                    f"evicted first) and free {resource} on the node")],
        subjects={name(p) for p in evicted},
    )]


RULE = Rule("eviction", 19, ("pods (status.reason, message)",), detect,
            "Evicted pods: what the node ran low on, usage against requests")
