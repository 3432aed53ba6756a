"""The diagnosis playbooks: diagnose (every read tool at once), changes ("what changed?"), pods (Kubernetes
state only) and alerts (firing alerts, then a diagnosis of each service involved)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.answer import Answer, Chart, ChartMark, Finding, Link, Recommendation, RuledOut, Table, ToolStatus, Verdict
from bot.engine import causes as catalogue
from bot.engine import reasoning, timeframe
from bot.engine.calls import Calls, combine
from bot.engine.causes.change import concerning
from bot.engine.causes.dependency import failing_dependencies
from bot.engine.causes.finalizers import owners as finalizer_owners
from bot.engine.findings import CORRELATION, Evidence, asked_status_queries, world_of
from bot.engine.causes.base import Verdict, World, configured_hosts, when
from bot.engine.intents import candidates, parse
from bot.engine.playbooks import Context, links
from bot.engine.resolve import Resolver, Target
from bot.engine.summary import changes_lead, headline, verdict, write_summary
from bot.engine.text import clock, duration, join, label, plural, short
from tools.base import ToolResult
from tools.control_plane import Alert, Resource
from tools.kubernetes import DeploymentReport, Snapshot

if TYPE_CHECKING:
    from bot.alerts.view import Investigation

CHANGES_LOOKBACK = timedelta(hours=24)
PAUSED_LOOKBACK = timedelta(days=30)
CRASH_LOG_LINES = 50
CRASH_LOG_PODS = 3
MAX_FOLLOWED = 2
MAX_HOPS = 3
FOLLOWED = ("dependency", "service_endpoints")  # causes that are about a callee, which is diagnosed too
TAIL_LINES = 300
MAX_ALERT_SERVICES = 3
VERDICT_ORDER: list[Verdict] = ["failing", "degraded", "inconclusive", "healthy"]  # worst first
MAX_ALERT_FINDINGS = 10
ALERT_SEVERITY = {"P0": "critical", "P1": "critical", "P2": "warning", "critical": "critical", "warning": "warning"}


# --- evidence -------------------------------------------------------------------------------------
def _failed_runs(pod: dict[str, Any]) -> list[tuple[str, bool]]:
    """(container, previous) whose output says why the pod fails: a restarted container's previous run, or a
    container (init ones included) that terminated with an error."""
    out = []
    status = pod.get("status") or {}
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        term = (c.get("state") or {}).get("terminated") or {}
        if c.get("restartCount"):
            out.append((c["name"], True))
        elif term.get("exitCode") not in (0, None):
            out.append((c["name"], False))
    return out


async def kubernetes_state(ctx: Context, target: Target, nodes: list[str]) -> ToolResult[Any]:
    """The workload's snapshot, the Deployment report when it is one, and the output of failed runs (the
    previous container's log is kept for a while only, so a few failing pods are asked at once)."""
    kube, ref = ctx.toolbox.kubernetes, target.ref
    started = time.perf_counter()
    snapped = await kube.snapshot(ref.namespace, ref.deployment, nodes=nodes)
    if not snapped.ok or snapped.data is None:
        return snapped
    snap: Snapshot = snapped.data
    report = kube.deployment_report(snap, window_seconds=int(ctx.window_seconds))
    failing = [(p, c, prev) for p in snap.pods for c, prev in _failed_runs(p)][:CRASH_LOG_PODS]
    logs = await asyncio.gather(*(
        kube.pod_logs(ref.namespace, p["metadata"]["name"], container=c, previous=prev, tail_lines=CRASH_LOG_LINES)
        for p, c, prev in failing))
    pod_logs = {f"{p['metadata']['name']}/{c}": log.data for (p, c, _), log in zip(failing, logs, strict=True)
                if log.ok and log.data and log.data.strip()}
    crash_log = next(iter(pod_logs.values()), None)
    return ToolResult("kubernetes", data=(report, crash_log, snap, pod_logs), ms=(time.perf_counter() - started) * 1000)


