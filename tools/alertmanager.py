"""Alertmanager's API v2: create a silence (the write an approved "Silence" runs) and a health read for `srebot check`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from tools.base import ErrorCode, HttpBackend, ToolError, ToolResult, http_error


class Silence(BaseModel):
    id: str
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str


class Alertmanager(HttpBackend):
    name = "alertmanager"

    def __init__(self, url: str | None, *, timeout: float = 10.0, attempts: int = 3, backoff: float = 0.2):
        super().__init__(url, api_prefix="/api/v2", timeout=timeout, attempts=attempts, backoff=backoff, cache_ttl=0)

    def not_configured_reason(self) -> str:
        return "Alertmanager is not configured (ALERTMANAGER_URL)"

    async def ping(self) -> ToolResult[str]:
        async def fetch() -> str:
            body = await self._get_json("/status")
            version = ((body or {}).get("versionInfo") or {}).get("version", "")
            return f"alertmanager {version}".strip()

        return await self.run("ping", fetch)

    async def create_silence(
        self, matchers: dict[str, str], starts_at: datetime, ends_at: datetime, *, created_by: str, comment: str
    ) -> ToolResult[Silence]:
        """POST /api/v2/silences with one equality matcher per label; runs once (a write is never retried)."""
        if not matchers:
            return ToolResult(
                f"{self.name}.create_silence",
                error=ToolError(ErrorCode.BAD_QUERY, "a silence needs at least one label to match"),
            )

        async def post() -> Silence:
            body = {
                "matchers": [
                    {"name": name, "value": value, "isRegex": False, "isEqual": True}
                    for name, value in sorted(matchers.items())
                ],
                "startsAt": starts_at.isoformat(),
                "endsAt": ends_at.isoformat(),
                "createdBy": created_by,
                "comment": comment,
            }
            response = await self._http().post("/silences", json=body)
            if response.status_code >= 400:
                raise http_error(response, "alertmanager POST /api/v2/silences")
            return Silence(
                id=str(response.json().get("silenceID", "")),
                matchers=dict(matchers),
                starts_at=starts_at,
                ends_at=ends_at,
                created_by=created_by,
            )

        return await self.run("create_silence", post, write=True)
