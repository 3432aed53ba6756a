"""The aiohttp handler of POST /api/messages: authenticate, parse the activity, check its serviceUrl, run the turn, answer fast."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from microsoft_agents.activity import Activity, ActivityTypes
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import Agent
from pydantic import ValidationError

from bot.telemetry import ACK_LATENCY, EVENTS_DROPPED
from integrations.teams.adapter import TokenUnavailable
from integrations.teams.auth import Refused, TeamsAuth, Unavailable

log = logging.getLogger("srebot.teams")


def _bad_request(reason: str) -> web.Response:
    EVENTS_DROPPED.labels("teams", "malformed").inc()
    return web.json_response({"error": reason}, status=400)


def _unauthorized(reason: str) -> web.Response:
    EVENTS_DROPPED.labels("teams", "unauthorized").inc()
    log.warning("Teams request refused: %s", reason)
    return web.json_response({"error": "unauthorized"}, status=401)


def _parse(body: bytes) -> Activity | str:
    """The activity, or why the body is not one."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        return f"body is not JSON: {exc}"
    if not isinstance(data, dict):
        return "body is not a JSON object"
    try:
        activity = Activity.model_validate(data)
    except (ValidationError, ValueError, TypeError) as exc:
        return f"not a Bot Framework activity: {str(exc)[:300]}"
    return activity


def messages_handler(
    adapter: CloudAdapter, auth: TeamsAuth, agent: Agent
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The token is checked before the body is even parsed: a missing or invalid one is 401. Then the
    activity's serviceUrl must be one replies may go to (and the token's, with credentials)."""

    async def messages(request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        try:
            identity = await auth.identity(request.headers.get("Authorization"))
        except Refused as exc:
            return _unauthorized(str(exc))
        except Unavailable as exc:
            log.error("cannot verify the Bot Framework token now: %s", exc)
            return web.json_response({"error": "cannot verify the token now"}, status=503)
        parsed = _parse(await request.read())
        if isinstance(parsed, str):
            return _bad_request(parsed)
        activity = parsed
        if not activity.service_url or not (activity.conversation and activity.conversation.id):
            if activity.type == ActivityTypes.message:
                return _bad_request("a message activity needs serviceUrl and conversation.id")
            EVENTS_DROPPED.labels("teams", activity.type).inc()
            return web.Response(status=200)
        try:
            auth.check_destination(identity, activity)
        except Refused as exc:
            return _unauthorized(str(exc))
        try:
            invoke = await adapter.process_activity(identity, activity, agent.on_turn)
        except TokenUnavailable as exc:  # the Bot Framework retries; nothing was taken on
            log.error("cannot get the bot's token for the Bot Connector: %s", exc)
            return web.json_response({"error": "cannot reply now"}, status=503)
        except Exception:
            log.exception("Teams activity failed", extra={"activity_type": activity.type})
            return web.json_response({"error": "internal error"}, status=500)
        finally:
            ACK_LATENCY.labels("teams").observe(time.monotonic() - received)
        if invoke is not None:
            status = int(invoke.status or 200)
            return web.json_response(invoke.body, status=status) if invoke.body is not None else web.Response(
                status=status)
        return web.Response(status=200)

    return messages
