"""OOMKilled: the container hit its memory limit — a limit too low for the load, or a leak that grows until it."""
from __future__ import annotations

import re

from bot.engine.causes.base import (
    ERRORS, SETTLED,
    Plan,
    Rule,
    Verdict,
    World,
    last_terminated,
    name,
    quantity,
    ready,
    short,
    spec_container,
    statuses,
    terminated,
    when,
)
from bot.engine.causes import memory_leak
from bot.engine.causes.memory_leak import growth

OOM_LINE = re.compile(r"(?i)OutOfMemoryError|out of memory|heap space|cannot allocate memory|MemoryError")


def _mib(value: float | None) -> str:
    return "?" if value is None else (f"{value / 2**30:.3g}Gi" if value >= 2**30 else f"{value / 2**20:.0f}Mi")


def detect(world: World) -> list[Verdict]:
    killed = []
    for pod in world.pods():
        for status in statuses(pod):
            term = terminated(status) or last_terminated(status)
            if term and term.get("reason") == "OOMKilled":
                killed.append((pod, status, term))
    if not killed:
        return []
    pod, status, term = killed[0]
    container = status.get("name", "")
    limit = quantity(spec_container(pod.get("spec") or {}, container).get("resources", {}).get("limits", {}).get("memory"))
    finished = when(term.get("finishedAt"))
    current = any(not ready(p) for p, _, _ in killed) or finished is None or (world.ago(finished) or SETTLED) < SETTLED
    memory = world.signals.get("memory_ratio")
    leak = memory is not None and memory.trend == "increasing" or growth(world) is not None or bool(
        memory_leak.detect(world))
    lines = world.find_lines(OOM_LINE)
    evidence = [f"pod {name(pod)} container {container}: lastState.terminated reason OOMKilled, exit code "
                f"{term.get('exitCode', 137)}" + (f", memory limit {_mib(limit)}" if limit else ", no memory limit")]
    if memory is not None and memory.value is not None:
        evidence.append(f"metric {memory.query}: memory at {memory.value:.0%} of its limit, {memory.trend or 'flat'}")
    evidence += [f"log ({where}): {short(line, 240)}" for where, line, _ in lines[:1]]
    kind = "a leak: memory grows steadily until the limit" if leak else f"the {_mib(limit)} limit is too low for its load"
    fix = (f"Find what grows in {container} (heap dump, recent change) and raise the limit above {_mib(limit)} only as "
           "a stopgap" if leak else f"Raise the memory limit of {container} above {_mib(limit)} (or lower what it holds "
           "in memory)") + "; a restart only buys time until the next OOM kill"
    pods = {name(p) for p, _, _ in killed}
    if not current:
        return [Verdict("oom", f"an OOM kill at {finished:%H:%M} UTC", f"pod {name(pod)} was OOMKilled at "
                        f"{finished:%H:%M} UTC and has not been since; it is ready", evidence, "info", current=False,
                        subjects=pods)]
    return [Verdict(
        family="oom",
        cause=f"its container {container} running out of memory (OOMKilled at its {_mib(limit)} limit; {kind})",
        title=f"{len(pods)} of {len(world.pods())} pods OOMKilled (exit code 137): container {container} hits its "
              f"{_mib(limit)} memory limit",
        evidence=evidence,
        severity="critical",
        ruled_out=[("Application crash", "the kernel killed it for memory (OOMKilled), it did not exit by itself")],
        plans=[Plan(fix)],
        sources={"kubernetes"} | ({"metrics"} if memory is not None and memory.value is not None else set())
        | ({"logs"} if lines else set()),
        subjects=pods,
    )]


RULE = Rule("oom", 30, ("pods", "memory metrics", "logs"), detect,
            "OOMKilled: memory limit hit, a limit too low vs a leak that grows (memory trend)", explains=(ERRORS,))
