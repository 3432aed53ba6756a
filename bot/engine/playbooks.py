"""Deterministic playbooks that need no LLM: logs, metrics (and free PromQL), capacity, cost, incidents and
proposed write actions. The diagnosis family (diagnose, changes, pods, alerts) is in bot.engine.diagnosis.

Every playbook runs its backend calls through the context's `Calls` (concurrent, bounded, recorded in the
answer's `tools`, reported as progress) and returns an Answer; nothing here raises for a backend failure.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Coroutine
from typing import Any
from urllib.parse import quote

from bot.actions import REGISTRY, Actions, Asked, NotProposed
from bot.answer import Action, Answer, Finding, Link, Recommendation, Table
from bot.approvals import ActionFailed, NotAllowed
from bot.config import Settings, parse_duration
from bot.engine.calls import Calls, combine
from bot.engine.findings import pattern_text, signal_title
from bot.engine.reasoning import Plan
from bot.engine.resolve import Target
from bot.engine.text import (
    clock,
    join,
    label,
    lower_first,
    number,
    percent,
    plural,
    short,
    value_text,
)
from bot.policy import NO_APPROVERS_HINT
from bot.ports import Progress, Request
from bot.presentation import query_of
from bot.toolbox import Toolbox
from sessions.store import ApprovalRecord, Conversation
from tools.base import ErrorCode, ToolResult
from tools.cost import CostForecast, CostReport, GroupCost, ServiceCost
from tools.logs import LogReport
from tools.metrics import QueryResult, Signal
from tools.redact import redact

DEFAULT_COST_DAYS = 7
MAX_SERIES_SHOWN = 10
# resource limits and requests per pod, for capacity (kube-state-metrics)
RESOURCE_QUERIES = {
    "limits": 'max by (resource) (kube_pod_container_resource_limits{{namespace="{namespace}",pod=~"{deployment}-.*"}})',
    "requests": 'max by (resource) (kube_pod_container_resource_requests{{namespace="{namespace}",pod=~"{deployment}-.*"}})',
}


@dataclass
class Context:
    """One request as the playbooks see it."""

    settings: Settings
    toolbox: Toolbox
    actions: Actions
    request: Request
    session: Conversation
    progress: Progress
    calls: Calls
    now: datetime
    told: set[str] = field(default_factory=set)  # refusals the asker was already told privately
    lookback: str | None = None  # a window wider than the catalog's, to reach a moment the question is about

    @property
    def window(self) -> str:
        return self.lookback or self.settings.defaults.window

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.window)

    @property
    def current_seconds(self) -> float:
        """The catalog's window: what decides what is wrong now, when `lookback` reads further back."""
        return parse_duration(self.settings.defaults.window)

    def thresholds(self) -> dict[str, tuple[float, float]]:
        return dict(self.settings.thresholds.model_dump())

    def answer(self, **fields: Any) -> Answer:
        fields.setdefault("tools", list(self.calls.statuses))
        fields["findings"] = [self._linked(f) for f in fields.get("findings", [])]
        return Answer(session_id=self.session.id, **fields)

    def _linked(self, finding: Finding) -> Finding:
        """A finding whose evidence is a query gets the link that opens it, when a UI's URL is configured."""
        if finding.link:
            return finding
        query = query_of(finding)
        link = query and query_link(self.settings, finding.source, query)
        return finding.model_copy(update={"link": link}) if link else finding

    @property
    def approvers_configured(self) -> bool:
        return self.actions.approvals.configured

    async def approval(self, action: Action) -> ApprovalRecord:
        """An approval row for `action`, requested by whoever asked; raises ActionFailed (it cannot be
        described, or the policy refuses it: they are told why privately)."""
        return await self.actions.propose_for(action, self.request, self.session.id, self.told)

    async def read(self, name: str, call: Coroutine[Any, Any, ToolResult[Any]]) -> Any:
        """One backend call, listed in the answer's tools; its data, or None when it failed."""
        return _data((await self.calls.run({name: call}))[name])

    async def propose(self, plans: list[Plan]) -> tuple[list[Recommendation], dict[str, str]]:
        """Each plan as a recommendation; those with an action become approval rows. A plan that cannot be
        proposed stays a recommendation without approval, and `problems` says why (by title)."""
        recommendations, problems = [], {}
        for plan in plans:
            if plan.action is None:
                recommendations.append(Recommendation(title=plan.title))
                continue
            try:
                approval = await self.approval(plan.action)
            except ActionFailed as exc:
                problems[plan.title] = str(exc)
                recommendations.append(Recommendation(title=plan.title, action=plan.action))
                continue
            recommendations.append(Recommendation(title=plan.title, action=plan.action, approval_id=approval.id))
        return recommendations, problems


