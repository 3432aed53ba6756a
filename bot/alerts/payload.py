"""Alertmanager's webhook payload (version 4) validated with pydantic, and the source-neutral alert group the desk works on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Alertmanager sends endsAt = 0001-01-01T00:00:00Z for an alert with no known end; before this, a time means "none"
NO_TIME = datetime(1971, 1, 1, tzinfo=UTC)
MAX_ALERTS = 1000  # far above Alertmanager's max_alerts in practice; a bigger payload is not one alert group


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class WebhookAlert(_Wire):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=128)


class WebhookPayload(_Wire):
    """What Alertmanager POSTs to a webhook receiver (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1, max_length=4096)
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    alerts: list[WebhookAlert] = Field(min_length=1, max_length=MAX_ALERTS)

    @field_validator("version", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


def problems(exc: ValidationError) -> str:
    """A 400's reason: each invalid field by its path in the payload."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Alert:
    """One alert of a group, whatever its source."""

    fingerprint: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    url: str = ""  # where it came from (Prometheus graph, control plane)

    @property
    def name(self) -> str:
        return self.labels.get("alertname") or "unnamed alert"

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def to_json(self) -> dict[str, object]:
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "url": self.url,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "Alert":
        ends = data.get("ends_at")
        return cls(
            fingerprint=str(data["fingerprint"]),
            status=str(data["status"]),
            labels=dict(data.get("labels") or {}),  # type: ignore[call-overload]
            annotations=dict(data.get("annotations") or {}),  # type: ignore[call-overload]
            starts_at=datetime.fromisoformat(str(data["starts_at"])),
            ends_at=datetime.fromisoformat(str(ends)) if ends else None,
            url=str(data.get("url") or ""),
        )


@dataclass(frozen=True)
class AlertGroup:
    """One notification about one alert group: the unit that gets one thread."""

    key: str
    source: str  # alertmanager | control_plane
    status: str  # firing | resolved
    alerts: tuple[Alert, ...]
    common_labels: dict[str, str] = field(default_factory=dict)
    group_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    truncated: int = 0  # alerts of the group Alertmanager left out of the payload
    external_url: str = ""

    @classmethod
    def from_webhook(cls, payload: WebhookPayload) -> "AlertGroup":
        alerts = tuple(
            Alert(
                fingerprint=a.fingerprint,
                status=a.status,
                labels=a.labels,
                annotations=a.annotations,
                starts_at=_utc(a.starts_at),
                ends_at=_utc(a.ends_at) if a.ends_at and _utc(a.ends_at) > NO_TIME else None,
                url=a.generator_url,
            )
            for a in payload.alerts
        )
        return cls(
            key=payload.group_key,
            source="alertmanager",
            status=payload.status,
            alerts=alerts,
            common_labels=payload.common_labels,
            group_labels=payload.group_labels,
            common_annotations=payload.common_annotations,
            truncated=payload.truncated_alerts,
            external_url=payload.external_url,
        )

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def fingerprints(self) -> list[str]:
        """The firing alerts' fingerprints, sorted: the group's "set of alerts"."""
        return sorted({a.fingerprint for a in self.firing})

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.fingerprints).encode()).hexdigest()

    @property
    def labels(self) -> dict[str, str]:
        """Labels every alert of the group shares (what routing and silences use)."""
        if self.common_labels:
            return self.common_labels
        if not self.alerts:
            return dict(self.group_labels)
        shared = dict(self.alerts[0].labels)
        for alert in self.alerts[1:]:
            shared = {k: v for k, v in shared.items() if alert.labels.get(k) == v}
        return shared or dict(self.group_labels)

    @property
    def since(self) -> datetime:
        return min(a.starts_at for a in self.alerts)

    @property
    def ended(self) -> datetime | None:
        """When the last alert ended, for a resolved group."""
        ends = [a.ends_at for a in self.alerts if a.ends_at is not None]
        return max(ends) if ends else None


def key_hash(key: str) -> str:
    """A fixed-length handle for a group key (they can be long), unique in the database."""
    return hashlib.sha256(key.encode()).hexdigest()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