async def metrics_state(ctx: Context, target: Target) -> ToolResult[Any]:
    """The golden signals, and the PromQL the catalogue's rules declare they need."""
    ref = target.ref
    queries = {q.key: q.promql.format(namespace=ref.namespace, workload=ref.deployment, service=target.name)
               for rule in catalogue.CATALOGUE for q in rule.queries}
    queries |= asked_status_queries(ctx.request.text, target.name, ctx.settings.defaults.window, ctx.window_seconds)
    signals, *answers = await asyncio.gather(
        # now's values over the catalog's window; their points back to a moment the question is about
        ctx.toolbox.metrics.golden_signals(ref, ctx.settings.defaults.window, ctx.thresholds(), span=ctx.lookback),
        *(ctx.toolbox.metrics.query(q) for q in queries.values()),
    )
    if not signals.ok:
        return signals
    extra = {key: a.data for key, a in zip(queries, answers, strict=True) if a.ok and a.data is not None}
    return ToolResult("metrics", data=(signals.data, extra), ms=signals.ms)


async def logs_state(ctx: Context, target: Target) -> ToolResult[Any]:
    """The error patterns, and the newest raw lines (all levels): trends such as a heap that grows or calls that
    slow down are in the numbers of lines that one pattern folds together."""
    logs = ctx.toolbox.logs
    patterns, tail = await asyncio.gather(
        logs.error_patterns(target.ref, ctx.window_seconds),
        logs.tail(target.ref.log_selector, ctx.window_seconds, TAIL_LINES),
    )
    if not patterns.ok:
        return patterns
    return ToolResult("logs", data=(patterns.data, tail.data if tail.ok else []), ms=patterns.ms)


async def control_plane_state(ctx: Context, target: Target, since_seconds: float) -> ToolResult[Any]:
    cp = ctx.toolbox.control_plane
    name = target.config.name
    # every change of the window: which of them concern the service is known once its logs and pods are read
    audit, incidents, alerts, resolved = await asyncio.gather(
        cp.audit_logs(None, since_seconds), cp.open_incidents(name), cp.firing_alerts(), cp.resolved_alerts()
    )
    return combine("control_plane", {"audit_logs": audit, "open_incidents": incidents, "alerts": alerts,
                                     "resolved_alerts": resolved})


def _concerns(alert: Alert, target: Target, words: set[str]) -> bool:
    """Whether a firing alert is about this service (or an object the question names)."""
    texts = f"{alert.resource_name or ''} {alert.message or ''}"
    return alert.resource_name in (target.name, target.ref.deployment) or target.ref.deployment in texts or any(
        w and w in texts for w in words)


async def gather_evidence(
    ctx: Context, target: Target, *, lookback: timedelta, kubernetes_only: bool = False
) -> Evidence:
    ref = target.ref
    words = set(candidates(ctx.request.text))
    calls: dict[str, Any] = {"kubernetes": kubernetes_state(ctx, target, sorted(words))}
    if not kubernetes_only:
        calls = {
            "metrics": metrics_state(ctx, target),
            **calls,
            "logs": logs_state(ctx, target),
            "control_plane": control_plane_state(ctx, target, lookback.total_seconds()),
        }
        intro = f"Checking metrics, Kubernetes, logs, changes and incidents of {target.name}…"
    else:
        intro = f"Reading the workload and pods of {target.name}…"
    results = await ctx.calls.run(calls, intro=intro)
    ev = Evidence(
        service=target.name,
        namespace=ref.namespace,
        deployment=ref.deployment,
        now=ctx.now,
        window=ctx.window,
        # what is wrong now is judged on the catalog's window, however far back the reads go
        window_seconds=ctx.current_seconds,
        question=ctx.request.text,
        known=set(ctx.settings.services),
    )
    statuses = {s.name: s for s in ctx.calls.statuses}
    for name in calls:  # in the order asked, not the order they finished
        result = results[name]
        if not result.ok:
            ev.failed[name] = statuses[name].error or "failed"
        if result.data is None:
            continue
        if name != "control_plane":
            ev.checked.append(name)
        if name == "metrics":
            ev.signals, ev.metrics = result.data
        elif name == "kubernetes":
            ev.report, ev.crash_log, ev.snapshot, ev.pod_logs = result.data
        elif name == "logs":
            ev.logs, ev.log_tail = result.data
        elif name == "control_plane":
            audit, incidents, alerts, resolved = (result.data[k] for k in (
                "audit_logs", "open_incidents", "alerts", "resolved_alerts"))
            ev.audit = audit.data.items if audit.ok else None
            ev.incidents = incidents.data.items if incidents.ok else None
            # an alert on a node the service's pods run on concerns them too (a node's trouble is theirs)
            hosts = {(p.get("spec") or {}).get("nodeName") for p in (ev.snapshot.pods if ev.snapshot else [])} - {None}
            ev.alerts = [a for a in alerts.data.items if _concerns(a, target, words) or a.resource_name in hosts] \
                if alerts.ok else []
            ev.resolved_alerts = [a for a in resolved.data.items if _concerns(a, target, words)] if resolved.ok else []
            if audit.ok or incidents.ok:
                ev.checked.append(name)
    if ev.audit is not None:
        # a change to a host the pods are configured to reach (a flushed cache) explains trouble that no change to the
        # service does; the rules that read it say so, it is not one of the service's own changes
        hosts = set(configured_hosts(world_of(ev)))
        ev.dependency_audit = [a for a in ev.audit if a.resource_name in hosts]
        ev.audit = concerning(world_of(ev), ev.audit)
    if not kubernetes_only:
        ev.resources = await _dependencies(ctx, ev)
        await _since_paused(ctx, target, ev)
        await _controllers_stopped(ctx, ev)
    return ev


