"""The Answer model of DESIGN 3.7: what the engine returns and every renderer receives."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["completed", "failed", "cancelled"]
Intent = Literal[
    "diagnose", "logs", "metrics", "cost", "incidents", "alerts", "capacity", "action", "help", "status", "chat"
]
Severity = Literal["critical", "warning", "info"]
Source = Literal["metrics", "logs", "kubernetes", "cost", "control_plane", "engine"]
# every write an approval can carry; "silence" is proposed from an alert thread's button and never recommended in
# an Answer (whose schema lists the other five)
ActionKind = Literal["rollback", "restart", "scale", "ack_incident", "run_automation", "silence"]
# the state of the service asked about, as the engine judged it (optional in the JSON; see bot.presentation)
Verdict = Literal["failing", "degraded", "healthy", "inconclusive", "refused"]

SEVERITY_RANK: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


class Finding(BaseModel):
    severity: Severity
    source: Source
    title: str = Field(min_length=1)
    evidence: str | None = None
    value: float | str | None = None
    link: str | None = None  # opens `evidence` (a query) in Grafana Explore or the Prometheus graph page


class Action(BaseModel):
    kind: ActionKind
    target: str  # "namespace/deployment", an incident id, or a script id
    params: dict[str, Any] = {}


class Recommendation(BaseModel):
    title: str = Field(min_length=1)
    action: Action | None = None
    approval_id: str | None = None


class RuledOut(BaseModel):
    cause: str
    why: str


class Link(BaseModel):
    title: str
    url: str


class ToolStatus(BaseModel):
    name: str
    ok: bool
    ms: float | None = None
    error: str | None = None


class ChartMark(BaseModel):
    at: datetime
    label: str  # "onset", "v2.1.0 rolled out"
    kind: Literal["onset", "change"] = "change"


class Chart(BaseModel):
    """The key signal over the window, for a picture: its points, thresholds, onset and the change before it."""

    title: str  # "Error rate of checkout"
    unit: str = ""  # ratio | s | req/s | ""
    query: str
    points: list[tuple[datetime, float]]
    warning: float | None = None
    critical: float | None = None
    marks: list[ChartMark] = []


class Table(BaseModel):
    """Rows that read better as a table than as sentences (a workload's pods, cost by service): the column titles,
    then one row of cells per item, most important first. `numeric` are the columns aligned right; `more` counts
    the items left out."""

    title: str  # "Pods of shop/checkout", "Cost by service, last 7 days"
    columns: list[str] = Field(min_length=1)
    rows: list[list[str]] = Field(min_length=1)
    numeric: list[int] = []
    more: int = 0


class Answer(BaseModel):
    status: Status = "completed"
    intent: Intent = "chat"
    service: str | None = None
    namespace: str | None = None
    summary: str = Field(min_length=1)
    findings: list[Finding] = []
    recommendations: list[Recommendation] = []
    ruled_out: list[RuledOut] = []
    confidence: float = Field(0.0, ge=0, le=1)
    links: list[Link] = []
    tools: list[ToolStatus] = []
    session_id: str = "none"
    elapsed_ms: float = Field(0, ge=0)
    # Optional additions to DESIGN 3.7, set by the playbooks: the verdict, a short headline (cause, impact),
    # when the trouble started, the key signal to draw, and rows to show as a table.
    verdict: Verdict | None = None
    headline: str | None = None
    since: datetime | None = None
    chart: Chart | None = None
    table: Table | None = None
    request_id: str | None = Field(None, exclude=True)

    def ranked(self) -> "Answer":
        """Findings most severe first (stable within a severity)."""
        return self.model_copy(update={"findings": sorted(self.findings, key=lambda f: SEVERITY_RANK[f.severity])})

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def failure(cls, summary: str, *, intent: Intent = "chat", status: Status = "failed", **extra: Any) -> "Answer":
        return cls(status=status, intent=intent, summary=summary, **extra)
