"""What a person reads first, derived from an Answer the same way for every platform: the verdict with its
colour, a short headline, at most three key evidence lines, the actions labelled with their change, and the
rest as details behind "Show details"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.answer import SEVERITY_RANK, Answer, Finding, Link, Recommendation, RuledOut, Table, ToolStatus
from bot.policy import NO_APPROVERS_HINT
from bot.wording import CHECK_HINT

HEADLINE_CHARS = 300
KEY_EVIDENCE = 3
ACTION_LABEL_CHARS = 75  # Slack's limit for a button's text; Teams shows about as much
# intents that judge a service's health: their header is a verdict, never "done"
HEALTH_INTENTS = {"diagnose", "alerts", "metrics", "capacity"}
INTENT_TITLES = {
    "logs": "Logs",
    "cost": "Cost",
    "incidents": "Incidents",
    "action": "Action",
    "help": "Help",
    "status": "Work in flight",
    "chat": "Answer",
    "diagnose": "Diagnosis",
    "alerts": "Alerts",
    "metrics": "Metrics",
    "capacity": "Capacity",
}
BACKENDS = {
    "metrics": "Prometheus",
    "logs": "Loki",
    "kubernetes": "the Kubernetes API",
    "control_plane": "the control plane",
    "cost": "AWS Cost Explorer",
}
_PROMQL = re.compile(r"^[\w:]+\s*[({\[]|^\(")
_APPROVAL_NOTE = re.compile(r"\s*\(approval apr_\w+[^)]*\)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclass(frozen=True)
class Tone:
    """A verdict's look: the word, the mark in front of it, and its colour (hex, and Teams' named colour)."""

    word: str
    mark: str
    hex: str
    teams: str


TONES: dict[str, Tone] = {
    "failing": Tone("Failing", "🔴", "#D93025", "Attention"),
    "degraded": Tone("Degraded", "🟠", "#E37400", "Warning"),
    "healthy": Tone("Healthy", "🟢", "#1E8E3E", "Good"),
    "inconclusive": Tone("Inconclusive", "⚪", "#5F6368", "Default"),
    "failed": Tone("Could not answer", "⚠️", "#D93025", "Attention"),
    # the policy said no: nothing broke, so not the colour of an alarm
    "refused": Tone("Not allowed here", "🚫", "#5F6368", "Default"),
    "cancelled": Tone("Cancelled", "⏹", "#5F6368", "Default"),
    "answer": Tone("", "🔵", "#1A73E8", "Accent"),
}


@dataclass(frozen=True)
class Verdict:
    key: str  # failing | degraded | healthy | inconclusive | failed | refused | cancelled | answer
    title: str  # "Failing · shop/checkout", "Could not answer: Loki unreachable", "Cost · checkout"

    @property
    def tone(self) -> Tone:
        return TONES[self.key]

    @property
    def text(self) -> str:
        return f"{self.tone.mark} {self.title}"


@dataclass(frozen=True)
class ActionButton:
    """One proposed change: the button says exactly what it does; pressing it approves `approval_id`."""

    label: str
    approval_id: str
    kind: str
    full: str  # the whole recommendation, for the confirmation dialog


@dataclass(frozen=True)
class Query:
    """A query behind a finding, shown as code (never through markdown), with a link that opens it."""

    source: str
    text: str
    link: str | None


@dataclass
class Details:
    summary: str
    findings: list[Finding]
    ruled_out: list[RuledOut]
    advice: list[Recommendation]  # every recommendation, with or without an approval
    queries: list[Query]
    links: list[Link]
    tools: list[ToolStatus]
    footer: str  # confidence, time taken, request id


@dataclass
class Presentation:
    verdict: Verdict
    headline: str
    since: str | None  # "10:44 UTC (12 min ago)"
    evidence: list[str]  # at most KEY_EVIDENCE lines with their numbers
    actions: list[ActionButton]
    next_step: str | None  # the first recommendation that is not a button
    details: Details
    has_details: bool
    request_id: str | None = None
    chart_title: str | None = None
    table: Table | None = None  # shown in the short part: it is the answer, not a detail
    warnings: list[str] = field(default_factory=list)  # what could not be checked, said up front

    @property
    def warning_text(self) -> str | None:
        """'I could not reach Loki (connection refused) — `srebot check` shows each backend's state'."""
        if not self.warnings:
            return None
        text = "; ".join(self.warnings) + " — " + CHECK_HINT
        return text[:1].upper() + text[1:]