async def _controllers_stopped(ctx: Context, ev: Evidence) -> None:
    """A controller that would remove a stuck object's finalizers was usually stopped long before the deletion: its
    audit log is read back PAUSED_LOOKBACK, so the answer can say who scaled it down, when and why."""
    names = finalizer_owners(world_of(ev))
    if not names or ev.audit is None:
        return
    found = await asyncio.gather(*(ctx.toolbox.control_plane.audit_logs(n, PAUSED_LOOKBACK.total_seconds())
                                   for n in names))
    seen = {a.id for a in ev.dependency_audit}
    ev.dependency_audit += [a for r in found if r.ok and r.data for a in r.data.items if a.id not in seen]


async def _since_paused(ctx: Context, target: Target, ev: Evidence) -> None:
    """A suspended CronJob has done nothing since its last run, and a paused Deployment has rolled out nothing since
    it was paused, so who did it is older than the window: the audit log is read back to then (at most
    PAUSED_LOOKBACK)."""
    workload = ev.snapshot.workload if ev.snapshot is not None else None
    if workload is None or ev.audit is None:
        return
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    created = (workload.get("metadata") or {}).get("creationTimestamp")
    if ev.snapshot.kind == "CronJob" and spec.get("suspend"):
        last = when(status.get("lastScheduleTime") or created)
    elif ev.snapshot.kind == "Deployment" and spec.get("paused"):
        paused = next((c for c in status.get("conditions") or [] if c.get("reason") == "DeploymentPaused"), {})
        last = when(paused.get("lastTransitionTime") or created)
    else:
        return
    back = min(PAUSED_LOOKBACK, ctx.now - last if last else PAUSED_LOOKBACK) + CORRELATION
    if back.total_seconds() <= ctx.window_seconds + CORRELATION.total_seconds():
        return
    older = await ctx.toolbox.control_plane.audit_logs(target.config.name, back.total_seconds())
    if older.ok and older.data is not None:
        seen = {a.id for a in ev.audit}
        ev.audit += [a for a in older.data.items if a.id not in seen]


async def _dependencies(ctx: Context, ev: Evidence) -> list[Resource]:
    """Control-plane resources named by the failing calls in the logs: one hop to what the service depends on."""
    hosts = [h for h, *_ in failing_dependencies(world_of(ev))][:MAX_FOLLOWED]
    if not hosts or not ctx.toolbox.control_plane.configured:
        return []
    found = await asyncio.gather(*(ctx.toolbox.control_plane.resources(h.split(".")[0]) for h in hosts))
    return [r for result in found if result.ok and result.data for r in result.data.items]


