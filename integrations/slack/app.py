"""The Bolt AsyncApp of srebot, served at POST /slack/events and over Socket Mode, acknowledging before any work."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.telemetry import ACK_LATENCY, EVENTS_RECEIVED
from bot.ports import Core
from integrations.slack.intake import ALERT_BUTTONS, PLATFORM, AcksFirst, Identity, SlackIntake, dropped
from integrations.slack.port import SlackNotifier
from integrations.slack.surface import SlackSurface
from integrations.slack.trust import UserGroups, malformed

log = logging.getLogger("srebot.slack")

EVENTS_PATH = "/slack/events"
EVENT_KINDS = {"app_mention", "message"}
PAYLOAD_KINDS = {"block_actions", "url_verification", "view_submission", "view_closed", "shortcut",
                 "message_action", "interactive_message", "block_suggestion"}


class _QuietTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment itself and warns that the client's token wins,
    which is what we want: the settings are the one source of configuration."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("As you gave `client` as well")


BOLT_LOG = logging.getLogger("srebot.slack.bolt")
BOLT_LOG.addFilter(_QuietTokenWarning())


def web_client(base_url: str, token: str | None = None) -> AsyncWebClient:
    """The Web API client: `base_url` ends with "/"; retries on 429 (honouring Retry-After),
    on connection errors and on 500/503."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def kind_of(body: dict[str, Any]) -> str:
    """A bounded label for the events-received metric."""
    if body.get("type") == "event_callback":
        event_type = (body.get("event") or {}).get("type")
        return event_type if event_type in EVENT_KINDS else "event"
    if body.get("command"):
        return "command"
    return body.get("type") if body.get("type") in PAYLOAD_KINDS else "other"


def is_retry(headers: dict[str, Any]) -> bool:
    values = headers.get("x-slack-retry-num") or ["0"]
    try:
        return int(values[0]) > 0
    except (TypeError, ValueError):
        return True