# --- links ----------------------------------------------------------------------------------------
def query_link(settings: Settings, source: str, query: str) -> str | None:
    """Grafana Explore when GRAFANA_URL is set, else (PromQL only) the Prometheus graph page."""
    window = settings.defaults.window
    if settings.grafana_url:
        return explore_link(settings.grafana_url, "Loki" if source == "logs" else "Prometheus", query, window)
    if source == "metrics" and settings.prometheus_url:
        return f"{settings.prometheus_url}/graph?g0.expr={quote(query, safe='')}&g0.tab=0&g0.range_input={window}"
    return None


def explore_link(grafana: str, datasource: str, expr: str, window: str) -> str:
    left = {
        "datasource": datasource,
        "queries": [{"refId": "A", "expr": expr}],
        "range": {"from": f"now-{window}", "to": "now"},
    }
    return f"{grafana}/explore?left=" + quote(json.dumps(left, separators=(",", ":")), safe="")


def links(settings: Settings, target: Target | None, *, promql: str | None = None, logql: str | None = None) -> list[Link]:
    """The service's dashboard and runbook from the catalog, and Grafana Explore when GRAFANA_URL is set."""
    out = []
    if target is not None and target.config.dashboard:
        out.append(Link(title=f"{target.name} dashboard", url=target.config.dashboard))
    if target is not None and target.config.runbook:
        out.append(Link(title=f"{target.name} runbook", url=target.config.runbook))
    if settings.grafana_url:
        window = settings.defaults.window
        if promql:
            out.append(Link(title="Grafana Explore: metrics", url=explore_link(settings.grafana_url, "Prometheus", promql, window)))
        if logql:
            out.append(Link(title="Grafana Explore: logs", url=explore_link(settings.grafana_url, "Loki", logql, window)))
    return out


def failure_note(ctx: Context) -> str:
    """'Could not check logs (unreachable: …).' for the failed calls of this answer, or ''."""
    failed = [f"{s.name} ({s.error})" for s in ctx.calls.statuses if not s.ok]
    return (" Could not check " + join(failed) + ".") if failed else ""


def _data(result: ToolResult[Any]) -> Any:
    return result.data if result.ok else None


# --- logs -----------------------------------------------------------------------------------------
async def logs(ctx: Context, target: Target) -> Answer:
    results = await ctx.calls.run(
        {"logs": ctx.toolbox.logs.error_patterns(target.ref, ctx.window_seconds)},
        intro=f"Reading the error logs of {target.name}…",
    )
    report: LogReport | None = _data(results["logs"])
    base = {"intent": "logs", "service": target.name, "namespace": target.namespace}
    if report is None:
        return ctx.answer(
            **base,
            summary=f"Could not read the logs of {target.name}: {ctx.calls.statuses[-1].error}.",
            links=links(ctx.settings, target, logql=target.ref.log_selector),
        )
    findings = [
        Finding(
            severity="warning" if p.level == "error" else "info",
            source="logs",
            title=f"×{p.count} “{pattern_text(p)}” (last {clock(p.last_seen)})",
            evidence=short(redact(p.sample), 400),
            value=p.count,
        )
        for p in report.patterns
    ]
    scanned = f"{report.lines_scanned} error-looking lines scanned" + (
        ", Loki's limit was reached so counts are lower bounds" if report.limit_hit else ""
    )
    if report.patterns:
        top = "; ".join(f"“{pattern_text(p)}” ×{p.count}" for p in report.patterns[:3])
        summary = f"Top error patterns of {target.name} in the last {ctx.window} ({scanned}): {top}."
    else:
        summary = f"No error-looking lines in the logs of {target.name} in the last {ctx.window} ({report.query})."
    return ctx.answer(
        **base,
        summary=summary + _notes(report.notes),
        findings=findings,
        confidence=0.9,
        links=links(ctx.settings, target, logql=report.query),
    )


