"""What Slack tells the policy: payload shapes the bot can read, people of another organisation, user groups.

- `malformed(body)`: why a signed payload cannot be read (wrong-typed `actions`, `user`, `channel`, ...), so it
  is refused with 400 before any listener runs, instead of failing in one.
- `is_external(body, home_team)`: Slack Connect — the event arrived through a channel shared with another
  organisation (`is_ext_shared_channel`), or the acting user's team is not the installation's.
- `UserGroups`: the policy's Slack directory; a user group id (S…) resolved to its members with
  usergroups.users.list (scope `usergroups:read`), cached for `ttl` seconds, one call per group at a time.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, ValidationError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("srebot.slack")

USER_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Id(_Shape):
    id: str


class _Action(_Shape):
    action_id: str
    value: str | None = None


class _Container(_Shape):
    channel_id: str | None = None


class _Message(_Shape):
    thread_ts: str | None = None
    ts: str | None = None


class _BlockActions(_Shape):
    type: str
    user: _Id
    actions: list[_Action]
    channel: _Id | None = None
    container: _Container | None = None
    message: _Message | None = None
    team: _Id | None = None


class _Event(_Shape):
    type: str
    user: str | None = None
    channel: str | None = None
    text: str | None = None
    ts: str | None = None
    thread_ts: str | None = None


class _EventCallback(_Shape):
    type: str
    event: _Event
    event_id: str | None = None
    team_id: str | None = None


def malformed(body: dict[str, Any]) -> str | None:
    """Why a payload of a kind the bot acts on does not have the shape Slack sends, or None."""
    kind = body.get("type")
    if kind == "event_callback":
        event = body.get("event")
        if isinstance(event, dict) and event.get("type") not in ("app_mention", "message"):
            return None  # other events are only counted and acked; their shapes differ (user objects, ...)
    shape = {"block_actions": _BlockActions, "event_callback": _EventCallback}.get(kind)  # type: ignore[arg-type]
    if shape is None:
        return None
    try:
        shape.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{body['type']}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return None


def is_external(body: dict[str, Any], home_team: str | None) -> bool:
    """True for a person of another organisation: a Slack Connect channel, or a user whose team is not
    the installation's (`home_team`, from auth.test)."""
    if body.get("is_ext_shared_channel"):
        return True
    event = body.get("event") if isinstance(body.get("event"), dict) else {}
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    team = event.get("user_team") or event.get("team") or user.get("team_id") or body.get("user_team_id")
    home = home_team or _installation_team(body)
    return bool(team and home and team != home)


def _installation_team(body: dict[str, Any]) -> str | None:
    authorizations = body.get("authorizations")
    if isinstance(authorizations, list) and authorizations and isinstance(authorizations[0], dict):
        return authorizations[0].get("team_id")
    return None


class UserGroups:
    """The policy's Directory for Slack: members of user groups, cached."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 300.0, timeout: float = 5.0):
        self.client = client
        self.timeout = timeout
        self._cache: TTLCache[str, frozenset[str]] = TTLCache(maxsize=1000, ttl=ttl)
        self._locks: dict[str, asyncio.Lock] = {}

    async def members(self, group: str) -> frozenset[str] | None:
        if not USER_GROUP.match(group):
            return None
        cached = self._cache.get(group)
        if cached is not None:
            return cached
        async with self._locks.setdefault(group, asyncio.Lock()):
            cached = self._cache.get(group)
            if cached is not None:
                return cached
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self.client.usergroups_users_list(usergroup=group)
                users = response.get("users")
                if not isinstance(users, list):
                    raise ValueError("no users in the answer")
            except Exception as exc:  # noqa: BLE001 - not resolved means not a member: nobody is let in by an error
                log.warning("could not resolve a Slack user group", extra={"group": group,
                            "error": f"{exc.__class__.__name__}: {exc}"})
                return frozenset()
            members = frozenset(u for u in users if isinstance(u, str))
            self._cache[group] = members
            return members
