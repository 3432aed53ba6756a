"""The control-plane fake of the test suite: `ControlPlaneFake` (devtools.loopback.control_plane) and the
suite's standard state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devtools.loopback.control_plane import API, Action, ControlPlaneFake, rfc3339

__all__ = ["API", "Action", "ControlPlaneFake", "load_shop_scenario", "rfc3339"]


def load_shop_scenario(cp: ControlPlaneFake, now: datetime | None = None) -> None:
    """The suite's standard control plane, matching the Kubernetes fake's bad checkout rollout:

    - incidents: INC-101 "Checkout error rate above 5%" (new, critical, affects checkout),
      INC-102 "Catalog search slow" (acknowledged, warning), INC-103 "Checkout 502s" (resolved, old);
    - alerts: CheckoutHighErrorRate (P1, firing, on checkout), CatalogLatency (P3, resolved);
    - resources: checkout (application), checkout-db (database), catalog (application);
    - audit log: alice updated checkout's image v2.0.3 -> v2.1.0 4 minutes ago; bob executed a
      cache flush on catalog 2 hours ago; a login;
    - scripts: collect-diagnostics (diagnostic), restart-service and flush-cache (remediation).
    """
    now = now or datetime.now(UTC)
    cp.add_incident(
        "Checkout error rate above 5%",
        affected=["checkout"],
        tags={"service": "checkout"},
        created=now - timedelta(minutes=2),
    )
    cp.add_incident(
        "Catalog search slow",
        severity="warning",
        status="acknowledged",
        affected=["catalog"],
        created=now - timedelta(hours=1),
    )
    cp.add_incident(
        "Checkout 502s", severity="error", status="resolved", affected=["checkout"], created=now - timedelta(days=3)
    )
    cp.alerts += [
        {
            "id": "alert-1",
            "name": "CheckoutHighErrorRate",
            "severity": "P1",
            "status": "firing",
            "resource_name": "checkout",
            "message": "5xx ratio 8.3% for 2m",
            "fired_at": rfc3339(now - timedelta(minutes=2)),
            "resolved_at": None,
        },
        {
            "id": "alert-2",
            "name": "CatalogLatency",
            "severity": "P3",
            "status": "resolved",
            "resource_name": "catalog",
            "message": "p99 above 1s",
            "fired_at": rfc3339(now - timedelta(hours=2)),
            "resolved_at": rfc3339(now - timedelta(hours=1)),
        },
    ]
    cp.resources += [
        {
            "id": "res-1",
            "name": "checkout",
            "type": "application",
            "status": "critical",
            "group_name": "shop",
            "tags": {"team": "web"},
        },
        {
            "id": "res-2",
            "name": "checkout-db",
            "type": "database",
            "status": "healthy",
            "group_name": "shop",
            "tags": {},
        },
        {
            "id": "res-3",
            "name": "catalog",
            "type": "application",
            "status": "healthy",
            "group_name": "shop",
            "tags": {},
        },
    ]
    cp.audit_logs += [
        {
            "id": "audit-1",
            "timestamp": rfc3339(now - timedelta(minutes=4)),
            "user_id": "u-alice",
            "username": "alice",
            "action": "update",
            "resource_type": "application",
            "resource_id": "res-1",
            "resource_name": "checkout",
            "changes": {"image": {"from": "shop/checkout:v2.0.3", "to": "shop/checkout:v2.1.0"}},
            "result": "success",
        },
        {
            "id": "audit-2",
            "timestamp": rfc3339(now - timedelta(hours=2)),
            "user_id": "u-bob",
            "username": "bob",
            "action": "execute",
            "resource_type": "application",
            "resource_id": "res-3",
            "resource_name": "catalog",
            "changes": {"script": "flush-cache"},
            "result": "success",
        },
        {
            "id": "audit-3",
            "timestamp": rfc3339(now - timedelta(minutes=30)),
            "user_id": "u-alice",
            "username": "alice",
            "action": "login",
            "resource_type": "session",
            "resource_id": "",
            "resource_name": "",
            "changes": {},
            "result": "success",
        },
    ]
    cp.scripts += [
        {
            "id": "script-1",
            "name": "collect-diagnostics",
            "category": "diagnostic",
            "language": "bash",
            "version": "1.2",
            "parameters": [{"name": "service", "required": True}],
        },
        {
            "id": "script-2",
            "name": "restart-service",
            "category": "remediation",
            "language": "bash",
            "version": "2.0",
            "parameters": [{"name": "service", "required": True}],
        },
        {
            "id": "script-3",
            "name": "flush-cache",
            "category": "remediation",
            "language": "python",
            "version": "0.9",
            "parameters": [],
        },
    ]