def present(answer: Answer, now: datetime | None = None) -> Presentation:
    now = now or datetime.now(UTC)
    answer = answer.ranked()
    verdict = verdict_of(answer)
    actions = [
        ActionButton(label=_label(rec.title), approval_id=rec.approval_id, kind=rec.action.kind if rec.action else "",
                     full=rec.title)
        for rec in answer.recommendations
        if rec.approval_id
    ]
    next_step = next((_strip_approval(r.title) for r in answer.recommendations if not r.approval_id), None)
    evidence = key_evidence(answer) if verdict.key not in ("failed", "cancelled") else []
    queries = list({
        text: Query(source=f.source, text=text, link=f.link)
        for f in answer.findings
        if (text := query_of(f)) is not None
    }.values())
    details = Details(
        summary=answer.summary,
        findings=answer.findings,
        ruled_out=answer.ruled_out,
        advice=answer.recommendations,
        queries=queries,
        links=answer.links,
        tools=answer.tools,
        footer=footer(answer),
    )
    head = headline_of(answer)
    has_details = bool(
        answer.findings[len(evidence):] or answer.ruled_out or queries or answer.links
        or len(answer.recommendations) > len(actions) + (1 if next_step else 0)
        or _strip_approval(answer.summary) != head
    )
    warnings = [problem(t) for t in answer.tools if not t.ok]
    # the proposed changes cannot be approved by anyone: that must be read before pressing a button
    blocked = NO_APPROVERS_HINT if actions and NO_APPROVERS_HINT in answer.summary else None
    return Presentation(
        verdict=verdict,
        headline=head,
        since=when(answer.since, now) if answer.since else None,
        evidence=evidence,
        actions=actions,
        next_step=blocked or next_step,
        details=details,
        has_details=has_details,
        request_id=answer.request_id,
        chart_title=answer.chart.title if answer.chart else None,
        table=answer.table,
        warnings=warnings if verdict.key != "failed" else [],
    )


# --- progress as steps ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One backend's part of the work, read from a progress line, for platforms that show a plan of tasks."""

    id: str
    status: str  # in_progress | complete | error
    output: str | None = None


_DONE = re.compile(r"^(\w+) ✓(?: (.+))?$")
_FAILED = re.compile(r"^(\w+) ✗ (.+)$")
_WAITING = re.compile(r"^waiting for (.+?)…?$")
_RESULT = re.compile(r"^(\w+): (.+)$")


def steps_of(progress: str) -> tuple[str | None, list[Step]]:
    """'metrics ✓ 120 ms · logs ✗ timeout · waiting for kubernetes…' and 'metrics: Error rate 8.3%' as steps;
    a line that is none of these ('Checking metrics, Kubernetes… of checkout…') is the plan's title."""
    title, steps = None, []
    for piece in progress.split(" · "):
        piece = piece.strip()
        if match := _DONE.match(piece):
            steps.append(Step(match[1], "complete", match[2]))
        elif match := _FAILED.match(piece):
            steps.append(Step(match[1], "error", match[2]))
        elif match := _WAITING.match(piece):
            steps += [Step(name.strip(), "in_progress") for name in match[1].split(",")]
        elif (match := _RESULT.match(piece)) and match[1] in BACKENDS:
            steps.append(Step(match[1], "complete", match[2]))
        elif piece:
            title = piece
    return title, steps


# --- the verdict ----------------------------------------------------------------------------------
def verdict_key(answer: Answer) -> str:
    """failing / degraded / healthy / inconclusive for a health question; failed / cancelled for a request that
    did not finish; `answer` for everything else (cost, logs, help…). Never healthy when nothing was checked."""
    if answer.verdict == "refused":
        return "refused"
    if answer.status == "failed":
        return "failed"
    if answer.status == "cancelled":
        return "cancelled"
    if answer.verdict is not None:
        return answer.verdict
    if answer.intent not in HEALTH_INTENTS:
        return "answer"
    severities = {f.severity for f in answer.findings}
    if "critical" in severities:
        return "failing"
    if "warning" in severities:
        return "degraded"
    if not answer.tools or not any(t.ok for t in answer.tools):
        return "inconclusive"
    return "healthy"


def verdict_of(answer: Answer) -> Verdict:
    key = verdict_key(answer)
    subject = subject_of(answer)
    if key == "failed":
        return Verdict(key, f"Could not answer: {failure_of(answer)}")
    if key == "answer":
        title = INTENT_TITLES.get(answer.intent, "Answer")
        return Verdict(key, f"{title} · {subject}" if subject else title)
    word = TONES[key].word
    if key == "healthy" and any(not t.ok for t in answer.tools):
        word = "Healthy in what could be checked"
    return Verdict(key, f"{word} · {subject}" if subject else word)


def subject_of(answer: Answer) -> str:
    if answer.service and answer.namespace:
        return f"{answer.namespace}/{answer.service}"
    return answer.service or ""


def failure_of(answer: Answer) -> str:
    """What failed, in a few words: the backends that failed, else the request itself."""
    failed = [t.name for t in answer.tools if not t.ok]
    if failed:
        return ", ".join(failed) + " unreachable" if len(failed) < 4 else "backends unreachable"
    first = _first_sentence(answer.summary)
    return first if len(first) <= 80 else first[:79] + "…"


