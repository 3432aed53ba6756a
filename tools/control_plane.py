"""The SRE control plane (docs/contracts/control-plane.md): incidents, alerts, resources, audit log and
automation for diagnosis; acknowledge, comment and run automation for approved actions."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from tools.base import ErrorCode, HttpBackend, ToolError, ToolResult, http_error
from tools.redact import redact_data

T = TypeVar("T")


class _Model(BaseModel):
    # The control plane adds fields over time and some deployments send numeric ids.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class Incident(_Model):
    id: str
    title: str
    severity: str
    status: str
    description: str | None = None
    affected_resources: list[Any] = Field(default_factory=list)  # names, or objects with a name
    assignee: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    root_cause: str | None = None
    comments: list[Any] = Field(default_factory=list)
    tags: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Alert(_Model):
    id: str
    name: str
    severity: str
    status: str
    resource_name: str | None = None
    message: str | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None


class Resource(_Model):
    id: str
    name: str
    type: str
    status: str
    ip_address: str | None = None
    location: str | None = None
    group_id: str | None = None
    group_name: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    owner: str | None = None
    description: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class AuditLog(_Model):
    id: str
    timestamp: datetime
    user_id: str | None = None
    username: str | None = None
    action: str
    resource_type: str | None = None
    resource_id: str | None = None
    resource_name: str | None = None
    changes: dict[str, Any] = Field(default_factory=dict)
    result: str | None = None
    error_message: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None


class Script(_Model):
    id: str
    name: str
    category: str
    language: str
    description: str | None = None
    parameters: list[Any] = Field(default_factory=list)
    tags: dict[str, Any] = Field(default_factory=dict)
    version: str | None = None


class Execution(_Model):
    id: str
    script_id: str
    script_name: str | None = None
    status: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    target_resources: list[Any] = Field(default_factory=list)
    output: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    executed_by: str | None = None


class ExecutionStarted(_Model):
    execution_id: str
    status: str
    message: str | None = None


class Listing(BaseModel, Generic[T]):
    """Items of a list read; `total` is what the control plane has, `notes` say what was left out."""

    items: list[T]
    total: int | None = None
    notes: list[str] = Field(default_factory=list)


class ControlPlane(HttpBackend):
    """Bearer tokens come from the OAuth2 client-credentials grant at `token_url`; without a
    `token_url` requests carry no token (a control plane without auth, e.g. local)."""

    name = "control_plane"

    def __init__(
        self,
        url: str | None,
        *,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.2,
        cache_ttl: float = 15.0,
        max_pages: int = 5,
        page_size: int = 100,
    ):
        super().__init__(
            url, api_prefix="/api/v1", timeout=timeout, attempts=attempts, backoff=backoff, cache_ttl=cache_ttl
        )
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.max_pages = max_pages
        self.page_size = page_size
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.url is not None and (self.token_url is None or bool(self.client_id and self.client_secret))

    def not_configured_reason(self) -> str:
        if self.url is None:
            return "control plane is not configured (CONTROL_PLANE_URL)"
        return "control plane token URL is set but the client id or secret is missing"

    # --- reads -----------------------------------------------------------------------------

    async def ping(self) -> ToolResult[str]:
        """Health and, with auth configured, a token: proves the URL and the client credentials."""

        async def fetch() -> str:
            response = await self._http().get(f"{self.url}/healthz")
            if response.status_code >= 400:
                raise http_error(response, "control plane /healthz")
            await self._bearer()
            return f"control plane {response.json().get('version', '')}".strip()

        return await self.run("ping", fetch)

    async def open_incidents(self, service: str | None = None) -> ToolResult[Listing[Incident]]:
        """New and acknowledged incidents, those naming `service` in affected resources, title or tags when given."""

        async def fetch() -> Listing[Incident]:
            (new, new_notes), (acked, acked_notes) = await asyncio.gather(
                self._paged("/incidents", {"status": "new"}, "new incidents"),
                self._paged("/incidents", {"status": "acknowledged"}, "acknowledged incidents"),
            )
            incidents = [Incident.model_validate(i) for i in new + acked]
            if service:
                incidents = [i for i in incidents if mentions(service, _incident_texts(i))]
            return Listing(items=incidents, total=len(incidents), notes=new_notes + acked_notes)

        return await self.run("open_incidents", fetch, key=(service,))

    async def firing_alerts(self, service: str | None = None) -> ToolResult[Listing[Alert]]:
        """Firing alerts, those about `service` (resource, name or message) when given."""
        return await self._alerts("firing", service)

    async def resolved_alerts(self, service: str | None = None) -> ToolResult[Listing[Alert]]:
        """Alerts that fired and resolved (what a page the user missed was about), those about `service` when
        given."""
        return await self._alerts("resolved", service)

    async def _alerts(self, status: str, service: str | None) -> ToolResult[Listing[Alert]]:
        async def fetch() -> Listing[Alert]:
            body = await self._get("/alerts", {"status": status})
            alerts = [Alert.model_validate(a) for a in body.get("alerts") or []]
            if service:
                alerts = [a for a in alerts if mentions(service, [a.resource_name, a.name, a.message])]
            return Listing(items=alerts, total=len(alerts))

        return await self.run(f"{status}_alerts", fetch, key=(service,))

    async def resources(self, search: str) -> ToolResult[Listing[Resource]]:
        async def fetch() -> Listing[Resource]:
            items, notes = await self._paged("/resources", {"search": search}, "resources")
            return Listing(items=[Resource.model_validate(r) for r in items], total=len(items), notes=notes)

        return await self.run("resources", fetch, key=(search,))

    async def audit_logs(
        self, service: str | None, window_seconds: float, *, now: datetime | None = None
    ) -> ToolResult[Listing[AuditLog]]:
        """What was done in the `window_seconds` before `now` (default: the time of the call), newest first: the
        "what changed" signal of a diagnosis; only what was done to `service` (by resource name) when given. Keyed
        by the window, not by instants, so the people diagnosing one service at once share one call."""

        async def fetch() -> Listing[AuditLog]:
            until = now or datetime.now(UTC)
            params = {"start_time": _rfc3339(until - timedelta(seconds=window_seconds)), "end_time": _rfc3339(until)}
            items, notes = await self._paged("/audit-logs", params, "audit log entries")
            entries = [AuditLog.model_validate(a) for a in items]
            entries = sorted(
                (a for a in entries if service is None or mentions(service, [a.resource_name])), key=lambda a: a.timestamp, reverse=True
            )
            return Listing(items=entries, total=len(entries), notes=notes)

        return await self.run("audit_logs", fetch, key=(service, window_seconds, now))

    async def scripts(self, category: str | None = None) -> ToolResult[Listing[Script]]:
        async def fetch() -> Listing[Script]:
            body = await self._get("/automation/scripts", {"category": category} if category else {})
            items = [Script.model_validate(s) for s in body.get("items") or []]
            return Listing(items=items, total=body.get("total", len(items)))

        return await self.run("scripts", fetch, key=(category,))

    async def execution(self, execution_id: str) -> ToolResult[Execution]:
        """An automation run's state; not cached, since callers poll it."""

        async def fetch() -> Execution:
            return Execution.model_validate(
                await self._get(f"/automation/executions/{quote(execution_id, safe='')}", {})
            )

        return await self.run("execution", fetch)

    # --- writes (only called after approval) -----------------------------------------------

    async def acknowledge_incident(self, incident_id: str, by: str, comment: str) -> ToolResult[Incident]:
        """Acknowledge an incident on behalf of `by`. Only called after approval."""

        async def post() -> Incident:
            path = f"/incidents/{quote(incident_id, safe='')}/acknowledge"
            response = await self._request("POST", path, json={"acknowledged_by": by, "comment": comment})
            return Incident.model_validate(redact_data(response.json()))

        return await self.run("acknowledge_incident", post, write=True)

    async def comment_incident(self, incident_id: str, comment: str) -> ToolResult[None]:
        """Add a comment to an incident. Only called after approval."""

        async def post() -> None:
            await self._request("POST", f"/incidents/{quote(incident_id, safe='')}/comments", json={"comment": comment})

        return await self.run("comment_incident", post, write=True)

    async def execute_automation(
        self, script_id: str, parameters: dict[str, Any], target_resources: list[str], dry_run: bool = False
    ) -> ToolResult[ExecutionStarted]:
        """Start an automation script; poll `execution()` for its outcome. Only called after approval."""

        async def post() -> ExecutionStarted:
            body = {
                "script_id": script_id,
                "parameters": parameters,
                "target_resources": target_resources,
                "dry_run": dry_run,
            }
            response = await self._request("POST", "/automation/execute", json=body)
            return ExecutionStarted.model_validate(response.json())

        return await self.run("execute_automation", post, write=True)

    # --- HTTP and auth ---------------------------------------------------------------------

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        body = (await self._request("GET", path, params=params)).json()
        if not isinstance(body, dict):
            raise ToolError(ErrorCode.BACKEND_ERROR, f"GET {path}: expected a JSON object, got {type(body).__name__}")
        return redact_data(body)

    async def _paged(self, path: str, params: dict[str, Any], what: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Items of every page up to `max_pages`, and a note when more were left."""
        items: list[dict[str, Any]] = []
        for page in range(1, self.max_pages + 1):
            body = await self._get(path, {**params, "page": page, "page_size": self.page_size})
            items += body.get("items") or []
            pagination = body.get("pagination") or {}
            total_pages = int(pagination.get("total_pages") or 1)
            if page >= total_pages:
                return items, []
        total = pagination.get("total", "more")
        return items, [f"{what}: read the first {self.max_pages} of {total_pages} pages ({len(items)} of {total})"]

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call with a bearer token; a 401 renews the token once and repeats the call once."""
        token = await self._bearer()
        response = await self._send(method, path, token, **kwargs)
        if response.status_code == 401 and token is not None:
            token = await self._bearer(stale=token)
            response = await self._send(method, path, token, **kwargs)
        if response.status_code >= 400:
            raise http_error(response, f"control plane {method} {path}")
        return response

    async def _send(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self._http().request(method, path, headers=headers, **kwargs)

    async def _bearer(self, stale: str | None = None) -> str | None:
        """The cached token, fetched when missing, near expiry, or equal to `stale` (rejected by the API).
        Concurrent callers wait for one fetch; one who was refused an old token takes the fresh one."""
        if self.token_url is None:
            return None
        async with self._token_lock:
            fresh = self._token is not None and time.monotonic() < self._token_renew_at
            if not fresh or self._token == stale:
                self._token, lifetime = await self._fetch_token()
                # renew a little before expiry: a token that expires in flight costs a 401 and a retry
                self._token_renew_at = time.monotonic() + lifetime - min(30.0, lifetime * 0.1)
            return self._token

    async def _fetch_token(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id or "",
            "client_secret": self.client_secret or "",
        }
        response = await self._http().post(self.token_url or "", data=form)
        if response.status_code >= 400:
            error = http_error(response, "control plane token request")
            if detail := _oauth_error(response):
                error = ToolError(error.code, f"control plane token request: HTTP {response.status_code}: {detail}")
            raise error
        try:
            body = response.json()
            return str(body["access_token"]), float(body.get("expires_in") or 60)
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolError(ErrorCode.BACKEND_ERROR, "control plane token response has no access_token") from exc


def _oauth_error(response: httpx.Response) -> str | None:
    """RFC 6749 error text ("invalid_client: Invalid client credentials"), when the body is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error_description"), str):
        return f"{body.get('error')}: {body['error_description']}"
    return None


def mentions(service: str, texts: list[Any]) -> bool:
    """`service` as a whole word (hyphens separate words: "checkout-db" mentions checkout) in any text."""
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(service)}(?![A-Za-z0-9_])", re.I)
    return any(isinstance(t, str) and word.search(t) for t in texts)


def _incident_texts(incident: Incident) -> list[Any]:
    resources = [r.get("name") if isinstance(r, dict) else r for r in incident.affected_resources]
    return [*resources, incident.title, *incident.tags.values()]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