# --- diagnose and changes -------------------------------------------------------------------------
async def diagnose(ctx: Context, target: Target, *, focus: str = "diagnose", follow: bool = True) -> Answer:
    def since() -> timedelta:
        return CHANGES_LOOKBACK if focus == "changes" else timedelta(seconds=ctx.window_seconds) + CORRELATION

    # a moment the question names is read from the start; an alert that resolved before the window, once seen
    wider = timeframe.widened(timeframe.asked_since(ctx.request.text, ctx.now), ctx.now, ctx.window_seconds)
    if wider is not None:
        ctx = replace(ctx, lookback=wider)
    ev = await gather_evidence(ctx, target, lookback=since())
    if wider is None:
        wider = timeframe.widened(timeframe.resolved_since(ctx.request.text, ev.resolved_alerts, ctx.now), ctx.now, ctx.window_seconds)
        if wider is not None:
            # the wider read replaces the first: the answer lists its calls, not both
            ctx = replace(ctx, lookback=wider, calls=Calls(ctx.progress, deadline=ctx.calls.deadline))
            await ctx.progress(f"An alert about {target.name} resolved earlier: reading the last {wider}…")
            ev = await gather_evidence(ctx, target, lookback=since())
    d = reasoning.diagnose(ev)
    hop = await _follow(ctx, target, ev, d) if follow else None
    if hop is not None:
        d.findings.append(hop)
    await ctx.progress(key_results(d))
    recommendations, problems = await ctx.propose(d.plans)
    lead = changes_lead(d, ctx.now, since()) if focus == "changes" else None
    summary = write_summary(
        d, recommendations, approvers_configured=ctx.approvers_configured, problems=problems, lead=lead
    ) + (f" {hop.title}." if hop is not None else "")
    signals = {s.name: s for s in ev.signals or []}
    promql = signals["error_rate"].query if "error_rate" in signals else None
    return _answer(ctx, target, d, summary, recommendations, links(
        ctx.settings, target, promql=promql, logql=ev.logs.query if ev.logs else None
    ), chart=key_chart(ev, d))


def key_results(d: reasoning.Diagnosis) -> str:
    """What each backend said first, as one progress line: 'metrics: Error rate 8.3% (critical > 5%) · kubernetes: …'."""
    first: dict[str, str] = {}
    for finding in d.findings:  # most severe first
        first.setdefault(finding.source, short(finding.title, 100))
    return " · ".join(f"{source}: {title}" for source, title in first.items() if source != "engine") or (
        f"Weighing the evidence on {d.service}…")


def key_chart(ev: Evidence, d: reasoning.Diagnosis) -> Chart | None:
    """What the service's users feel (its error rate, else its latency) when that is unhealthy, else the signal that
    turned bad first, else the worst: over the window, with its thresholds, its onset and the change before it;
    None when no signal is unhealthy or it has too few points to draw. Restarts come last: a crash loop's count
    rises and falls with its backoff, which reads as recoveries that did not happen."""
    unhealthy = [s for s in ev.signals or [] if s.health in ("warning", "critical")]
    felt = [s for s in unhealthy if s.name in ("error_rate", "latency_p99")]
    signal = min(felt, key=lambda s: (s.health != "critical", s.name != "error_rate"), default=None) or d.onset or min(
        unhealthy, key=lambda s: (s.health != "critical", s.name == "restarts"), default=None)
    if signal is None or len(signal.points) < 2:
        return None
    start = signal.points[0].time
    marks = []
    if signal.onset is not None and signal.onset > start:
        marks.append(ChartMark(at=signal.onset, label="onset", kind="onset"))
    change = d.correlated or next((c for c in d.changes if c.rollout and c.at >= start), None)
    if change is not None and change.at >= start:
        marks.append(ChartMark(at=change.at, label=change.what, kind="change"))
    warning, critical = signal.thresholds or (None, None)
    return Chart(
        title=f"{label(signal.name)} of {ev.service}",
        unit=signal.unit,
        query=signal.query,
        points=[(p.time, p.value) for p in signal.points],
        warning=warning,
        critical=critical,
        marks=marks,
    )