# --- short first ----------------------------------------------------------------------------------
def headline_of(answer: Answer) -> str:
    """The engine's headline, else the summary's first sentence; at most HEADLINE_CHARS, no approval ids."""
    text = " ".join(_strip_approval(answer.headline or _first_sentence(answer.summary)).split())
    if len(text) <= HEADLINE_CHARS:
        return text
    # too long: whole clauses rather than a cut mid-phrase (the rest is behind "Show details")
    cut = text.rfind("; ", HEADLINE_CHARS // 2, HEADLINE_CHARS - 2)
    return text[:cut] + "; …" if cut > 0 else shorten(text, HEADLINE_CHARS)


def key_evidence(answer: Answer) -> list[str]:
    """The most severe findings' titles (they carry the numbers), at most KEY_EVIDENCE, problems before facts;
    what the headline already says is not repeated, nor facts a table shows."""
    said = headline_of(answer).lower()
    findings = [f for f in sorted(answer.findings, key=lambda f: SEVERITY_RANK[f.severity]) if f.title.lower() not in said]
    problems = [f for f in findings if f.severity != "info"]
    chosen = (problems or ([] if answer.table else findings))[:KEY_EVIDENCE]
    return [shorten(f.title, 200) for f in chosen]


def query_of(finding: Finding) -> str | None:
    """The PromQL or LogQL a metrics or logs finding came from, when its evidence is (or starts with) one."""
    evidence = (finding.evidence or "").strip()
    if finding.source == "logs" and evidence.startswith("{"):
        return evidence.split(" · ", 1)[0]
    if finding.source == "metrics" and _PROMQL.match(evidence) and "; " not in evidence:
        return evidence
    return None


def problem(tool: ToolStatus) -> str:
    """A backend's failure as a person acts on it: which backend, and what went wrong in a few words."""
    name = BACKENDS.get(tool.name, tool.name)
    error = tool.error or "failed"
    if error == "not configured":
        return f"{name} is not configured"
    code, _, message = error.partition(": ")
    reason = message.rsplit("(", 1)[1].rstrip(")") if message.endswith(")") and "(" in message else ""
    if code == "unreachable":
        return f"I could not reach {name}" + (f" ({reason})" if reason else "")
    if code == "timeout":
        return f"{name} did not answer in time"
    if code in ("unauthorized", "forbidden"):
        return f"{name} refused my credentials ({code})"
    return f"{name} failed: {shorten(message or error, 120)}"


def footer(answer: Answer) -> str:
    parts = []
    if answer.confidence:
        parts.append(f"confidence {answer.confidence:.0%}")
    parts.append(f"{answer.elapsed_ms / 1000:.1f} s")
    if answer.request_id:
        parts.append(f"request {answer.request_id}")
    return " · ".join(parts)


def tools_line(tools: list[ToolStatus]) -> str:
    parts = []
    for tool in tools:
        if tool.ok:
            parts.append(f"{tool.name} ✓ {tool.ms:.0f} ms" if tool.ms is not None else f"{tool.name} ✓")
        else:
            parts.append(f"{tool.name} ✗ {problem(tool)}")
    return " · ".join(parts)


def when(moment: datetime, now: datetime) -> str:
    """'10:44 UTC (12 min ago)', 'at 11:40 UTC (in 50 min)'; the date too when it is not today."""
    moment = moment.astimezone(UTC)
    seconds = (now - moment).total_seconds()
    clock = moment.strftime("%H:%M UTC") if moment.date() == now.astimezone(UTC).date() else moment.strftime(
        "%Y-%m-%d %H:%M UTC")
    span = abs(seconds)
    if span < 60:
        return f"{clock} (just now)" if seconds >= 0 else f"{clock} (in a minute)"
    if span < 3600:
        amount = f"{span / 60:.0f} min"
    elif span < 2 * 86400:
        hours, minutes = divmod(int(span // 60), 60)
        amount = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    else:
        amount = f"{span / 86400:.0f} days"
    return f"{clock} ({amount} ago)" if seconds >= 0 else f"{clock} (in {amount})"


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", limit // 2, limit - 1)
    return text[: cut if cut > 0 else limit - 1].rstrip(",;:") + "…"


def change_label(description: str) -> str:
    """An approval's description as a button: 'Roll back shop/checkout: image v2.1.0 → v2.0.3 (revision 7 → 6)'."""
    text = _label(description)
    return text[:1].upper() + text[1:]


def _label(title: str) -> str:
    return shorten(_strip_approval(title), ACTION_LABEL_CHARS)


def _strip_approval(text: str) -> str:
    return _APPROVAL_NOTE.sub("", text)


def _first_sentence(text: str) -> str:
    first = text.strip().split("\n", 1)[0]
    return _SENTENCE_END.split(first, 1)[0]