def _notes(notes: list[str]) -> str:
    return (" Note: " + "; ".join(notes) + ".") if notes else ""


# --- metrics --------------------------------------------------------------------------------------
async def metrics(ctx: Context, target: Target) -> Answer:
    results = await ctx.calls.run(
        {"metrics": ctx.toolbox.metrics.golden_signals(target.ref, ctx.window, ctx.thresholds())},
        intro=f"Querying the golden signals of {target.name}…",
    )
    signals: list[Signal] | None = _data(results["metrics"])
    base = {"intent": "metrics", "service": target.name, "namespace": target.namespace}
    if signals is None:
        return ctx.answer(**base, summary=f"Could not read the metrics of {target.name}: {ctx.calls.statuses[-1].error}.")
    findings = [
        Finding(
            severity={"critical": "critical", "warning": "warning"}.get(s.health, "info"),  # type: ignore[arg-type]
            source="metrics",
            title=signal_title(s) + (f", {s.trend}" if s.trend and s.trend != "stable" and s.value is not None else ""),
            evidence=s.query,
            value=s.value,
        )
        for s in signals
    ]
    parts = [
        f"{lower_first(label(s.name))} {value_text(s)}"
        + (f" ({s.health})" if s.health in ("warning", "critical") else "")
        for s in signals
    ]
    if all(s.value is None for s in signals):
        summary = (
            f"No metrics for {target.name} in the last {ctx.window}: every golden-signal query returned no data "
            "(not zero). Check that Prometheus scrapes it and that the catalog's metric templates match its labels."
        )
    else:
        bad = [s for s in signals if s.health in ("warning", "critical")]
        verdict = ("Out of bounds: " + join([signal_title(s) for s in bad]) + ".") if bad else "All within thresholds."
        summary = f"{target.name} over the last {ctx.window}: " + ", ".join(parts) + ". " + verdict
    error_rate = next((s.query for s in signals if s.name == "error_rate"), None)
    return ctx.answer(
        **base,
        summary=summary,
        findings=findings,
        confidence=0.9 if any(s.value is not None for s in signals) else 0.3,
        links=links(ctx.settings, target, promql=error_rate),
    )


