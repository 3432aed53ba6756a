"""The diagnosis playbooks: diagnose (every read tool at once), changes ("what changed?"), pods (Kubernetes
state only) and alerts (firing alerts, then a diagnosis of each service involved)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.answer import Answer, Finding, Link, Recommendation, RuledOut, ToolStatus
from bot.engine import reasoning
from bot.engine.calls import Calls, combine
from bot.engine.findings import CORRELATION, CRASH_REASONS, Evidence
from bot.engine.playbooks import Context, links
from bot.engine.resolve import Resolver, Target
from bot.engine.summary import changes_lead, write_summary
from bot.engine.text import clock, join, plural, short
from tools.base import ToolResult
from tools.kubernetes import DeploymentReport, PodStatus

if TYPE_CHECKING:
    from bot.alerts.view import Investigation

CHANGES_LOOKBACK = timedelta(hours=24)
CRASH_LOG_LINES = 50
CRASH_LOG_PODS = 3
MAX_ALERT_SERVICES = 3
MAX_ALERT_FINDINGS = 10
ALERT_SEVERITY = {"P0": "critical", "P1": "critical", "P2": "warning", "critical": "critical", "warning": "warning"}


# --- evidence -------------------------------------------------------------------------------------
def _crashed(pod: PodStatus) -> bool:
    return not pod.ready and not pod.terminating and (pod.reason in CRASH_REASONS or pod.restarts > 0)


async def kubernetes_state(ctx: Context, target: Target) -> ToolResult[Any]:
    """The deployment report and, for a crashing pod, the last lines of its crashed container."""
    kube, ref = ctx.toolbox.kubernetes, target.ref
    started = time.perf_counter()
    status = await kube.deployment_status(ref.namespace, ref.deployment, window_seconds=int(ctx.window_seconds))
    if not status.ok or status.data is None:
        return status
    report: DeploymentReport = status.data
    current = report.current.number if report.current else None
    crashed = [p for p in report.pods if _crashed(p) and (current is None or p.revision == current)]
    # the previous container's log is kept for a while only, so ask a few crashed pods at once
    logs = await asyncio.gather(
        *(
            kube.pod_logs(
                ref.namespace,
                pod.name,
                container=next((c.name for c in pod.containers if c.restarts > 0 and not c.init), None),
                previous=True,
                tail_lines=CRASH_LOG_LINES,
            )
            for pod in crashed[:CRASH_LOG_PODS]
        )
    )
    crash_log = next((log.data for log in logs if log.ok and log.data and log.data.strip()), None)
    return ToolResult("kubernetes", data=(report, crash_log), ms=(time.perf_counter() - started) * 1000)


async def control_plane_state(ctx: Context, target: Target, since_seconds: float) -> ToolResult[Any]:
    cp = ctx.toolbox.control_plane
    name = target.config.name
    audit, incidents = await asyncio.gather(
        cp.audit_logs(name, since_seconds), cp.open_incidents(name)
    )
    return combine("control_plane", {"audit_logs": audit, "open_incidents": incidents})


async def gather_evidence(
    ctx: Context, target: Target, *, lookback: timedelta, kubernetes_only: bool = False
) -> Evidence:
    ref = target.ref
    calls: dict[str, Any] = {"kubernetes": kubernetes_state(ctx, target)}
    if not kubernetes_only:
        calls = {
            "metrics": ctx.toolbox.metrics.golden_signals(ref, ctx.window, ctx.thresholds()),
            **calls,
            "logs": ctx.toolbox.logs.error_patterns(ref, ctx.window_seconds),
            "control_plane": control_plane_state(ctx, target, lookback.total_seconds()),
        }
        intro = f"Checking metrics, Kubernetes, logs, changes and incidents of {target.name}…"
    else:
        intro = f"Reading the deployment and pods of {target.name}…"
    results = await ctx.calls.run(calls, intro=intro)
    ev = Evidence(
        service=target.name,
        namespace=ref.namespace,
        deployment=ref.deployment,
        now=ctx.now,
        window=ctx.window,
        window_seconds=ctx.window_seconds,
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
            ev.signals = result.data
        elif name == "kubernetes":
            ev.report, ev.crash_log = result.data
        elif name == "logs":
            ev.logs = result.data
        elif name == "control_plane":
            audit, incidents = result.data["audit_logs"], result.data["open_incidents"]
            ev.audit = audit.data.items if audit.ok else None
            ev.incidents = incidents.data.items if incidents.ok else None
            if audit.ok or incidents.ok:
                ev.checked.append(name)
    return ev


# --- diagnose and changes -------------------------------------------------------------------------
async def diagnose(ctx: Context, target: Target, *, focus: str = "diagnose") -> Answer:
    lookback = CHANGES_LOOKBACK if focus == "changes" else timedelta(seconds=ctx.window_seconds) + CORRELATION
    ev = await gather_evidence(ctx, target, lookback=lookback)
    d = reasoning.diagnose(ev)
    recommendations, problems = await ctx.propose(d.plans)
    lead = changes_lead(d, ctx.now, lookback) if focus == "changes" else None
    summary = write_summary(
        d, recommendations, approvers_configured=ctx.approvers_configured, problems=problems, lead=lead
    )
    signals = {s.name: s for s in ev.signals or []}
    promql = signals["error_rate"].query if "error_rate" in signals else None
    return _answer(ctx, target, d, summary, recommendations, links(
        ctx.settings, target, promql=promql, logql=ev.logs.query if ev.logs else None
    ))


def _answer(
    ctx: Context, target: Target, d: reasoning.Diagnosis, summary: str, recommendations: list[Recommendation],
    answer_links: list[Link],
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
    return _answer(ctx, target, d, summary, recommendations, links(ctx.settings, target))


# --- alerts ---------------------------------------------------------------------------------------
async def alerts(ctx: Context, resolver: Resolver) -> Answer:
    results = await ctx.calls.run(
        {"control_plane": ctx.toolbox.control_plane.firing_alerts()}, intro="Reading firing alerts…"
    )
    listing = results["control_plane"].data if results["control_plane"].ok else None
    if listing is None:
        return ctx.answer(intent="alerts", summary=f"Could not read the alerts: {ctx.calls.statuses[-1].error}.")
    firing = listing.items
    if not firing:
        return ctx.answer(intent="alerts", summary="No alerts are firing.", confidence=0.9)
    findings = [
        Finding(
            severity=ALERT_SEVERITY.get(a.severity, "info"),  # type: ignore[arg-type]
            source="control_plane",
            title=f"{a.name} ({a.severity}) firing"
            + (f" on {a.resource_name}" if a.resource_name else "")
            + (f" since {clock(a.fired_at)}" if a.fired_at else "")
            + (f": {short(a.message, 120)}" if a.message else ""),
            evidence=f"control plane alert {a.id}",
        )
        for a in firing
    ]
    targets: list[Target] = []
    unknown: list[str] = []
    for alert in firing:
        if not alert.resource_name:
            continue
        found = await resolver.lookup(alert.resource_name)
        if found is None or found.target is None:
            unknown.append(alert.resource_name)
        elif found.target.name not in (t.name for t in targets):
            targets.append(found.target)
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
    ]
    for target, answer in zip(targets, diagnoses, strict=True):
        findings += [
            f.model_copy(update={"title": f"{target.name}: {f.title}"}) for f in answer.findings if f.severity != "info"
        ]
        recommendations += answer.recommendations
        ruled_out += [r.model_copy(update={"cause": f"{target.name}: {r.cause}"}) for r in answer.ruled_out]
        statuses = _merge_statuses(statuses, answer.tools)
        sentences.append(answer.summary.split(". ")[0].rstrip(".") + ".")
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