async def _follow(ctx: Context, target: Target, ev: Evidence, d: reasoning.Diagnosis) -> Finding | None:
    """Along failing dependencies that are services of ours (a hop, or a few in a cascade): diagnose each too,
    and say which one started failing first — in a cascade the earliest failing service is the origin."""
    resolver = Resolver(ctx.settings, ctx.toolbox.kubernetes)

    async def quiet(_: str) -> None:
        return None

    chain: list[tuple[Target, Evidence, reasoning.Diagnosis]] = [(target, ev, d)]
    while len(chain) <= MAX_HOPS:
        last = chain[-1][2]
        if last.cause is None or last.cause.key not in FOLLOWED:
            break
        seen = {t.name for t, _, _ in chain}
        dep = None
        for host in sorted(h.split(".")[0] for h in last.cause.subjects):
            found = await resolver.lookup(host, chain[-1][0].namespace) if host not in seen else None
            if found is not None and found.target is not None and found.target.name not in seen:
                dep = found.target
                break
        if dep is None:
            break
        sub = Context(ctx.settings, ctx.toolbox, ctx.actions, ctx.request, ctx.session, quiet,
                      Calls(quiet, deadline=ctx.calls.deadline), ctx.now)
        dep_ev = await gather_evidence(sub, dep, lookback=timedelta(seconds=ctx.window_seconds) + CORRELATION)
        chain.append((dep, dep_ev, reasoning.diagnose(dep_ev)))
    if len(chain) == 1:
        return None
    parts = []
    for dep, _, dep_d in chain[1:]:
        if dep_d.cause is not None:
            parts.append(f"{dep.name} is failing too, because of {dep_d.cause.text}")
        elif dep_d.healthy:
            parts.append(f"{dep.name} itself looks healthy ({'; '.join(dep_d.checked[:2])}): the trouble is between them")
        else:
            parts.append(f"{dep.name} needs a look: " + "; ".join(f.title for f in dep_d.findings if f.severity != "info"))
    starts = [(start, t.name) for t, e, _ in chain for start in [_failing_since(e)] if start is not None]
    order = ""
    if len(starts) > 1:
        first_at, first = min(starts)
        others = ", ".join(f"{n} at {clock(at)}" for at, n in sorted(starts) if n != first)
        order = f"; {first} started failing first ({clock(first_at)}; {others}): {first} is the origin of the cascade"
    path = " → ".join(t.name for t, _, _ in chain)
    worst = next((dd.cause.severity for _, _, dd in chain[1:] if dd.cause is not None), "info")
    return Finding(severity=worst, source="engine",  # type: ignore[arg-type]
                   title=f"Followed the failing calls {path}: " + "; ".join(parts) + order,
                   evidence="; ".join(f.title for _, _, dd in chain[1:] for f in dd.findings[:2]) or None)


def _failing_since(ev: Evidence) -> datetime | None:
    """When the service started failing: its error rate's onset, else its first error line in the window."""
    onsets = [s.onset for s in ev.signals or [] if s.name == "error_rate" and s.onset is not None
              and s.health in ("warning", "critical")]
    patterns = [p.first_seen for p in (ev.logs.patterns if ev.logs else []) if p.level == "error"]
    return min(onsets + patterns, default=None)


def _answer(
    ctx: Context, target: Target, d: reasoning.Diagnosis, summary: str, recommendations: list[Recommendation],
    answer_links: list[Link], *, chart: Chart | None = None, table: Table | None = None,
) -> Answer:
    return ctx.answer(
        intent="diagnose",
        service=target.name,
        namespace=target.namespace,
        summary=summary,
        findings=d.findings,
        recommendations=recommendations,
        ruled_out=d.ruled_out,
        confidence=d.confidence,
        links=answer_links,
        verdict=verdict(d),
        headline=headline(d, brief=True),
        since=d.onset.onset if d.onset is not None else None,
        chart=chart,
        table=table,
    )


# --- pods -----------------------------------------------------------------------------------------
def pods_lead(report: DeploymentReport) -> str:
    """'shop/checkout: 0/3 ready; checkout-7c9f8d6b5d-x2k9p CrashLoopBackOff (4 restarts), …'."""
    shown = []
    for pod in report.pods[:5]:
        state = "terminating" if pod.terminating else ("ready" if pod.ready else (pod.reason or pod.phase or "not ready"))
        restarts = f", {plural(pod.restarts, 'restart')}" if pod.restarts else ""
        revision = f" rev {pod.revision}" if pod.revision is not None else ""
        shown.append(f"{pod.name}{revision} {state}{restarts}")
    more = f" and {len(report.pods) - 5} more" if len(report.pods) > 5 else ""
    return f"{report.namespace}/{report.name}: {report.ready}/{report.desired} ready; " + "; ".join(shown) + more + "."