async def promql(ctx: Context, expr: str) -> Answer:
    results = await ctx.calls.run({"metrics": ctx.toolbox.metrics.query(expr)}, intro="Running the PromQL query…")
    result: ToolResult[QueryResult] = results["metrics"]
    if not result.ok or result.data is None:
        assert result.error is not None
        rejected = result.error.code is ErrorCode.BAD_QUERY
        return ctx.answer(
            intent="metrics",
            status="failed",
            summary=("Prometheus rejected the query: " if rejected else "Could not run the query: ")
            + str(result.error.message if rejected else result.error),
        )
    data = result.data
    rows = []
    for series in data.series:
        if not series.samples:
            continue
        name = series.labels.get("__name__", "")
        labels_text = ", ".join(f'{k}="{v}"' for k, v in sorted(series.labels.items()) if k != "__name__")
        rows.append((f"{name}{{{labels_text}}}" if name or labels_text else "value", series.samples[-1].value))
    rows.sort(key=lambda row: -row[1] if not math.isnan(row[1]) else math.inf)
    findings = [
        Finding(severity="info", source="metrics", title=f"{short(redact(text), 160)} = {number(value)}", evidence=expr, value=value)
        for text, value in rows[:MAX_SERIES_SHOWN]
    ]
    if not rows:
        summary = f"The query returned no data (no series, which is not the same as zero): {expr}"
    else:
        shown = "; ".join(f"{short(redact(text), 80)} = {number(value)}" for text, value in rows[:3])
        summary = f"{plural(len(rows), 'series', 'series')} ({data.result_type}); highest: {shown}."
    return ctx.answer(
        intent="metrics",
        summary=summary + _notes(data.notes),
        findings=findings,
        confidence=0.9,
        links=links(ctx.settings, None, promql=expr),
    )


# --- capacity -------------------------------------------------------------------------------------
async def capacity(ctx: Context, target: Target) -> Answer:
    ref = target.ref

    async def resources() -> ToolResult[dict[str, ToolResult[Any]]]:
        queries = {
            name: template.format(namespace=ref.namespace, deployment=ref.deployment)
            for name, template in RESOURCE_QUERIES.items()
        }
        signals, *answers = await asyncio.gather(
            ctx.toolbox.metrics.golden_signals(ref, ctx.window, ctx.thresholds()),
            *(ctx.toolbox.metrics.query(q) for q in queries.values()),
        )
        return combine("metrics", {"golden_signals": signals, **dict(zip(queries, answers, strict=True))})

    results = await ctx.calls.run(
        {
            "metrics": resources(),
            "kubernetes": ctx.toolbox.kubernetes.deployment_status(
                ref.namespace, ref.deployment, window_seconds=int(ctx.window_seconds)
            ),
        },
        intro=f"Checking CPU and memory of {target.name} against its requests and limits…",
    )
    parts: dict[str, ToolResult[Any]] = results["metrics"].data or {}
    signal_list: list[Signal] = _data(parts["golden_signals"]) or [] if parts else []
    signals = {s.name: s for s in signal_list}
    report = _data(results["kubernetes"])
    per_pod = {name: _per_resource(_data(parts[name])) if parts else {} for name in RESOURCE_QUERIES}
    findings: list[Finding] = []
    clauses: list[str] = []
    for name in ("cpu_ratio", "memory_ratio"):
        signal = signals.get(name)
        if signal is None:
            continue
        findings.append(
            Finding(
                severity={"critical": "critical", "warning": "warning"}.get(signal.health, "info"),  # type: ignore[arg-type]
                source="metrics",
                title=signal_title(signal) + (f", {signal.trend}" if signal.trend else ""),
                evidence=signal.query,
                value=signal.value,
            )
        )
        limit = per_pod["limits"].get("cpu" if name == "cpu_ratio" else "memory")
        limit_text = f" of its {_resource(name, limit)} limit" if limit else " of its limit"
        clauses.append(
            f"{'CPU' if name == 'cpu_ratio' else 'memory'} at "
            + (f"{percent(signal.value)}{limit_text}" + (f" ({signal.trend})" if signal.trend else "")
               if signal.value is not None else "no data")
        )
    for kind in ("limits", "requests"):
        values = per_pod[kind]
        if values:
            text = ", ".join(f"{_resource(r, v)} {r}" for r, v in sorted(values.items()) if r in ("cpu", "memory"))
            findings.append(Finding(severity="info", source="metrics", title=f"{kind.capitalize()} per pod: {text}",
                                    evidence=RESOURCE_QUERIES[kind].format(namespace=ref.namespace, deployment=ref.deployment)))
            clauses.append(f"{kind} per pod: {text}")
        else:
            clauses.append(f"no data on {kind}")
    plans: list[Plan] = []
    if report is not None:
        findings.append(Finding(severity="info" if report.ready >= report.desired else "warning", source="kubernetes",
                                title=f"{report.ready}/{report.desired} replicas ready",
                                evidence=f"deployment {report.namespace}/{report.name}", value=report.ready))
        clauses.append(f"{report.ready}/{report.desired} replicas ready")
        cpu = signals.get("cpu_ratio")
        if cpu is not None and cpu.health in ("warning", "critical") and report.desired > 0:
            wanted = report.desired + max(1, math.ceil(report.desired * 0.5))
            plans.append(Plan(f"Scale {target.name} from {report.desired} to {wanted} replicas (CPU at "
                              f"{value_text(cpu)} of its limit)",
                              Action(kind="scale", target=f"{ref.namespace}/{ref.deployment}", params={"replicas": wanted})))
    memory = signals.get("memory_ratio")
    if memory is not None and memory.health in ("warning", "critical"):
        plans.append(Plan(f"Raise the memory limit of {target.name} or find what grows (memory at "
                          f"{value_text(memory)} of its limit, {memory.trend or 'trend unknown'})"))
    recommendations, problems = await ctx.propose(plans)
    summary = f"Capacity of {target.name}: " + "; ".join(clauses) + "." if clauses else f"No capacity data for {target.name}."
    summary += _recommended(recommendations, problems, ctx.approvers_configured) + failure_note(ctx)
    return ctx.answer(
        intent="capacity",
        service=target.name,
        namespace=target.namespace,
        summary=summary,
        findings=findings,
        recommendations=recommendations,
        confidence=0.8 if signals else 0.3,
        links=links(ctx.settings, target, promql=signals["cpu_ratio"].query if "cpu_ratio" in signals else None),
    )


