"""Job failures: BackoffLimitExceeded or DeadlineExceeded, explained by what its pods' runs said — also for a Job
that has been deleted, from the events and logs it left behind."""
from __future__ import annotations

from bot.engine.causes.base import (
    Plan, Rule, Verdict, World, condition, event_text, last_terminated, name, short, start_failures, statuses,
    terminated,
)
from bot.engine.causes.crash import EXIT_MEANING, TELLING
from bot.engine.causes.dependency import failing_dependencies


def _runs(world: World) -> list[tuple[str, int | None]]:
    out = []
    for pod in world.snap.pods if world.snap else []:
        for status in statuses(pod):
            term = terminated(status) or last_terminated(status)
            if term and term.get("exitCode") not in (0, None):
                out.append((name(pod), term.get("exitCode")))
    return out


def said(world: World) -> list[tuple[str, str]]:
    """(where, line) the failed runs wrote that tell why, most frequent first: pod output, then Loki."""
    lines = [(w, line) for w, line in world.log_lines() if TELLING.search(line)]
    seen: dict[str, tuple[str, str]] = {}
    for where, line in lines:
        seen.setdefault(line, (where, line))
    return list(seen.values())


def detect(world: World) -> list[Verdict]:
    deleted = world.workload is None and any(
        (e.get("involvedObject") or {}).get("kind") == "Job" for e in world.events())
    job = world.workload if world.kind == "Job" else None
    if world.kind == "CronJob" and world.snap is not None:  # its newest run
        job = max(world.snap.items("jobs"), key=lambda j: (j.get("metadata") or {}).get("creationTimestamp") or "",
                  default=None)
    failed = condition(job, "Failed") if job else None
    if not deleted and not (failed and failed.get("status") == "True"):
        return []
    spec = (job or {}).get("spec") or {}
    status = (job or {}).get("status") or {}
    reason = (failed or {}).get("reason") or next(
        (e.get("reason") for e in world.events("BackoffLimitExceeded", "DeadlineExceeded")), None)
    runs = _runs(world)
    lines = said(world)
    codes = sorted({c for _, c in runs if c is not None})
    evidence = []
    if job:
        evidence.append(f"job {name(job)}: condition Failed True, reason {reason}: {(failed or {}).get('message', '')}; "
                        f"status.failed {status.get('failed', 0)}, spec.backoffLimit {spec.get('backoffLimit', 6)}")
    evidence += [short(event_text(e), 300) for e in world.events("BackoffLimitExceeded", "DeadlineExceeded")[:1]]
    evidence += [f"pod {p}: terminated exitCode {c} ({EXIT_MEANING.get(c, 'its own exit status')})" for p, c in runs[:3]]
    evidence += [f"log ({where}): {short(line, 300)}" for where, line in lines[:3]]
    why = f"the pods' output says “{short(lines[0][1], 220)}”" if lines else "its pods' output could not be read"
    dependency = failing_dependencies(world)
    never_started = start_failures(world)
    fix = (f"Fix what the runs report ({short(lines[0][1], 120)})" if lines else
           "Read the failed pods' logs and fix the job")
    ruled = [("Scheduling", "its pods were scheduled and ran")] if runs else []
    if never_started:
        start = never_started[0]
        why = (f"container {start.container} never started, so there is no log: {start.meaning} "
               f"(“{start.words}”)")
        evidence += [f"pod {s.pod} container {s.container}: {s.source}: {short(s.message, 300)}"
                     for s in never_started[:2]]
        fix = start.fix
        ruled = [("Application error", f"no process ever ran: the runtime could not exec {start.command}"),
                 ("Image pull", "the image was pulled; the command is not in it")]
    elif dependency:
        host, port, where, line = dependency[0]
        why = f"they cannot connect to {host}{':' + port if port else ''}: “{short(line, 200)}”"
        evidence.append(f"log ({where}): {short(line, 300)}")
    exits = f", exit code {', '.join(map(str, codes))}" if codes else ""
    gone = f"Job {world.service} no longer exists (it was deleted); from the events and logs it left: " if deleted else ""
    what = {"BackoffLimitExceeded": f"reached its backoff limit ({spec.get('backoffLimit', 6)}): every attempt failed",
            "DeadlineExceeded": f"ran past activeDeadlineSeconds ({spec.get('activeDeadlineSeconds')})"}.get(
        reason or "", "failed")
    return [Verdict(
        family="job",
        cause=f"its runs failing{exits}: {why}",
        title=f"{gone}Job {world.service} failed ({reason or 'failed'}): it {what}; "
              f"{len(runs) or status.get('failed', 0)} failed pod(s){exits}; {why}",
        evidence=evidence,
        severity="critical" if not deleted else "warning",
        current=True,
        ruled_out=ruled,
        plans=[Plan(f"{fix}, then re-run the Job (delete and recreate it: a failed Job does not retry on its own)")],
        sources={"kubernetes", "logs"} if lines else {"kubernetes"},
        subjects={p for p, _ in runs},
    )]


RULE = Rule("job", 12, ("jobs", "pods (terminated message)", "pods/log", "events (Failed)", "Loki"), detect,
            "Job failed (BackoffLimitExceeded / DeadlineExceeded) with the failing runs' exit codes and log lines, "
            "or the command the runtime could not exec (no log at all); also for a deleted Job")
