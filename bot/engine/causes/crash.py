"""A container that exits on its own (CrashLoopBackOff, or a failed run): the exit code, what it means, and the
last lines the crashed container wrote."""
from __future__ import annotations

import re

from bot.engine.causes.base import (
    ERRORS, SETTLED, quoted, Plan, Rule, Verdict, World, last_terminated, name, ready, restarts, short, start_failures, statuses,
    terminated, waiting, when,
)

EXIT_MEANING = {
    1: "a generic application error", 2: "a usage or shell syntax error", 126: "the command cannot be executed",
    127: "the command was not found", 128: "the runtime could not start the container's process",
    134: "an abort (SIGABRT)", 137: "SIGKILL: killed from outside, not its own exit", 139: "a segmentation fault (SIGSEGV)",
    143: "SIGTERM", 255: "an exit status out of range",
}
TELLING = re.compile(r"(?i)(panic|fatal|exception|traceback|error|failed|cannot|can't|could not|refused|denied|"
                     r"not found|no such|invalid|syntax|timeout|timed out|unable|killed)")


def last_words(world: World, pod: str) -> list[str]:
    """The telling lines of a pod's failed run (the last lines when none tells), newest last."""
    text = next((t for key, t in world.pod_logs.items() if key.startswith(f"{pod}/")), "")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("[")]
    telling = [line for line in lines if TELLING.search(line)]
    return list(dict.fromkeys(telling or lines))[-3:]  # a line repeated on every retry is said once


def failed_runs(world: World) -> list[tuple[dict, dict, dict]]:
    """(pod, container status, termination) of main containers that exited non-zero, not OOM-killed, killed by a
    probe nor evicted (other rules own those)."""
    out = []
    for pod in world.pods():
        if (pod.get("status") or {}).get("reason") == "Evicted":
            continue
        for status in statuses(pod):
            term = terminated(status) or last_terminated(status)
            if not term or term.get("reason") == "OOMKilled" or term.get("exitCode") in (0, None):
                continue
            if term.get("exitCode") == 137 and term.get("reason") != "Error":
                continue
            out.append((pod, status, term))
    return out


def detect(world: World) -> list[Verdict]:
    runs = failed_runs(world)
    if not runs or world.kind in ("Job", "CronJob") and world.workload is not None and _job_failed(world):
        return []  # a failed Job is explained by the job rule, with these same runs
    killed = {(e.get("involvedObject") or {}).get("name") for e in world.events("Killing")
              if "probe" in (e.get("message") or "").lower()}
    runs = [r for r in runs if name(r[0]) not in killed]
    if not runs:
        return []
    pod, status, term = runs[0]
    code = term.get("exitCode")
    looping = [p for p, s, _ in runs if (waiting(s) or {}).get("reason") == "CrashLoopBackOff" or not ready(p)]
    finished = when(term.get("finishedAt"))
    recent = finished is None or (world.ago(finished) or SETTLED) < SETTLED
    current = bool(looping) or recent
    meaning = EXIT_MEANING.get(code, "the application's own exit status")
    words = last_words(world, name(pod))
    said = f"; its last log lines: “{' / '.join(short(w, 160) for w in words)}”" if words else ""
    evidence = [f"pod {name(pod)} container {status.get('name')}: "
                f"{'state' if terminated(status) else 'lastState'}.terminated exitCode {code} ({term.get('reason')})"
                f", restartCount {status.get('restartCount', 0)}"]
    evidence += [f"log of the crashed container {name(pod)}/{status.get('name')}: {short(w, 240)}" for w in words]
    # the plan is read on its own (a phone shows it without the evidence), so it quotes the line it points at
    fix = (f"Fix what makes {status.get('name')} exit: its last run ended with “{short(words[-1], 120)}”" if words
           else f"Fix what makes {status.get('name')} exit (`kubectl logs {name(pod)} -c {status.get('name')} "
                "--previous` shows its last run)")
    ruled_pull = ("Image pull", "the image was pulled: the container starts, then exits")
    start = next((s for s in start_failures(world) if (s.pod, s.container) == (name(pod), status.get("name"))), None)
    if start:
        meaning, said = f"it never started: {start.meaning}", f" (“{start.words}”)"
        evidence.append(f"pod {start.pod} container {start.container}: {start.source}: {short(start.message, 300)}")
        fix, ruled_pull = start.fix, ("Image pull", "the image was pulled; the command is not in it")
    pods = {name(p) for p, _, _ in runs}
    state = "CrashLoopBackOff" if any((waiting(s) or {}).get("reason") == "CrashLoopBackOff" for _, s, _ in runs) \
        else "exiting"
    if not current:
        return [Verdict("crash", f"a crash at {finished:%H:%M} UTC (exit code {code})",
                        f"pod {name(pod)} restarted {restarts(pod)} time(s), last at {finished:%H:%M} UTC "
                        f"(exit code {code}); it did not repeat and the pod is ready", evidence, "info",
                        current=False, subjects=pods)]
    return [Verdict(
        family="crash",
        cause=f"its container {status.get('name')} exiting with code {code} ({meaning}){said}",
        title=f"{len(pods)} of {len(world.pods())} pods {state}: container {status.get('name')} exits with code "
              f"{code} ({meaning}), {max(restarts(p) for p, _, _ in runs)} restarts",
        evidence=evidence,
        severity="critical" if len(looping) >= max(1, len(world.pods()) // 2) else "warning",
        ruled_out=[("OOM", f"exit code {code}, not OOMKilled"),
                   ruled_pull,
                   ("Liveness probe", "no Killing events for a failed probe: the process exits by itself")],
        plans=[Plan(f"{fix}; a restart runs the same code and cannot help")],
        sources={"kubernetes", "logs"} if words else {"kubernetes"},
        subjects=pods,
        # it exits after writing these lines: the rule that reads one of them as its cause is its mechanism
        shows=quoted(evidence),
    )]


def _job_failed(world: World) -> bool:
    return any(c.get("type") == "Failed" and c.get("status") == "True"
               for c in ((world.workload or {}).get("status") or {}).get("conditions") or [])


RULE = Rule("crash", 40, ("pods", "pods/log (previous)", "events"), detect,
            "CrashLoopBackOff / exit on start: exit code and its meaning, the crashed container's last log lines, or "
            "the command it could not exec", explains=(ERRORS,))