def _per_resource(result: QueryResult | None) -> dict[str, float]:
    if result is None:
        return {}
    return {s.labels.get("resource", "?"): s.samples[-1].value for s in result.series if s.samples}


def _resource(name: str, value: float | None) -> str:
    if value is None:
        return "?"
    if name.startswith("cpu"):
        return f"{value:g} CPU" if value >= 1 else f"{value * 1000:.0f}m CPU"
    mib = value / 2**20
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def _recommended(recommendations: list[Recommendation], problems: dict[str, str], approvers: bool) -> str:
    if not recommendations:
        return ""
    parts = []
    for rec in recommendations:
        text = rec.title
        if rec.approval_id:
            text += f" (approval {rec.approval_id})"
        elif rec.title in problems:
            text += f" (cannot be proposed: {problems[rec.title]})"
        parts.append(text)
    hint = f" {NO_APPROVERS_HINT}" if not approvers and any(r.action for r in recommendations) else ""
    return " Recommended: " + "; ".join(parts) + "." + hint


# --- cost -----------------------------------------------------------------------------------------
def _money(amount: float, currency: str) -> str:
    return f"{currency} {amount:,.2f}"


def _change(group: GroupCost) -> str:
    pct = f", {group.change_pct:+.0f}%" if group.change_pct is not None else ", new"
    return f"{group.change:+,.2f}{pct}"


COST_ROWS = 15  # the largest groups; the rest are counted


def cost_table(report: CostReport) -> Table:
    """Spend per service (or tag value), largest first, with its change against the period before."""
    rows = [[g.name, f"{g.current:,.2f}", f"{g.change:+,.2f}",
             f"{g.change_pct:+.0f}%" if g.change_pct is not None else "new"] for g in report.groups[:COST_ROWS]]
    return Table(title=f"Cost by {report.group_by}, last {report.period_days} days ({report.currency})",
                 columns=[report.group_by.capitalize(), "Spend", "Change", "%"], rows=rows, numeric=[1, 2, 3],
                 more=max(0, len(report.groups) - COST_ROWS))