POD_ROWS = 20  # a phone screen of pods; the rest are counted


def pods_table(report: DeploymentReport, now: datetime) -> Table:
    """The pods, not-ready and most-restarted first, as the rows a person scans: state, restarts, age, node."""
    rows = []
    for pod in report.pods[:POD_ROWS]:
        state = "Terminating" if pod.terminating else ("Ready" if pod.ready else (pod.reason or pod.phase or "Not ready"))
        rows.append([pod.name, state, str(pod.restarts), duration(now - pod.created_at) if pod.created_at else "–",
                     pod.node or "–"])
    return Table(title=f"Pods of {report.namespace}/{report.name} ({report.ready}/{report.desired} ready)",
                 columns=["Pod", "State", "Restarts", "Age", "Node"], rows=rows, numeric=[2, 3],
                 more=max(0, len(report.pods) - POD_ROWS))


async def pods(ctx: Context, target: Target) -> Answer:
    """Kubernetes state only; recommendations are said, not proposed (ask for the action to propose it)."""
    ev = await gather_evidence(ctx, target, lookback=timedelta(0), kubernetes_only=True)
    d = reasoning.diagnose(ev)
    recommendations = [
        Recommendation(
            title=plan.title
            + (f" (say “{plan.action.kind.replace('_', ' ')} {target.name}” to propose it)"
               if plan.action is not None and plan.action.kind in ("rollback", "restart") else "")
        )
        for plan in d.plans
        if plan.action is None or plan.action.kind != "ack_incident"
    ]
    lead = pods_lead(ev.report) if ev.report is not None else None
    summary = write_summary(d, recommendations, approvers_configured=True, lead=lead)
    table = pods_table(ev.report, ctx.now) if ev.report is not None and ev.report.pods else None
    return _answer(ctx, target, d, summary, recommendations, links(ctx.settings, target), table=table)


# --- alerts ---------------------------------------------------------------------------------------
async def _named_service(ctx: Context, resolver: Resolver) -> Target | None:
    """The service the question names, if any: its diagnosis explains the alerts about it."""
    parsed = parse(ctx.request.text)
    key = resolver.from_catalog(parsed.text)
    if key is not None:
        return resolver.catalog_target(key)
    for word in parsed.candidates:
        found = await resolver.lookup(word)
        if found is not None and found.target is not None:
            return found.target
    return None


async def _nodes(ctx: Context, names: list[str], firing: list[Alert]) -> tuple[list[tuple[str, list[Verdict]]], list[str]]:
    """Alert subjects that are nodes, each with what the catalogue says about it; and the names that are not."""
    if not names or not ctx.toolbox.kubernetes.configured:
        return [], names
    namespace = ctx.settings.defaults.namespace
    snaps = await asyncio.gather(*(ctx.toolbox.kubernetes.snapshot(namespace, n, kind="Pod", nodes=[n]) for n in names))
    nodes, rest = [], []
    for node, snapped in zip(names, snaps, strict=True):
        snap = snapped.data if snapped.ok else None
        if snap is None or not any(n.get("metadata", {}).get("name") == node for n in snap.items("nodes")):
            rest.append(node)
            continue
        world = World(service=node, namespace=namespace, now=ctx.now, window_seconds=ctx.window_seconds, snap=snap,
                      alerts=[a for a in firing if a.resource_name == node], question=ctx.request.text)
        nodes.append((node, [v for v in catalogue.detect(world) if v.family == "node"]))
    return nodes, rest


