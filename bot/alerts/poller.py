"""Feeds the control plane's firing alerts into the alert desk, one group per resource, every poll interval
([alerts] poll_control_plane, off by default); a group no longer firing is resolved."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from bot.alerts.desk import AlertDesk
from bot.alerts.payload import Alert, AlertGroup
from bot.alerts.view import alerts_of
from tools.control_plane import Alert as PlaneAlert
from tools.control_plane import ControlPlane

log = logging.getLogger("srebot.alerts")

SOURCE = "control_plane"


def groups(firing: list[PlaneAlert], now: datetime) -> list[AlertGroup]:
    """The control plane's firing alerts as alert groups: one per resource (service), or per alert name without one."""
    by_key: dict[str, list[Alert]] = {}
    for item in firing:
        subject = item.resource_name or item.name
        labels = {"alertname": item.name, "severity": item.severity}
        if item.resource_name:
            labels["service"] = item.resource_name
        alert = Alert(
            fingerprint=f"cp-{item.id}",
            status="firing",
            labels=labels,
            annotations={"summary": item.message} if item.message else {},
            starts_at=item.fired_at.astimezone(UTC) if item.fired_at else now,
        )
        by_key.setdefault(f"control-plane:{subject}", []).append(alert)
    return [AlertGroup(key=key, source=SOURCE, status="firing", alerts=tuple(alerts)) for key, alerts in by_key.items()]


class ControlPlanePoller:
    def __init__(self, desk: AlertDesk, control_plane: ControlPlane, interval: float):
        self.desk = desk
        self.control_plane = control_plane
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="control-plane-alerts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # the control plane or the database blips: the next poll tries again
                log.exception("polling the control plane's alerts failed")
            await asyncio.sleep(self.interval)

    async def poll(self) -> list[str]:
        """One round: every firing group to the desk, every group that stopped firing resolved; the outcomes."""
        result = await self.control_plane.firing_alerts()
        if not result.ok or result.data is None:
            log.warning("could not read the control plane's alerts", extra={"error": result.error_text})
            return []
        now = datetime.now(UTC)
        current = groups(result.data.items, now)
        outcomes = [await self.desk.receive(group) for group in current]
        keys = {group.key for group in current}
        for record in await self.desk.groups.firing(SOURCE):
            if record.group_key in keys:
                continue
            ended = tuple(
                Alert(a.fingerprint, "resolved", a.labels, a.annotations, a.starts_at, now, a.url) for a in alerts_of(record)
            )
            outcomes.append(await self.desk.receive(AlertGroup(record.group_key, SOURCE, "resolved", ended)))
        return outcomes
