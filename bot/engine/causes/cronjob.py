"""A CronJob that does not run: suspended (spec.suspend — since when and by whom, from the audit log or the field's
manager), a schedule the controller cannot parse, or a negative starting deadline (k8sgpt's CronJob analyzer); or,
with concurrencyPolicy Forbid, a run that hangs and so blocks every later schedule (JobAlreadyActive)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.engine.causes.base import Obj, Plan, Rule, Verdict, World, event_text, meta, name, set_true_by, short, when
from bot.engine.text import ago

# Five cron fields (numbers, ranges, steps, lists, names of months and days, ?) or one of the @ macros.
_FIELD = r"(?:\*|\?|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/\d+)?"
SCHEDULE = re.compile(rf"^(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)|"
                      rf"(?:{_FIELD}(?:,{_FIELD})*)(?:\s+{_FIELD}(?:,{_FIELD})*){{4}})$")

# an active run older than this with no JobAlreadyActive event yet is hung all the same
HUNG = timedelta(hours=2)
LOCK_WAIT = re.compile(r"(?i)waiting for (?:a |the )?lock|lock wait|waiting on (?:a |the )?lock|deadlock")
# what holds it: 'blocked by pid 31877', 'held by session 42', 'locked by transaction 9'
HOLDER = re.compile(r"(?i)(?:blocked|held|locked) by (?P<holder>(?:pid|process|session|transaction|backend) \d+)")


def _last_run(world: World, cronjob: Obj) -> str:
    status = cronjob.get("status") or {}
    last = when(status.get("lastScheduleTime"))
    if last is None:
        return "it has never run"
    ok = when(status.get("lastSuccessfulTime"))
    outcome = "and completed" if ok and ok >= last else ""
    return f"its last run was scheduled {last:%Y-%m-%d %H:%M} UTC ({ago(last, world.now)}) {outcome}".rstrip()


def detect(world: World) -> list[Verdict]:
    cronjob = world.workload if world.kind == "CronJob" else None
    if cronjob is None:
        return []
    spec = cronjob.get("spec") or {}
    cj = name(cronjob)
    evidence = [f"cronjob {cj}: spec.schedule “{spec.get('schedule')}”, spec.suspend {str(bool(spec.get('suspend'))).lower()}"
                f", status.lastScheduleTime {(cronjob.get('status') or {}).get('lastScheduleTime') or 'none'}"]
    out = []
    if spec.get("suspend"):
        who, at, why = set_true_by(world, cronjob, "suspend")
        since = (f" since {at:%Y-%m-%d %H:%M} UTC ({ago(at, world.now)})" if at else "") + (f" by {who}" if who else "")
        because = f" (“{why}”)" if why else ""
        if who:
            evidence.append(f"{'audit log' if at and not who.startswith('field manager') else 'managedFields'}: "
                            f"{who} set spec.suspend true{' at ' + f'{at:%Y-%m-%d %H:%M} UTC' if at else ''}{because}")
        deadline = spec.get("startingDeadlineSeconds")
        catch_up = (f"only a run missed less than startingDeadlineSeconds ({deadline} s) ago starts on resume"
                    if deadline is not None else "on resume the controller starts the most recent missed run")
        out.append(Verdict(
            family="cronjob",
            cause=f"CronJob {cj} being suspended{since}{because}: the controller creates no Job while spec.suspend "
                  "is true",
            title=f"CronJob {cj} is suspended (spec.suspend: true){since}{because}; no Job has been created since — "
                  f"{_last_run(world, cronjob)}",
            evidence=evidence,
            severity="warning",
            ruled_out=[("A failing run", "no run has been created since it was suspended: nothing ran, so nothing "
                                         "failed")],
            plans=[Plan(f"Resume it when it should run again: `kubectl patch cronjob {cj} -n {world.namespace} -p "
                        f"'{{\"spec\":{{\"suspend\":false}}}}'`; {catch_up}, so run the missed work by hand if it is "
                        f"needed: `kubectl create job --from=cronjob/{cj} {cj}-manual -n {world.namespace}`")],
            subjects={cj},
            service_ok=bool(who),  # paused on purpose by someone: not a fault of the CronJob, a decision to revisit
        ))
    out += _blocked_by_active_run(world, cronjob)
    schedule = str(spec.get("schedule") or "").strip()
    if schedule and not SCHEDULE.match(re.sub(r"^(?:CRON_)?TZ=\S+\s+", "", schedule)):
        out.append(Verdict(
            family="cronjob", cause=f"CronJob {cj}'s schedule “{schedule}” not being a valid cron expression",
            title=f"CronJob {cj} has an invalid schedule “{schedule}”: the controller cannot compute its next run",
            evidence=evidence, severity="critical",
            plans=[Plan(f"Fix spec.schedule of CronJob {cj}: five fields (minute hour day-of-month month day-of-week) "
                        "or a macro such as @daily")],
            subjects={cj},
        ))
    deadline = spec.get("startingDeadlineSeconds")
    if isinstance(deadline, int) and deadline < 0:
        out.append(Verdict(
            family="cronjob", cause=f"CronJob {cj}'s startingDeadlineSeconds {deadline} being negative",
            title=f"CronJob {cj} has a negative startingDeadlineSeconds ({deadline}): every run counts as missed",
            evidence=evidence, severity="critical",
            plans=[Plan(f"Set spec.startingDeadlineSeconds of CronJob {cj} to a positive number of seconds, or "
                        "remove it")],
            subjects={cj},
        ))
    return out


def _last_words(world: World, pod: str) -> str | None:
    """The newest line a running pod wrote (Loki's tail of the service, else its log read)."""
    lines = [line.line for line in world.tail if line.labels.get("pod") == pod]
    lines += [line for key, text in world.pod_logs.items() if key.startswith(f"{pod}/") for line in text.splitlines()]
    return lines[-1].strip() if lines else None


def _blocked_by_active_run(world: World, cronjob: Obj) -> list[Verdict]:
    """concurrencyPolicy Forbid with a run that never finishes: the controller skips every schedule while it is
    active (JobAlreadyActive), so nothing runs until it ends. What the run is stuck on is in its pod's newest lines."""
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    if spec.get("concurrencyPolicy") != "Forbid" or not status.get("active") or world.snap is None:
        return []
    cj = name(cronjob)
    skipped = [e for e in world.events("JobAlreadyActive") if (e.get("involvedObject") or {}).get("name") == cj]
    jobs = {name(j): j for j in world.snap.items("jobs")}
    out = []
    for ref in status.get("active") or []:
        run = str(ref.get("name"))
        started = when(((jobs.get(run) or {}).get("status") or {}).get("startTime"))
        if not skipped and (started is None or world.now - started < HUNG):
            continue
        skips = sum(int(e.get("count") or 1) for e in skipped)
        pods = [p for p in world.snap.pods if name(p).startswith(f"{run}-")]
        said = next((w for w in (_last_words(world, name(p)) for p in pods) if w), None)
        lock = LOCK_WAIT.search(said or "")
        holder = HOLDER.search(said or "")
        evidence = [f"cronjob {cj}: spec.concurrencyPolicy Forbid, status.active [{run}]"
                    + (f", status.lastSuccessfulTime {status.get('lastSuccessfulTime')}" if status.get("lastSuccessfulTime") else "")]
        evidence += [short(event_text(e), 300) for e in skipped[:1]]
        if started is not None:
            evidence.append(f"job {run}: status.startTime {started:%H:%M} UTC, still active ({ago(started, world.now)})")
        if said:
            evidence.append(f"log (pod {name(pods[0]) if pods else run}, newest line): {short(said, 300)}")
        stuck = (" waiting for a lock" + (f" held by {holder.group('holder')}" if holder else "")) if lock else ""
        plans = [Plan((f"End what the run waits on ({holder.group('holder')} holds the lock: end that session) and then "
                       if holder else "Find why the run hangs (its pod's newest lines) and ")
                      + f"delete Job {run} (`kubectl delete job {run} -n {world.namespace}`) so the next schedule "
                      "starts; a restart of the CronJob changes nothing while the run is active"),
                 Plan(f"Set spec.jobTemplate.spec.activeDeadlineSeconds on CronJob {cj} (below the schedule's "
                      "interval) so a hung run is killed instead of blocking every later one")]
        out.append(Verdict(
            family="cronjob",
            cause=f"its run {run} hanging" + (f" since {started:%H:%M} UTC" if started else "") + (
                f",{stuck}" if stuck else ""),
            title=f"CronJob {cj} starts no run: concurrencyPolicy Forbid and run {run} still active"
                  + (f" after {ago(started, world.now).removesuffix(' ago')}" if started else "") + (f",{stuck}" if stuck else "")
                  + (f"; the controller skipped {skips} schedule(s) (JobAlreadyActive)" if skips else ""),
            evidence=evidence,
            severity="warning",
            ruled_out=[("Suspended", f"spec.suspend is {str(bool(spec.get('suspend'))).lower()}: the controller "
                                     "tries each schedule and skips it because a run is active")],
            plans=plans,
            subjects={cj, run},
        ))
    return out


RULE = Rule("cronjob", 11, ("cronjobs (spec.suspend, schedule, status)", "jobs", "audit log", "managedFields"), detect,
            "CronJob not running: suspended (since when, by whom: audit log or managedFields), invalid schedule, "
            "negative starting deadline, a hung run that concurrencyPolicy Forbid lets block every schedule")