async def cost(ctx: Context, target: Target | None, days: int | None) -> Answer:
    period = days or DEFAULT_COST_DAYS
    tool = ctx.toolbox.cost
    if target is not None:
        results = await ctx.calls.run(
            {"cost": tool.service_cost(target.ref.cost_tag or target.name, period)},
            intro=f"Reading the cost of {target.name} for {period} days…",
        )
        data: ServiceCost | None = _data(results["cost"])
        base = {"intent": "cost", "service": target.name, "namespace": target.namespace}
        if data is None:
            return ctx.answer(**base, summary=f"Could not read the cost of {target.name}: {ctx.calls.statuses[-1].error}.")
        group = data.cost
        severity = "warning" if group.change_pct is not None and group.change_pct > 20 else "info"
        title = (
            f"{target.name} cost {_money(group.current, data.currency)} in the last {period} days "
            f"({_change(group)} vs the {period} days before)"
        )
        finding = Finding(severity=severity, source="cost", title=title,
                          evidence=f"Cost Explorer, tag {data.tag_key}={data.tag_value}, {data.start} to {data.end}",
                          value=round(group.current, 2))
        estimated = " Some days are estimates (not final yet)." if data.estimated else ""
        return ctx.answer(**base, summary=title + "." + estimated + _notes(data.notes), findings=[finding], confidence=0.9)

    async def both() -> ToolResult[dict[str, ToolResult[Any]]]:
        report, forecast = await asyncio.gather(tool.cost_by(period), tool.forecast(30))
        return combine("cost", {"cost_by": report, "forecast": forecast})

    results = await ctx.calls.run({"cost": both()}, intro=f"Reading cost by service for {period} days…")
    parts = results["cost"].data or {}
    report: CostReport | None = _data(parts["cost_by"]) if parts else None
    forecast: CostForecast | None = _data(parts["forecast"]) if parts else None
    if report is None:
        return ctx.answer(intent="cost", summary=f"Could not read the cost: {ctx.calls.statuses[-1].error}.")
    change = f" ({report.change_pct:+.0f}% vs the {period} days before)" if report.change_pct is not None else ""
    findings = [
        Finding(
            severity="warning" if report.change_pct is not None and report.change_pct > 20 else "info",
            source="cost",
            title=f"Total {_money(report.total, report.currency)} in the last {period} days{change}",
            evidence=f"Cost Explorer by {report.group_by}, {report.start} to {report.end}",
            value=round(report.total, 2),
        )
    ]
    findings += [
        Finding(
            severity="warning" if m.change_pct is not None and m.change_pct > 50 and m.change > 0 else "info",
            source="cost",
            title=f"{m.name}: {_money(m.current, report.currency)} ({_change(m)})",
            evidence=f"Cost Explorer by {report.group_by}",
            value=round(m.current, 2),
        )
        for m in report.top_movers
    ]
    if forecast is not None:
        interval = (
            f" (80% interval {forecast.lower:,.2f}–{forecast.upper:,.2f})"
            if forecast.lower is not None and forecast.upper is not None
            else ""
        )
        findings.append(
            Finding(
                severity="info",
                source="cost",
                title=f"Forecast for the next {forecast.period_days} days: {_money(forecast.amount, forecast.currency)}"
                + interval,
                evidence=forecast.basis,
                value=forecast.amount,
            )
        )
    largest = ", ".join(f"{g.name} {_money(g.current, report.currency)}" for g in report.groups[:3])
    movers = "; ".join(f"{m.name} {_change(m)}" for m in report.top_movers[:3])
    summary = f"Spend in the last {period} days: {_money(report.total, report.currency)}{change}."
    if largest:
        summary += f" Largest: {largest}."
    if movers:
        summary += f" Top movers: {movers}."
    if forecast is not None:
        summary += f" Next {forecast.period_days} days: about {_money(forecast.amount, forecast.currency)}" + (
            " (a rough projection)" if forecast.method != "cost_explorer" else ""
        ) + "."
    if report.estimated:
        summary += " Some days are estimates (not final yet)."
    return ctx.answer(intent="cost", summary=summary + failure_note(ctx) + _notes(report.notes), findings=findings,
                      confidence=0.9, table=cost_table(report) if report.groups else None)


