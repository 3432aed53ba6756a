"""The aiohttp handler of POST /api/messages: parse the activity, authenticate it, run the turn, answer fast."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

import requests
from aiohttp import web
from botbuilder.core import Bot
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes
from msrest.exceptions import DeserializationError

from bot.telemetry import ACK_LATENCY, EVENTS_DROPPED

log = logging.getLogger("srebot.teams")


def _bad_request(reason: str) -> web.Response:
    EVENTS_DROPPED.labels("teams", "malformed").inc()
    return web.json_response({"error": reason}, status=400)


def _unauthorized(exc: Exception) -> web.Response:
    log.warning("Teams request refused: %s", exc.__class__.__name__)
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
        activity = Activity().deserialize(data)
    except (DeserializationError, ValueError, TypeError) as exc:
        return f"not a Bot Framework activity: {exc}"
    if not activity.type:
        return "activity has no type"
    return activity


def messages_handler(adapter: CloudAdapter, bot: Bot) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Bot Framework auth is checked before anything is processed: a missing or invalid token is 401
    (unless no app id is configured, which turns auth off)."""

    async def messages(request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        parsed = _parse(await request.read())
        if isinstance(parsed, str):
            return _bad_request(parsed)
        activity = parsed
        auth = adapter.bot_framework_authentication
        try:
            authenticated = await auth.authenticate_request(activity, request.headers.get("Authorization", ""))
        except PermissionError as exc:  # no token, or one that is not for this bot
            return _unauthorized(exc)
        except (requests.RequestException, ConnectionError, TimeoutError) as exc:
            # the OpenID metadata could not be fetched: not the caller's fault, and worth a retry
            log.error("cannot verify the Bot Framework token: %s", exc)
            return web.json_response({"error": "cannot verify the token now"}, status=503)
        except Exception as exc:  # a malformed JWT, an unknown signing key, a wrong issuer
            return _unauthorized(exc)
        if not activity.service_url or not (activity.conversation and activity.conversation.id):
            if activity.type == ActivityTypes.message:
                return _bad_request("a message activity needs serviceUrl and conversation.id")
            EVENTS_DROPPED.labels("teams", activity.type).inc()
            return web.Response(status=200)
        try:
            invoke = await adapter.process_activity(authenticated, activity, bot.on_turn)
        except Exception:
            log.exception("Teams activity failed", extra={"activity_type": activity.type})
            return web.json_response({"error": "internal error"}, status=500)
        finally:
            ACK_LATENCY.labels("teams").observe(time.monotonic() - received)
        if invoke is not None:
            # the body is already plain JSON here; serialising it again is what breaks Action.Execute
            return web.json_response(invoke.body, status=int(invoke.status)) if invoke.body is not None else (
                web.Response(status=int(invoke.status)))
        return web.Response(status=200)

    return messages
