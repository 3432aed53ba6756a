"""What an alert thread's root message says (platform-neutral, built from the database row), and the alert context an
investigation carries to the engine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from bot.alerts.payload import Alert
from bot.alerts.routing import ServiceMatch, find_service
from bot.config import Settings
from bot.engine.text import clock, duration, join
from sessions.alerts import AlertGroupRecord
from tools.redact import redact, redact_data

SEVERITY_ORDER = ("critical", "error", "high", "warning", "medium", "low", "info", "none")
MAX_LISTED = 10  # alerts listed in the root message; the rest are counted
RUNBOOK_ANNOTATIONS = ("runbook_url", "runbook")
DASHBOARD_ANNOTATIONS = ("dashboard_url", "dashboard", "grafana_url", "grafana")


@dataclass(frozen=True)
class Investigation:
    """The alert context of a request: the engine diagnoses `service` with these alerts as its starting point."""

    group_id: str
    source: str
    alerts: tuple[Alert, ...]
    service: ServiceMatch
    namespace: str | None = None

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(a.name for a in self.alerts))


@dataclass(frozen=True)
class Link:
    title: str
    url: str


@dataclass(frozen=True)
class AlertView:
    group_id: str
    status: str  # firing | resolved
    alerts: tuple[Alert, ...]  # the firing ones, or all of them once resolved
    service: str | None
    service_known: bool
    since: datetime
    resolved_at: datetime | None
    truncated: int
    links: tuple[Link, ...]
    silence_for: str = "1h"  # what the Silence button silences for

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(a.name for a in self.alerts))

    @property
    def severity(self) -> str:
        found = {a.severity.lower() for a in self.alerts if a.severity}
        for level in SEVERITY_ORDER:
            if level in found:
                return level
        return sorted(found)[0] if found else "unknown"

    @property
    def title(self) -> str:
        """"Firing: HighErrorRate, HighLatency — checkout"; "Resolved: …" once resolved."""
        names = self.names
        shown = join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        state = "Resolved" if self.status == "resolved" else "Firing"
        return f"{state}: {shown}" + (f" — {self.service}" if self.service else "")

    @property
    def facts(self) -> list[tuple[str, str]]:
        """(label, value) lines under the title."""
        facts = [("Severity", self.severity)]
        facts.append(("Service", self.service if self.service_known else f"{self.service or 'unknown'} (not in the catalog)"))
        facts.append(("Since", clock(self.since)))
        if self.resolved_at is not None:
            facts.append(("Resolved", f"{clock(self.resolved_at)}, after {duration(self.resolved_at - self.since)}"))
        return facts

    @property
    def lines(self) -> list[str]:
        """One line per alert (at most MAX_LISTED), then how many are not shown."""
        lines = []
        for alert in self.alerts[:MAX_LISTED]:
            about = alert.annotations.get("summary") or alert.annotations.get("description") or ""
            where = ", ".join(f"{k}={v}" for k, v in alert.labels.items() if k in ("instance", "pod", "namespace"))
            lines.append(
                f"{alert.name}" + (f" ({alert.severity})" if alert.severity else "") + f" since {clock(alert.starts_at)}"
                + (f" [{where}]" if where else "") + (f": {about}" if about else "")
            )
        hidden = len(self.alerts) - len(lines) + self.truncated
        if hidden > 0:
            lines.append(f"…and {hidden} more alert{'s' if hidden != 1 else ''} in this group")
        return lines

    def text(self) -> str:
        """The whole message as plain text (notifications, platforms without rich messages)."""
        facts = " · ".join(f"{k}: {v}" for k, v in self.facts)
        links = " · ".join(f"{link.title}: {link.url}" for link in self.links)
        return "\n".join([self.title, facts, *(f"• {line}" for line in self.lines), *([links] if links else [])])


def alerts_of(record: AlertGroupRecord) -> tuple[Alert, ...]:
    return tuple(Alert.from_json(item) for item in record.alerts.get("items") or [])


def common_labels(record: AlertGroupRecord) -> dict[str, str]:
    return dict(record.labels.get("common") or {})


def view(settings: Settings, record: AlertGroupRecord) -> AlertView:
    """What the root message shows; label and annotation values are redacted (a rule's description may quote a
    secret), the stored labels are not (a silence must match them as they are)."""
    alerts = tuple(
        replace(a, labels=redact_data(a.labels), annotations=redact_data(a.annotations), url=redact(a.url))
        for a in alerts_of(record)
    )
    shown = tuple(a for a in alerts if a.status == "firing") if record.status == "firing" else alerts
    match = find_service(settings, common_labels(record))
    annotations: dict[str, str] = redact_data(dict(record.labels.get("annotations") or {}))
    catalog = settings.service(match.name) if match.name else None
    links: list[Link] = []
    runbook = _first(annotations, alerts, RUNBOOK_ANNOTATIONS) or (catalog.runbook if catalog else None)
    dashboard = _first(annotations, alerts, DASHBOARD_ANNOTATIONS) or (catalog.dashboard if catalog else None)
    if runbook:
        links.append(Link("Runbook", runbook))
    if dashboard:
        links.append(Link("Dashboard", dashboard))
    source = next((a.url for a in alerts if a.url), "")
    if source:
        links.append(Link("Source", source))
    if record.alerts.get("external_url"):
        links.append(Link("Alertmanager", redact(str(record.alerts["external_url"]))))
    return AlertView(
        group_id=record.id,
        status=record.status,
        alerts=shown or alerts,
        service=match.shown,
        service_known=match.name is not None,
        since=record.started_at,
        resolved_at=record.resolved_at if record.status == "resolved" else None,
        truncated=int(record.alerts.get("truncated") or 0),
        links=tuple(links),
        silence_for=settings.alerts.silence_duration,
    )


def investigation(settings: Settings, record: AlertGroupRecord) -> Investigation:
    labels = common_labels(record)
    alerts = alerts_of(record)
    return Investigation(
        group_id=record.id,
        source=record.source,
        alerts=tuple(a for a in alerts if a.status == "firing") or alerts,
        service=find_service(settings, labels),
        namespace=labels.get("namespace"),
    )


def _first(annotations: dict[str, str], alerts: tuple[Alert, ...], names: tuple[str, ...]) -> str | None:
    for name in names:
        if annotations.get(name):
            return annotations[name]
    for alert in alerts:
        for name in names:
            if alert.annotations.get(name):
                return alert.annotations[name]
    return None