# --- incidents ------------------------------------------------------------------------------------
INCIDENT_SEVERITY = {"critical": "critical", "error": "warning", "warning": "warning"}


async def incidents(ctx: Context, target: Target | None) -> Answer:
    service = target.config.name if target else None
    results = await ctx.calls.run(
        {"control_plane": ctx.toolbox.control_plane.open_incidents(service)},
        intro="Reading open incidents" + (f" of {target.name}…" if target else "…"),
    )
    listing = _data(results["control_plane"])
    base = {"intent": "incidents", "service": target.name if target else None,
            "namespace": target.namespace if target else None}
    if listing is None:
        return ctx.answer(**base, summary=f"Could not read the incidents: {ctx.calls.statuses[-1].error}.")
    items = listing.items
    findings, recommendations = [], []
    for incident in items:
        affected = [r.get("name") if isinstance(r, dict) else str(r) for r in incident.affected_resources]
        opened = f", opened {clock(incident.created_at)}" if incident.created_at else ""
        findings.append(
            Finding(
                severity=INCIDENT_SEVERITY.get(incident.severity, "info"),  # type: ignore[arg-type]
                source="control_plane",
                title=f"{incident.id} “{short(incident.title, 100)}” ({incident.severity}, {incident.status}{opened})",
                evidence=(f"affects {', '.join(a for a in affected if a)}" if any(affected) else None),
            )
        )
        if incident.status == "new":
            recommendations.append(Recommendation(title=f"Acknowledge {incident.id}: say “ack incident {incident.id}”"))
    scope = f" for {target.name}" if target else ""
    if items:
        listed = "; ".join(f"{i.id} “{short(i.title, 60)}” ({i.severity}, {i.status})" for i in items[:5])
        summary = f"{plural(len(items), 'open incident')}{scope}: {listed}."
    else:
        summary = f"No open incidents{scope}."
    return ctx.answer(**base, summary=summary + _notes(listing.notes), findings=findings,
                      recommendations=recommendations, confidence=0.9)


# --- proposed write actions -----------------------------------------------------------------------
async def action(ctx: Context, intent: str, target: Target | None, params: dict[str, Any]) -> Answer:
    """restart / scale / rollback a service, ack an incident, run an automation: an approval, never the change."""
    base: dict[str, Any] = {"intent": "action"}
    if target is not None:
        base |= {"service": target.name, "namespace": target.namespace}
    kind = REGISTRY[intent]
    try:
        act = await kind.from_chat(Asked(target.ref if target else None, params, ctx.toolbox, ctx.read))
    except NotProposed as exc:
        return ctx.answer(**base, summary=str(exc))
    try:
        approval = await ctx.approval(act)
    except ActionFailed as exc:
        return ctx.answer(**base, status="failed", summary=f"Cannot propose {kind.label}: {exc}.",
                          verdict="refused" if isinstance(exc, NotAllowed) else None)
    recommendation = Recommendation(title=approval.description, action=act, approval_id=approval.id)
    who = (
        f"someone in SREBOT_APPROVERS other than {ctx.request.user} must approve it"
        if ctx.approvers_configured
        else NO_APPROVERS_HINT
    )
    expires = f" It expires at {clock(approval.expires_at)}." if approval.expires_at else ""
    summary = f"Proposed: {approval.description}. Nothing changes until approved: {who}{'' if who.endswith('.') else '.'}{expires}"
    return ctx.answer(**base, summary=summary, recommendations=[recommendation], confidence=1.0)


def cost_days(params: dict[str, Any]) -> int | None:
    days = params.get("days")
    return int(days) if isinstance(days, int) else None