async def alerts(ctx: Context, resolver: Resolver) -> Answer:
    results = await ctx.calls.run(
        {"control_plane": ctx.toolbox.control_plane.firing_alerts()}, intro="Reading firing alerts…"
    )
    listing = results["control_plane"].data if results["control_plane"].ok else None
    if listing is None:
        return ctx.answer(intent="alerts", summary=f"Could not read the alerts: {ctx.calls.statuses[-1].error}.")
    firing = listing.items
    named = await _named_service(ctx, resolver)
    if not firing and named is None:
        return ctx.answer(intent="alerts", summary="No alerts are firing.", confidence=0.9)
    targets: list[Target] = [named] if named is not None else []
    unknown: list[str] = []
    for alert in firing:
        if not alert.resource_name:
            continue
        found = await resolver.lookup(alert.resource_name)
        if found is None or found.target is None:
            unknown.append(alert.resource_name)
        elif found.target.name not in (t.name for t in targets):
            targets.append(found.target)
    nodes, unknown = await _nodes(ctx, unknown, firing)
    words = set(candidates(ctx.request.text))
    node_names = {n for n, _ in nodes}
    # an alert about a diagnosed service or node is explained by that diagnosis, which carries the severity
    findings = [
        Finding(
            severity="info" if a.resource_name in node_names or any(_concerns(a, t, words) for t in targets)
            else ALERT_SEVERITY.get(a.severity, "info"),  # type: ignore[arg-type]
            source="control_plane",
            title=f"{a.name} ({a.severity}) firing"
            + (f" on {a.resource_name}" if a.resource_name else "")
            + (f" since {clock(a.fired_at)}" if a.fired_at else "")
            + (f": {short(a.message, 120)}" if a.message else ""),
            evidence=f"control plane alert {a.id}",
        )
        for a in firing
    ]
    for node, verdicts in nodes:
        findings += [Finding(severity=v.severity if v.current else "info", source="kubernetes", title=v.title,  # type: ignore[arg-type]
                             evidence="; ".join(v.evidence)) for v in verdicts]
    skipped = targets[MAX_ALERT_SERVICES:]
    targets = targets[:MAX_ALERT_SERVICES]

    async def one(target: Target) -> Answer:
        async def quiet(_: str) -> None:  # one progress line for all services, not one per tool per service
            return None

        sub = Context(ctx.settings, ctx.toolbox, ctx.actions, ctx.request, ctx.session, quiet,
                      Calls(quiet, deadline=ctx.calls.deadline), ctx.now)
        return await diagnose(sub, target)

    if targets:
        await ctx.progress(f"Diagnosing {join([t.name for t in targets])}…")
    diagnoses = await asyncio.gather(*(one(t) for t in targets))
    recommendations: list[Recommendation] = []
    ruled_out: list[RuledOut] = []
    statuses: list[ToolStatus] = list(ctx.calls.statuses)
    sentences = [
        f"{plural(len(firing), 'alert')} firing: "
        + "; ".join(f"{a.name} ({a.severity})" + (f" on {a.resource_name}" if a.resource_name else "") for a in firing[:5])
        + "."
    ] if firing else ["No alert is firing now (it may have resolved)."]
    alerted = sentences[0]
    for node, verdicts in nodes:
        ruled_out += [RuledOut(cause=what, why=why) for v in verdicts for what, why in v.ruled_out]
        recommendations += [Recommendation(title=p.title) for v in verdicts for p in v.plans]
        sentences.append(" ".join(f"{v.title}." for v in verdicts) or f"Node {node}: nothing found.")
    for target, answer in zip(targets, diagnoses, strict=True):
        findings += [
            f.model_copy(update={"title": f"{target.name}: {f.title}"}) for f in answer.findings if f.severity != "info"
        ]
        recommendations += answer.recommendations
        ruled_out += [r.model_copy(update={"cause": f"{target.name}: {r.cause}"}) for r in answer.ruled_out]
        statuses = _merge_statuses(statuses, answer.tools)
        sentences.append(answer.summary if len(targets) == 1 else answer.summary.split(". ")[0].rstrip(".") + ".")
    if firing and len(targets) == 1 and not nodes:
        # one service: its diagnosis goes on in the first sentence, so that sentence names the cause, not only alerts
        sentences[:2] = [sentences[0].rstrip(".") + " — " + sentences[1]]
    if unknown:
        sentences.append(f"Not diagnosed (not a known service): {join(sorted(set(unknown)))}.")
    if skipped:
        sentences.append(f"Not diagnosed (at most {MAX_ALERT_SERVICES} at once): {join([t.name for t in skipped])}.")
    only = targets[0] if len(targets) == 1 else None
    return ctx.answer(
        intent="alerts",
        service=only.name if only else None,
        namespace=only.namespace if only else None,
        summary=" ".join(sentences),
        findings=findings,
        recommendations=recommendations,
        ruled_out=ruled_out,
        confidence=min((a.confidence for a in diagnoses), default=0.9),
        links=[link for a in diagnoses for link in a.links],
        tools=statuses,
        verdict=min((a.verdict for a in diagnoses if a.verdict), key=VERDICT_ORDER.index, default=None),
        headline=alerted + (" " + diagnoses[0].headline if diagnoses and diagnoses[0].headline else ""),
        since=min((a.since for a in diagnoses if a.since), default=None),
        chart=next((a.chart for a in diagnoses if a.chart), None),
    )


