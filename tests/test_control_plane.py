"""The control plane tool against a fake control plane and token endpoint over HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.fakes.control_plane import API, ControlPlaneFake, load_shop_scenario
from tools.base import ErrorCode
from tools.control_plane import ControlPlane


@pytest.fixture
async def cp() -> AsyncIterator[ControlPlaneFake]:
    async with ControlPlaneFake() as fake:
        load_shop_scenario(fake)
        yield fake


def _tool(cp: ControlPlaneFake, **kwargs) -> ControlPlane:
    return ControlPlane(
        cp.url, token_url=cp.token_url, client_id=cp.client_id, client_secret=cp.client_secret, backoff=0.01, **kwargs
    )


@pytest.fixture
async def tool(cp: ControlPlaneFake) -> AsyncIterator[ControlPlane]:
    tool = _tool(cp)
    yield tool
    await tool.aclose()


async def test_open_incidents_are_new_and_acknowledged_ones_filtered_by_service(tool: ControlPlane) -> None:
    everything = await tool.open_incidents()
    checkout = await tool.open_incidents("checkout")
    catalog = await tool.open_incidents("Catalog")

    assert sorted(i.title for i in everything.data.items) == ["Catalog search slow", "Checkout error rate above 5%"]
    [incident] = checkout.data.items
    assert (incident.id, incident.status, incident.severity, incident.affected_resources) == (
        "INC-101",
        "new",
        "critical",
        ["checkout"],
    )
    assert [i.status for i in catalog.data.items] == ["acknowledged"]


async def test_resolved_alerts_are_read_apart_from_firing_ones(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    cp.alerts.append({"id": "al-old", "name": "CheckoutHighLatency", "severity": "P2", "status": "resolved",
                      "resource_name": "checkout", "message": "p99 over 2 s", "fired_at": "2026-12-03T11:00:00Z",
                      "resolved_at": "2026-12-03T11:04:00Z"})

    resolved = await tool.resolved_alerts("checkout")
    firing = await tool.firing_alerts("checkout")

    assert [(a.name, a.status) for a in resolved.data.items] == [("CheckoutHighLatency", "resolved")]
    assert "CheckoutHighLatency" not in [a.name for a in firing.data.items]
    assert ("GET", f"{API}/alerts?status=resolved") in cp.requests


async def test_ping_checks_health_and_credentials(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    healthy = await tool.ping()
    wrong = ControlPlane(cp.url, token_url=cp.token_url, client_id="srebot", client_secret="nope")
    try:
        refused = await wrong.ping()
    finally:
        await wrong.aclose()

    assert healthy.data == "control plane fake" and cp.token_requests == 2
    assert refused.error.code is ErrorCode.UNAUTHORIZED


async def test_token_is_fetched_once_and_shared(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    await asyncio.gather(tool.open_incidents(), tool.firing_alerts(), tool.resources("checkout"), tool.scripts())
    await tool.audit_logs("checkout", 3600)

    assert cp.token_requests == 1
    assert len(cp.requests) == 6  # two incident lists, alerts, resources, scripts, audit logs: no 401s


async def test_token_is_renewed_before_it_expires(cp: ControlPlaneFake) -> None:
    cp.expires_in = 1
    tool = _tool(cp, cache_ttl=0)
    try:
        await tool.firing_alerts()
        await tool.firing_alerts()
        await asyncio.sleep(1.0)
        result = await tool.firing_alerts()
    finally:
        await tool.aclose()

    assert result.ok
    assert cp.token_requests == 2
    assert len(cp.requests) == 3  # the renewal came before the old token was refused


async def test_plain_text_401_renews_the_token_once_and_the_call_succeeds(
    tool: ControlPlane, cp: ControlPlaneFake
) -> None:
    assert (await tool.scripts()).ok
    cp.revoke()

    result = await tool.firing_alerts("checkout")

    assert result.ok and [a.name for a in result.data.items] == ["CheckoutHighErrorRate"]
    assert cp.token_requests == 2
    assert cp.requests.count(("GET", f"{API}/alerts?status=firing")) == 2


async def test_a_401_after_renewal_is_an_error_not_a_loop(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    cp.fail("GET", f"{API}/alerts", 401, "Unauthorized", times=5)

    result = await tool.firing_alerts()

    assert result.error.code is ErrorCode.UNAUTHORIZED
    assert "HTTP 401: Unauthorized" in result.error_text
    assert cp.token_requests == 2 and len(cp.requests) == 2


async def test_pagination_is_followed_up_to_max_pages(cp: ControlPlaneFake) -> None:
    for n in range(12):
        cp.add_incident(f"Disk almost full on node-{n}", severity="warning")
    whole = _tool(cp, page_size=5)
    cut = _tool(cp, page_size=5, max_pages=2)
    try:
        all_open = await whole.open_incidents()
        partial = await cut.open_incidents()
    finally:
        await whole.aclose()
        await cut.aclose()

    assert len(all_open.data.items) == 14 and all_open.notes == []
    assert len(partial.data.items) == 11  # 10 new of 13, and the one acknowledged
    assert partial.notes == ["new incidents: read the first 2 of 3 pages (10 of 13)"]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"error": "database unavailable"}, "HTTP 500: database unavailable"),
        (
            503,
            {"error": "UNAVAILABLE", "message": "maintenance until 12:00", "request_id": "r1"},
            "HTTP 503: maintenance until 12:00",
        ),
        (502, "Bad Gateway", "HTTP 502: Bad Gateway"),
    ],
)
async def test_server_errors_are_retried_then_reported_clearly(
    tool: ControlPlane, cp: ControlPlaneFake, status: int, body: object, expected: str
) -> None:
    cp.fail("GET", f"{API}/resources", status, body, times=3)

    result = await tool.resources("checkout")

    assert result.error.code is ErrorCode.BACKEND_ERROR
    assert f"control plane GET /resources: {expected}" in result.error_text
    assert len(cp.requests) == 3


async def test_a_transient_error_is_retried_to_success(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    cp.fail("GET", f"{API}/resources", 500, {"error": "database unavailable"})

    result = await tool.resources("checkout")

    assert [r.name for r in result.data.items] == ["checkout", "checkout-db"]


async def test_audit_log_of_a_service_in_a_window(tool: ControlPlane) -> None:
    now = datetime.now(UTC)

    recent = await tool.audit_logs("checkout", 900, now=now)
    catalog_recent = await tool.audit_logs("catalog", 900, now=now)

    [change] = recent.data.items
    assert (change.action, change.username, change.resource_name) == ("update", "alice", "checkout")
    assert change.changes["image"]["to"] == "shop/checkout:v2.1.0"
    assert catalog_recent.data.items == []  # bob's flush was two hours ago


async def test_scripts_and_executions(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    remediation = await tool.scripts("remediation")
    started = await tool.execute_automation("script-2", {"service": "checkout"}, ["res-1"], dry_run=True)
    execution = await tool.execution(started.data.execution_id)

    assert [s.name for s in remediation.data.items] == ["restart-service", "flush-cache"]
    assert (started.data.status, started.data.message) == ("pending", "dry run accepted")
    assert cp.actions[0].body == {
        "script_id": "script-2",
        "parameters": {"service": "checkout"},
        "target_resources": ["res-1"],
        "dry_run": True,
    }
    assert (execution.data.script_name, execution.data.target_resources) == ("restart-service", ["res-1"])


async def test_acknowledge_posts_who_and_why(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    result = await tool.acknowledge_incident("INC-101", "U0ALICE", "rolling back checkout to v2.0.3")

    assert result.ok and (result.data.status, result.data.acknowledged_by) == ("acknowledged", "U0ALICE")
    [action] = cp.actions
    assert action.path == f"{API}/incidents/INC-101/acknowledge"
    assert action.body == {"acknowledged_by": "U0ALICE", "comment": "rolling back checkout to v2.0.3"}
    assert action.authorization.startswith("Bearer ")


async def test_comment_on_an_incident(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    result = await tool.comment_incident("INC-101", "srebot: rollback approved by U0BOB")

    assert result.ok and result.data is None
    assert cp.incidents[0]["comments"][-1]["comment"] == "srebot: rollback approved by U0BOB"


async def test_writes_are_neither_retried_nor_cached(tool: ControlPlane, cp: ControlPlaneFake) -> None:
    cp.fail("POST", f"{API}/incidents/INC-101/acknowledge", 500, {"error": "database unavailable"})

    failed = await tool.acknowledge_incident("INC-101", "U0ALICE", "ack")
    again = await tool.acknowledge_incident("INC-101", "U0ALICE", "ack")
    twice = await tool.acknowledge_incident("INC-101", "U0ALICE", "ack")

    assert failed.error.code is ErrorCode.BACKEND_ERROR and "database unavailable" in failed.error_text
    assert again.ok
    assert (
        twice.error.code is ErrorCode.BAD_QUERY and "incident is acknowledged" in twice.error_text
    )  # it reached the server
    assert len(cp.requests) == 3


async def test_bad_client_credentials(cp: ControlPlaneFake) -> None:
    tool = ControlPlane(cp.url, token_url=cp.token_url, client_id="srebot", client_secret="wrong-secret")
    try:
        result = await tool.firing_alerts()
    finally:
        await tool.aclose()

    assert result.error.code is ErrorCode.UNAUTHORIZED
    assert "invalid_client: Invalid client or Invalid client credentials" in result.error_text
    assert "wrong-secret" not in result.error_text
    assert cp.requests == []


async def test_tokens_and_secrets_never_reach_the_logs(
    tool: ControlPlane, cp: ControlPlaneFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await tool.open_incidents()
    cp.revoke()
    await tool.firing_alerts()
    cp.fail("GET", f"{API}/resources", 401, "Unauthorized", times=2)
    await tool.resources("x")

    assert len(cp.tokens) == 3
    for token in cp.tokens:
        assert token not in caplog.text
    assert cp.client_secret not in caplog.text


async def test_not_configured() -> None:
    no_url = await ControlPlane(None).open_incidents()
    no_url_write = await ControlPlane(None).acknowledge_incident("INC-101", "U0ALICE", "ack")
    no_secret = await ControlPlane("http://cp:8081", token_url="http://kc/token", client_id="srebot").open_incidents()

    assert no_url.error.code is no_url_write.error.code is ErrorCode.NOT_CONFIGURED
    assert no_secret.error.code is ErrorCode.NOT_CONFIGURED and "client id or secret" in no_secret.error_text
