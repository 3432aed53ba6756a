"""An init container that fails: the main containers never start (Init:Error, Init:CrashLoopBackOff)."""
from __future__ import annotations

from bot.engine.causes.base import (
    Plan, Rule, Verdict, World, last_terminated, name, short, start_failures, statuses, terminated, waiting,
)
from bot.engine.causes.crash import EXIT_MEANING


def detect(world: World) -> list[Verdict]:
    stuck = []
    for pod in world.pods():
        for status in statuses(pod, init=True):
            term = terminated(status) or last_terminated(status)
            wait = waiting(status) or {}
            if (term and term.get("exitCode") not in (0, None)) or wait.get("reason") in (
                    "CrashLoopBackOff", "RunContainerError", "CreateContainerError", "StartError"):
                stuck.append((pod, status, term or {}, wait))
                break
    if not stuck:
        return []
    pod, status, term, wait = stuck[0]
    code = term.get("exitCode")
    message = term.get("message") or wait.get("message") or ""
    text = next((t for key, t in world.pod_logs.items() if key == f"{name(pod)}/{status.get('name')}"), "")
    lines = [line for line in text.splitlines() if line.strip()][-2:]
    evidence = [f"pod {name(pod)} init container {status.get('name')}: "
                + (f"terminated exitCode {code} ({term.get('reason')})" if code is not None else "")
                + (f" {wait.get('reason')}" if wait.get("reason") else "")
                + (f": {short(message, 240)}" if message else "") + f", restartCount {status.get('restartCount', 0)}"]
    evidence += [f"log of init container {status.get('name')}: {short(line, 240)}" for line in lines]
    said = short(message or " / ".join(lines), 200)
    start = next((s for s in start_failures(world, init=True)
                  if (s.pod, s.container) == (name(pod), status.get("name"))), None)
    fix = start.fix if start else (f"Fix init container {status.get('name')} (its command, image or what it "
                                   "waits for)")
    return [Verdict(
        family="init_container",
        cause=f"its init container {status.get('name')} failing"
              + (f" (exit code {code}, {EXIT_MEANING.get(code, 'its own exit status')})" if code is not None else "")
              + (f": “{said}”" if said else ""),
        title=f"{len(stuck)} of {len(world.pods())} pods stuck initialising: init container {status.get('name')} "
              f"fails" + (f" with exit code {code}" if code is not None else "") + "; the main containers never start",
        evidence=evidence,
        severity="critical",
        ruled_out=[("Main container crash", f"the main containers have not started; init container "
                                            f"{status.get('name')} fails before them")],
        plans=[Plan(f"{fix}; a restart runs it again the same way")],
        sources={"kubernetes", "logs"} if lines else {"kubernetes"},
        subjects={name(p) for p, *_ in stuck},
    )]


RULE = Rule("init_container", 15, ("pods (init containers)", "pods/log"), detect,
            "Init container failures: its exit code and message; the main container never started")