# --- one alert group (bot.alerts) ------------------------------------------------------------------
async def alert_group(ctx: Context, resolver: Resolver, brief: Investigation) -> Answer:
    """The diagnose playbook for the service the alerts' labels name, with the alerts as its first findings."""
    source = "control_plane" if brief.source == "control_plane" else "metrics"
    fired = [
        Finding(
            severity=ALERT_SEVERITY.get(a.severity, ALERT_SEVERITY.get(a.severity.lower(), "warning")),  # type: ignore[arg-type]
            source=source,  # type: ignore[arg-type]
            title=f"{a.name}" + (f" ({a.severity})" if a.severity else "") + f" firing since {clock(a.starts_at)}"
            + (f": {short(a.annotations['summary'], 120)}" if a.annotations.get("summary") else ""),
            evidence=", ".join(f'{k}="{v}"' for k, v in sorted(a.labels.items()))[:500] or None,
        )
        for a in brief.alerts[:MAX_ALERT_FINDINGS]
    ]
    names = join(brief.names[:3]) + (f" and {len(brief.names) - 3} more" if len(brief.names) > 3 else "")
    target = await _alert_target(ctx, resolver, brief)
    if target is None:
        known = await resolver.known()
        tried = join(list(brief.service.candidates)) or "none of the configured service labels"
        summary = (
            f"{names} firing, and I could not tie it to a service: its labels name {tried}, which I don't know "
            f"(known services: {', '.join(known[:25]) or 'none yet'}). Add the service to the catalog, or set "
            "[alerts] service_labels to the label that names it."
        )
        return ctx.answer(intent="alerts", summary=summary, findings=fired, confidence=0.2)
    answer = await diagnose(ctx, target)
    if answer.verdict == "healthy":
        # severity follows user impact, not the alert's label: on a service that serves, the alert is said, not raised
        fired = [f.model_copy(update={"severity": "info"}) for f in fired]
    return answer.model_copy(
        update={"summary": f"{answer.summary} (Alerting: {names}.)", "findings": fired + answer.findings}
    )


async def _alert_target(ctx: Context, resolver: Resolver, brief: Investigation) -> Target | None:
    for name in brief.service.candidates:
        found = await resolver.lookup(name)
        if found is not None and found.target is not None:
            return found.target
    if brief.service.candidates and not ctx.settings.services and await resolver.deployments() is None:
        # nothing to check a name against (no catalog, no cluster): take the labels' word for it
        return resolver.deployment_target(
            brief.namespace or ctx.settings.defaults.namespace, brief.service.candidates[0], source="unverified"
        )
    return None


def _merge_statuses(into: list[ToolStatus], more: list[ToolStatus]) -> list[ToolStatus]:
    """One status per backend across several diagnoses: failed if any call failed, the slowest time."""
    merged = {s.name: s for s in into}
    for status in more:
        seen = merged.get(status.name)
        if seen is None:
            merged[status.name] = status
            continue
        merged[status.name] = ToolStatus(
            name=status.name,
            ok=seen.ok and status.ok,
            ms=max((m for m in (seen.ms, status.ms) if m is not None), default=None),
            error=seen.error or status.error,
        )
    return list(merged.values())


