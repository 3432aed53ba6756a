"""POST /alerts/alertmanager: checks the token, validates the payload, answers 200 at once and leaves the work to the desk."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time

from aiohttp import web
from pydantic import ValidationError

from bot.alerts.desk import AlertDesk
from bot.alerts.payload import AlertGroup, WebhookPayload, problems
from bot.telemetry import ACK_LATENCY, ALERTS_REJECTED

log = logging.getLogger("srebot.alerts")

PATH = "/alerts/alertmanager"
MAX_BODY = 1024 * 1024  # Alertmanager's max_alerts keeps a group's payload far below this


def authorized(header: str, token: str) -> bool:
    """`Bearer <token>`, or basic auth whose password is the token (any user name); compared in constant time."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), token.encode())
    return False


def _refuse(status: int, reason: str, error: str) -> web.Response:
    ALERTS_REJECTED.labels(reason).inc()
    return web.json_response({"error": error}, status=status)


def make_handler(desk: AlertDesk, token: str):  # type: ignore[no-untyped-def]
    async def receive(request: web.Request) -> web.Response:
        started = time.perf_counter()
        if not authorized(request.headers.get("Authorization", ""), token):
            log.warning("refused an alert webhook: missing or wrong token")
            return _refuse(401, "unauthorized", "missing or wrong credentials")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _refuse(413, "too_large", f"payload larger than {MAX_BODY} bytes")
        try:
            raw = await request.read()  # a chunked body is capped by the app's client_max_size
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, "too_large", f"payload larger than {MAX_BODY} bytes")
        if len(raw) > MAX_BODY:
            return _refuse(413, "too_large", f"payload larger than {MAX_BODY} bytes")
        try:
            payload = WebhookPayload.model_validate(json.loads(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            reason = problems(exc) if isinstance(exc, ValidationError) else f"not JSON: {exc}"
            log.warning("refused a malformed alert webhook", extra={"error": reason})
            return _refuse(400, "malformed", reason)
        group = AlertGroup.from_webhook(payload)
        try:  # stored before the answer: a notification Alertmanager was told we have is never lost
            accepted = await desk.accept(group)
        except Exception as exc:  # noqa: BLE001 - the database is down or refusing: Alertmanager retries a 5xx
            log.error("could not store an alert notification", extra={"error": f"{exc.__class__.__name__}: {exc}"})
            return _refuse(503, "unavailable", "srebot cannot store the notification right now; send it again")
        desk.spawn(desk.apply(group, accepted))
        ACK_LATENCY.labels("alertmanager").observe(time.perf_counter() - started)
        return web.json_response({"status": "accepted", "alerts": len(payload.alerts)})

    return receive