class SlackIntegration:
    """The Slack side of one srebot process: Web API client, Bolt app, intake, and their lifecycle."""

    def __init__(self, core: Core):
        settings = core.settings
        assert settings.slack_bot_token is not None
        self.core = core
        self.token = settings.slack_bot_token.get_secret_value()
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        # Socket Mode needs no signing secret; without one, nothing that comes over HTTP can be verified
        self.verifier = SignatureVerifier(secret) if secret else None
        if self.verifier is None:
            log.warning("SLACK_SIGNING_SECRET is not set: every request to %s is refused (401)", EVENTS_PATH)
        self.client = web_client(settings.slack_api_url)
        self.identity = Identity(self.client)
        self.intake = SlackIntake(core, self.client, self.identity)
        self.surface = SlackSurface(core, self.client, self.intake.spawn)
        core.policy.add_directory(PLATFORM, UserGroups(self.client))

        async def authorize(enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
            # auth.test is asked once per process (at startup), not on a request's way to its ack
            me = await self.identity.get()
            return AuthorizeResult(
                enterprise_id=enterprise_id,
                team_id=team_id or me.get("team_id"),
                bot_token=self.token,
                bot_user_id=me.get("user_id"),
                bot_id=me.get("bot_id"),
                user_id=user_id,
            )

        # process_before_response: a listener only acks and hands off to a task (nothing slow runs
        # inline), so the response goes out as soon as the listener returns, with no polling.
        # The client gets its token after: with `authorize`, Bolt would otherwise warn it skips it.
        self.bolt = AsyncApp(
            name="srebot",
            logger=BOLT_LOG,
            signing_secret=secret,
            client=self.client,
            authorize=authorize,
            process_before_response=True,
            ignoring_self_events_enabled=False,  # classify() ignores every bot, counted in the metrics
        )
        self.client.token = self.token
        self._register()

    def _register(self) -> None:
        bolt, intake = self.bolt, self.intake
        bolt.use(self._gate)
        self.surface.register(bolt)  # before the catch-alls below, and before the thread's approval buttons
        bolt.event("app_mention")(intake.on_event)
        bolt.event("message")(intake.on_event)
        bolt.event(re.compile(".*"))(self._ignore)  # never a 404 (which Slack would retry)
        bolt.command(re.compile("^/"))(intake.on_command)
        bolt.action("approval_approve")(intake.on_approval)
        bolt.action("approval_reject")(intake.on_approval)
        bolt.action(re.compile(f"^({'|'.join(ALERT_BUTTONS)})$"))(intake.on_alert_button)
        bolt.action(re.compile(".*"))(self._ack_only)

    async def _gate(self, req: AsyncBoltRequest, body: dict[str, Any], next: Any) -> BoltResponse | None:
        """Global middleware: count every request. Redeliveries (X-Slack-Retry-Num, which Bolt also sets
        for Socket Mode envelopes with a retry_attempt) go on to the database claim like any event:
        when the first delivery never reached any replica, the retry is the only copy of the request."""
        EVENTS_RECEIVED.labels(PLATFORM, "retry" if is_retry(req.headers) else kind_of(body)).inc()
        problem = malformed(body)
        if problem is not None:  # Socket Mode envelopes come here without passing handle_http
            log.warning("refused a malformed Slack payload", extra={"error": problem})
            return BoltResponse(status=400, body="malformed payload")
        return await next()

    async def _ignore(self, body: dict[str, Any]) -> None:
        dropped("ignored")

    async def _ack_only(self, ack: Any) -> None:
        await ack()

    # --- HTTP ------------------------------------------------------------------------------------
    async def handle_http(self, request: web.Request) -> web.Response:
        """POST /slack/events: 401 unless signed and fresh, 400 unless a Slack payload, else Bolt."""
        started = time.perf_counter()
        with self.intake.acks.acking():
            response = await self._respond(request)
        ACK_LATENCY.labels(PLATFORM).observe(time.perf_counter() - started)
        return response

    async def _respond(self, request: web.Request) -> web.Response:
        raw = await request.read()
        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        signature = request.headers.get("X-Slack-Signature")
        try:
            valid = self.verifier is not None and self.verifier.is_valid(body=raw, timestamp=timestamp, signature=signature)
        except (ValueError, UnicodeDecodeError):
            valid = False
        if not valid:
            log.warning("refused a Slack request: bad or stale signature")
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            bolt_request = AsyncBoltRequest(
                body=raw.decode("utf-8"), query=request.query_string, headers=request.headers  # type: ignore[arg-type]
            )
            body = bolt_request.body
            if not isinstance(body, dict) or not (body.get("type") or body.get("command") or body.get("ssl_check")):
                raise ValueError("not a Slack payload")
            problem = malformed(body)
            if problem is not None:
                raise ValueError(problem)
        except Exception as exc:  # noqa: BLE001 - JSON, form or payload that Bolt cannot read
            log.warning("refused a malformed Slack request", extra={"error": f"{exc.__class__.__name__}: {exc}"})
            return web.json_response({"error": "malformed request"}, status=400)
        return await to_aiohttp_response(await self.bolt.async_dispatch(bolt_request))

    # --- lifecycle -------------------------------------------------------------------------------
    async def on_startup(self, _: web.Application | None = None) -> None:
        if self.client.session is None or self.client.session.closed:
            self.client.session = aiohttp.ClientSession()  # one connection pool for every Web API call
        await self.identity.get(timeout=5.0)

    async def on_shutdown(self, _: web.Application | None = None) -> None:
        await self.intake.idle()

    async def on_cleanup(self, _: web.Application | None = None) -> None:
        if self.client.session is not None:
            await self.client.session.close()
            self.client.session = None


class TimedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, recording ack latency and going ahead of handed-off work like the HTTP endpoint."""

    def __init__(self, acks: AcksFirst, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.acks = acks

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        started = time.perf_counter()
        with self.acks.acking():
            await super().handle(client, req)
        ACK_LATENCY.labels(PLATFORM).observe(time.perf_counter() - started)


SLACK = web.AppKey("slack", SlackIntegration)


def mount_slack(app: web.Application, core: Core) -> SlackIntegration:
    """Serve Slack at POST /slack/events and register the Slack notifier."""
    slack = SlackIntegration(core)
    app[SLACK] = slack
    app.router.add_post(EVENTS_PATH, slack.handle_http)
    app.on_startup.append(slack.on_startup)
    app.on_shutdown.append(slack.on_shutdown)
    app.on_cleanup.append(slack.on_cleanup)
    core.add_notifier(SlackNotifier(slack.client, core))
    return slack


async def start_socket_mode(app: web.Application, core: Core) -> AsyncSocketModeHandler:
    """Open the Socket Mode connection (SLACK_APP_TOKEN); the caller closes it with `close_async()`."""
    slack = app.get(SLACK)
    if slack is None:  # Socket Mode alone, without the HTTP endpoint
        slack = SlackIntegration(core)
        core.add_notifier(SlackNotifier(slack.client, core))
    if slack.client.session is None:
        await slack.on_startup()
    token = core.settings.slack_app_token
    assert token is not None, "Socket Mode needs SLACK_APP_TOKEN"
    handler = TimedSocketModeHandler(
        slack.intake.acks, slack.bolt, app_token=token.get_secret_value(), web_client=slack.client, logger=logging.getLogger("srebot.slack.socket")
    )
    await handler.connect_async()
    log.info("Slack Socket Mode connected")
    return handler
