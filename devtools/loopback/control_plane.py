"""A fake SRE control plane (docs/contracts/control-plane.md) with a Keycloak-like token endpoint.

Shipped in the package because `srebot eval` boots it for scenarios; the test suite re-uses it
(tests/fakes/control_plane.py).

    async with ControlPlaneFake() as cp:
        load_shop_scenario(cp)
        tool = ControlPlane(cp.url, token_url=cp.token_url, client_id=cp.client_id, client_secret=cp.client_secret)

State is plain dicts in lists that tests may edit. Paged lists honour `page`/`page_size`; incidents
filter on `status`/`severity`, alerts on `status`/`severity`, resources on `search`/`status`/`type`,
audit logs on `action`/`user_id`/`resource_type`; times filter on `start_time`/`end_time`.

Auth: `POST /token` (client-credentials form) issues random tokens valid for `expires_in` seconds
and counts them in `token_requests`. An expired token gets a JSON 401; `revoke()` makes the
current tokens answer a PLAIN-TEXT 401, as some real deployments do. `fail(method, path, status,
body)` answers the next such request with that status and body (a dict is sent as JSON, a string as
text). Writes (acknowledge, comment, execute) change the state and are recorded in `actions`; with `frozen` they are
only recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devtools.loopback.serving import QueryCounter, Served, serve

API = "/api/v1"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Action:
    """A write the fake received."""

    method: str
    path: str
    body: Any
    authorization: str


@dataclass
class ControlPlaneFake(Served):
    client_id: str = "srebot"
    client_secret: str = "cp-client-secret"
    expires_in: int = 300
    incidents: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    audit_logs: list[dict[str, Any]] = field(default_factory=list)
    scripts: list[dict[str, Any]] = field(default_factory=list)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path with query), API calls only
    per_query: QueryCounter = field(default_factory=QueryCounter)  # every request (token too) by method, path, query
    token_requests: int = 0
    delay: float = 0.0  # seconds every API request waits before it is answered (a slow control plane)
    frozen: bool = False  # writes are recorded but change nothing (a scenario world stays as it was written)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    revoked: set[str] = field(default_factory=set)
    failures: dict[tuple[str, str], list[tuple[int, Any]]] = field(default_factory=dict)
    url: str = ""
    token_url: str = ""
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> ControlPlaneFake:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.post("/token", self._token),
                web.get("/healthz", self._healthz),
                web.get(f"{API}/incidents", self._list_incidents),
                web.get(f"{API}/incidents/{{id}}", self._get_incident),
                web.post(f"{API}/incidents/{{id}}/acknowledge", self._acknowledge),
                web.post(f"{API}/incidents/{{id}}/comments", self._comment),
                web.get(f"{API}/alerts", self._list_alerts),
                web.get(f"{API}/resources", self._list_resources),
                web.get(f"{API}/audit-logs", self._list_audit_logs),
                web.get(f"{API}/automation/scripts", self._list_scripts),
                web.post(f"{API}/automation/execute", self._execute),
                web.get(f"{API}/automation/executions/{{id}}", self._get_execution),
            ]
        )
        self._runner, self.url = await serve(app)
        self.token_url = f"{self.url}/token"
        return self

    # --- test controls ---------------------------------------------------------------------

    def revoke(self) -> None:
        """Invalidate every token issued so far: their next use gets a plain-text 401."""
        self.revoked.update(self.tokens)

    def fail(self, method: str, path: str, status: int, body: Any, *, times: int = 1) -> None:
        """Answer the next `times` `method` requests on `path` (e.g. "/api/v1/incidents") with `status` and `body`."""
        self.failures[(method, path)] = [(status, body)] * times

    def add_incident(
        self,
        title: str,
        *,
        severity: str = "critical",
        status: str = "new",
        affected: list[str] | None = None,
        tags: dict[str, str] | None = None,
        created: datetime | None = None,
    ) -> dict[str, Any]:
        now = created or datetime.now(UTC)
        incident = {
            "id": f"INC-{100 + len(self.incidents) + 1}",
            "title": title,
            "severity": severity,
            "status": status,
            "description": f"{title} (opened by alert rule)",
            "affected_resources": affected or [],
            "assignee": None,
            "acknowledged_by": None,
            "acknowledged_at": None,
            "comments": [],
            "tags": tags or {},
            "created_at": rfc3339(now),
            "updated_at": rfc3339(now),
        }
        self.incidents.append(incident)
        return incident

    def actions_on(self, path: str) -> list[Action]:
        return [a for a in self.actions if a.path == path]

    # --- HTTP ------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.per_query.add_request(request)
        if not request.path.startswith(API):
            return await handler(request)
        self.requests.append((request.method, request.path_qs))
        if self.delay:
            await asyncio.sleep(self.delay)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token in self.revoked:
            return web.Response(status=401, text="Unauthorized", content_type="text/plain")
        if token not in self.tokens:
            return _error(401, "UNAUTHORIZED", "missing or unknown bearer token")
        if self.tokens[token] < time.monotonic():
            return _error(401, "TOKEN_EXPIRED", "token expired")
        if pending := self.failures.get((request.method, request.path)):
            status, body = pending.pop(0)
            if isinstance(body, str):
                return web.Response(status=status, text=body, content_type="text/plain")
            return web.json_response(body, status=status)
        return await handler(request)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"}, status=400
            )
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"},
                status=401,
            )
        token = secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + self.expires_in
        return web.json_response(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer", "scope": "profile email"}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "timestamp": rfc3339(datetime.now(UTC)), "version": "fake", "uptime": "1h"}
        )

    async def _list_incidents(self, request: web.Request) -> web.Response:
        items = [
            i
            for i in self.incidents
            if _matches(i, request.query, ("status", "severity")) and _in_time(i["created_at"], request.query)
        ]
        return _paged(items, request.query)

    async def _get_incident(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        return web.json_response(incident) if incident else _error(404, "NOT_FOUND", "incident not found")

    async def _acknowledge(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        incident = self._incident(request.match_info["id"])
        if incident is None:
            return _error(404, "NOT_FOUND", "incident not found")
        if incident["status"] != "new":
            return _error(409, "CONFLICT", f"incident is {incident['status']}")
        if self.frozen:
            return web.json_response(incident)
        now = rfc3339(datetime.now(UTC))
        incident.update(
            status="acknowledged", acknowledged_by=body.get("acknowledged_by"), acknowledged_at=now, updated_at=now
        )
        if body.get("comment"):
            incident["comments"].append(
                {"author": body.get("acknowledged_by"), "comment": body["comment"], "created_at": now}
            )
        return web.json_response(incident)

    async def _comment(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        incident = self._incident(request.match_info["id"])
        if incident is None:
            return _error(404, "NOT_FOUND", "incident not found")
        if not body.get("comment"):
            return _error(400, "VALIDATION_ERROR", "comment is required")
        if self.frozen:
            return web.Response(status=201)
        incident["comments"].append(
            {"author": "srebot", "comment": body["comment"], "created_at": rfc3339(datetime.now(UTC))}
        )
        return web.Response(status=201)

    async def _list_alerts(self, request: web.Request) -> web.Response:
        alerts = [
            a
            for a in self.alerts
            if _matches(a, request.query, ("status", "severity")) and _in_time(a["fired_at"], request.query)
        ]
        return web.json_response(
            {
                "alerts": alerts,
                "total": len(alerts),
                "firing_count": sum(a["status"] == "firing" for a in alerts),
                "resolved_count": sum(a["status"] == "resolved" for a in alerts),
            }
        )

    async def _list_resources(self, request: web.Request) -> web.Response:
        search = request.query.get("search", "").lower()
        items = [
            r for r in self.resources if _matches(r, request.query, ("status", "type")) and search in r["name"].lower()
        ]
        return _paged(items, request.query)

    async def _list_audit_logs(self, request: web.Request) -> web.Response:
        items = [
            a
            for a in self.audit_logs
            if _matches(a, request.query, ("action", "user_id", "resource_type"))
            and _in_time(a["timestamp"], request.query)
        ]
        return _paged(sorted(items, key=lambda a: a["timestamp"], reverse=True), request.query)

    async def _list_scripts(self, request: web.Request) -> web.Response:
        items = [s for s in self.scripts if _matches(s, request.query, ("category",))]
        return web.json_response({"items": items, "total": len(items)})

    async def _execute(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        script = next((s for s in self.scripts if s["id"] == body.get("script_id")), None)
        if script is None:
            return _error(404, "NOT_FOUND", f"script {body.get('script_id')} not found")
        execution_id = f"exec-{next(self._ids)}"
        self.executions[execution_id] = {
            "id": execution_id,
            "script_id": script["id"],
            "script_name": script["name"],
            "status": "pending",
            "parameters": body.get("parameters", {}),
            "target_resources": body.get("target_resources", []),
            "output": "",
            "error": None,
            "started_at": rfc3339(datetime.now(UTC)),
            "completed_at": None,
            "executed_by": "srebot",
        }
        message = "dry run accepted" if body.get("dry_run") else "execution queued"
        return web.json_response({"execution_id": execution_id, "status": "pending", "message": message}, status=202)

    async def _get_execution(self, request: web.Request) -> web.Response:
        execution = self.executions.get(request.match_info["id"])
        return web.json_response(execution) if execution else _error(404, "NOT_FOUND", "execution not found")

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = json.loads(await request.text() or "{}")
        self.actions.append(Action(request.method, request.path, body, request.headers.get("Authorization", "")))
        return body

    def _incident(self, incident_id: str) -> dict[str, Any] | None:
        return next((i for i in self.incidents if i["id"] == incident_id), None)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": code, "message": message, "details": {}, "request_id": secrets.token_hex(8)}, status=status
    )


def _matches(item: dict[str, Any], query: Any, fields: tuple[str, ...]) -> bool:
    return all(item.get(name) == query[name] for name in fields if name in query)


def _in_time(stamp: str, query: Any) -> bool:
    return (not query.get("start_time") or stamp >= query["start_time"]) and (
        not query.get("end_time") or stamp <= query["end_time"]
    )


def _paged(items: list[dict[str, Any]], query: Any) -> web.Response:
    page, size = int(query.get("page", 1)), int(query.get("page_size", 20))
    if not 1 <= size <= 100 or page < 1:
        return _error(400, "VALIDATION_ERROR", "page must be >= 1 and page_size 1-100")
    total = len(items)
    return web.json_response(
        {
            "items": items[(page - 1) * size : page * size],
            "pagination": {"page": page, "page_size": size, "total": total, "total_pages": max(1, -(-total // size))},
        }
    )
