"""Turns acknowledged Slack events, `/sre` commands and button clicks into dispatcher requests and approval decisions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.policy import ALERT_THREAD
from bot.ports import Actor, Core, ConversationKey, DatabaseError, Request, new_id
from bot.telemetry import EVENTS_DROPPED
from bot.wording import NOT_READY, database_trouble, short
from integrations.slack import blocks
from bot.commands import parse_command
from integrations.slack.port import EphemeralPort, SlackReplyPort, call, post_message
from integrations.slack.trust import is_external


log = logging.getLogger("srebot.slack")

PLATFORM = "slack"
# message subtypes that are still a person writing; every other subtype (edits, deletions, joins,
# bot_message, ...) is ignored
HUMAN_SUBTYPES = {None, "file_share", "thread_broadcast"}
SLASH_MEMORY = 20  # /sre threads remembered per channel, for `/sre cancel`
# the buttons of an alert thread's root message (integrations.slack.alerts) -> the desk's button names
ALERT_BUTTONS = {"alert_silence": "silence", "alert_ack": "ack", "alert_investigate": "investigate"}


def dropped(reason: str) -> None:
    EVENTS_DROPPED.labels(PLATFORM, reason).inc()


@dataclass(frozen=True)
class Incoming:
    """A message the bot may answer; `follow_up` ones only when their thread already has a session."""

    key: ConversationKey
    user: str
    text: str
    event_id: str | None
    ts: str
    follow_up: bool
    external: bool = False  # a person of another organisation (Slack Connect): reads, never proposes


class Identity:
    """The bot's own ids from auth.test (user id U…, bot id B…, team), fetched once per process."""

    def __init__(self, client: AsyncWebClient, retry_after: float = 30.0):
        self.client = client
        self.data: dict[str, Any] | None = None
        self.retry_after = retry_after
        self._lock = asyncio.Lock()
        self._failed_at: float | None = None

    @property
    def user_id(self) -> str | None:
        return self.data.get("user_id") if self.data else None

    @property
    def bot_id(self) -> str | None:
        return self.data.get("bot_id") if self.data else None

    async def get(self, timeout: float = 3.0) -> dict[str, Any]:
        """The auth.test answer; {} while Slack cannot be asked (tried again after `retry_after`)."""
        if self.data is not None:
            return self.data
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self.data is not None:
                return self.data
            if self._failed_at is not None and loop.time() - self._failed_at < self.retry_after:
                return {}
            try:
                async with asyncio.timeout(timeout):
                    response = await self.client.auth_test()
                self.data = dict(response.data) if isinstance(response.data, dict) else {}
            except Exception as exc:  # noqa: BLE001 - the bot still answers; it cannot recognise itself by user id
                self._failed_at = loop.time()
                log.warning("auth.test failed", extra={"error": f"{exc.__class__.__name__}: {exc}"})
                return {}
            return self.data


def mention_pattern(bot_user_id: str | None) -> re.Pattern[str]:
    who = re.escape(bot_user_id) if bot_user_id else r"[UW][A-Z0-9]+"
    return re.compile(rf"<@{who}(?:\|[^>]*)?>")


_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")


def readable(text: str) -> str:
    """Slack's message markup as a person typed it: links and channel names as text, &amp; &lt; &gt;
    decoded, whitespace collapsed (user mentions stay as <@U…>)."""
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = _CHANNEL.sub(r"#\1", text)
    text = _SPECIAL.sub(r"@\1", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


def classify(body: dict[str, Any], bot_user_id: str | None, home_team: str | None = None) -> Incoming | None:
    """The message this event carries if the bot should look at it, or None to ignore it."""
    event = body.get("event") or {}
    kind = event.get("type")
    if kind not in ("app_mention", "message"):
        return None
    user = event.get("user")
    if (
        event.get("bot_id")
        or event.get("subtype") == "bot_message"
        or not user
        or (bot_user_id and user == bot_user_id)
        or event.get("subtype") not in HUMAN_SUBTYPES
    ):
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not channel or not ts:
        return None
    raw = event.get("text") or ""
    thread_ts = event.get("thread_ts")
    if kind == "app_mention":
        mentioned = True
        text = mention_pattern(bot_user_id).sub(" ", raw, count=0 if bot_user_id else 1)
    else:
        mentioned = bool(bot_user_id) and f"<@{bot_user_id}" in raw
        text = mention_pattern(bot_user_id).sub(" ", raw) if mentioned else raw
    direct = event.get("channel_type") == "im"
    in_thread = bool(thread_ts) and thread_ts != ts
    if not (mentioned or direct or in_thread):
        return None  # top-level channel chatter
    text = readable(text)
    if not text:
        if not mentioned:
            return None
        text = "help"
    team = body.get("team_id") or event.get("team") or ""
    key = ConversationKey(PLATFORM, team, channel, thread_ts or ts)
    return Incoming(key, user, text, body.get("event_id"), ts, follow_up=not (mentioned or direct),
                    external=is_external(body, home_team))


class AcksFirst:
    """Requests being acknowledged go ahead of the work earlier acks handed off. A burst's events reach
    the event loop a few at a time; without this, the claims and placeholders of the first ones run
    between the acks of the later ones, and Slack's wait for an ack grows with the burst. Handed-off
    work waits until no ack has begun for `quiet` seconds; `most` bounds the wait, so a steady stream of
    requests never starves the work behind it."""

    def __init__(self, quiet: float = 0.003, most: float = 0.05):
        self.quiet = quiet
        self.most = most
        self._last = -math.inf

    @contextlib.contextmanager
    def acking(self) -> Iterator[None]:
        try:
            yield
        finally:
            self._last = time.monotonic()

    async def wait(self) -> None:
        until = time.monotonic() + self.most
        while (now := time.monotonic()) < until and (gap := self._last + self.quiet - now) > 0:
            await asyncio.sleep(min(gap, until - now))


class SlackIntake:
    """The listeners' work after the ack: dedupe in the database, then submit to the dispatcher."""

    def __init__(self, core: Core, client: AsyncWebClient, identity: Identity):
        self.core = core
        self.client = client
        self.identity = identity
        self.acks = AcksFirst()
        self._tasks: set[asyncio.Task[Any]] = set()
        # (team, channel) -> the threads /sre started there, newest last, for `/sre cancel`
        self._slash_threads: dict[tuple[str, str], deque[ConversationKey]] = {}

    # --- background work -------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(self._after_acks(coro))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _after_acks(self, coro: Coroutine[Any, Any, Any]) -> Any:
        await self.acks.wait()
        return await coro

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a Slack request failed after its ack", exc_info=task.exception())

    async def idle(self) -> None:
        """Wait until every acknowledged event has been deduplicated and submitted."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def port(self, key: ConversationKey, request_id: str, user: str | None = None) -> SlackReplyPort:
        return SlackReplyPort(self.client, self.core, key.channel, key.thread or None, request_id=request_id,
                              user=user)

    def submit(
        self, key: ConversationKey, user: str, text: str, port: Any = None, *, external: bool = False,
        via: str = "message",
    ) -> Request:
        request_id = new_id("req")
        request = Request(
            key=key,
            user=user,
            text=text,
            port=port or self.port(key, request_id, user),
            request_id=request_id,
            reference={"team_id": key.workspace, "channel": key.channel, "thread_ts": key.thread},
            external=external,
            via=via,
        )
        self.core.submit(request)
        return request

    async def refused(self, actor: Actor, where: ConversationKey, thread_ts: str | None) -> bool:
        """True when the policy does not let `actor` ask here; they are told privately why."""
        refusal = await self.core.policy.refusal(actor, "ask", where=where)
        if refusal is None:
            return False
        dropped("refused")
        await call(self.client.chat_postEphemeral, channel=where.channel, user=actor.user, thread_ts=thread_ts,
                   text=blocks.escape(refusal))
        return True

    # --- events ----------------------------------------------------------------------------------
    async def on_event(self, body: dict[str, Any]) -> None:
        """Bolt listener for app_mention and message: filter in memory, leave the rest to a task."""
        incoming = classify(body, self.identity.user_id, (self.identity.data or {}).get("team_id"))
        if incoming is None:
            dropped("ignored")
            return
        self.spawn(self._take(incoming))

    async def _take(self, incoming: Incoming) -> None:
        if not self.core.ready:
            # without the database a follow-up cannot be told from chatter in a thread the bot is not in
            dropped("not_ready")
            if not incoming.follow_up:
                await self._reply(incoming, NOT_READY)
            return
        with self.core.taking():  # one database deadline for the claim, the thread lookup and recording the turn
            await self._claim_and_submit(incoming)

    async def _claim_and_submit(self, incoming: Incoming) -> None:
        ours = not incoming.follow_up
        try:
            if incoming.follow_up:
                ours = await self.core.session_of(incoming.key) is not None
                if not ours:
                    dropped("ignored")  # a thread the bot is not part of
                    return
            # the event id stops Slack's redeliveries; the message key stops the second copy of a
            # channel mention, which arrives as both app_mention and message with different event ids
            keys = [f"msg:{incoming.key.channel}:{incoming.ts}"] + ([incoming.event_id] if incoming.event_id else [])
            if not await self.core.claim(PLATFORM, *keys):
                dropped("duplicate")
                return
        except Exception as exc:
            log.warning("could not take a Slack event", extra={"event_id": incoming.event_id, "error": str(exc)})
            dropped("database")
            if ours:  # a follow-up gets the same reply as a mention, once it is known to be in our thread
                await self._reply(incoming, database_trouble("take this request", exc) if isinstance(exc, DatabaseError)
                                  else "I could not take this request (the error is in my log); ask again in a moment.")
            return
        actor = Actor(incoming.user, PLATFORM, incoming.key.workspace, incoming.key.channel, external=incoming.external)
        if await self.refused(actor, incoming.key, incoming.key.thread):
            return
        self.submit(incoming.key, incoming.user, incoming.text, external=incoming.external)

    async def _reply(self, incoming: Incoming, text: str) -> None:
        message = blocks.render_text(text)
        await post_message(self.client, incoming.key.channel, incoming.key.thread, message.messages[0])

    # --- /sre --------------------------------------------------------------------------------------
    async def on_command(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        command = parse_command(readable(body.get("text") or ""))
        team, channel, user = body.get("team_id") or "", body.get("channel_id") or "", body.get("user_id") or ""
        if command.reply is not None:
            await ack(text=command.reply, response_type="ephemeral")
            return
        if command.name == "cancel":
            target = self._slash_target(team, channel)
            if target is None:
                # Slack names no thread, and which /sre threads are whose is known only here (see the
                # package docstring); a message in the thread reaches a request on any replica
                await ack(
                    text="Nothing started with /sre in this channel is running on this replica; "
                    "type `cancel` in the request's thread instead.",
                    response_type="ephemeral",
                )
                return
            await ack(text=f"Cancelling “{short(target[1])}”…", response_type="ephemeral")
            self.submit(target[0], user, "cancel")
            return
        if command.name == "status":
            await ack(text="Checking what is in flight…", response_type="ephemeral")
            key = ConversationKey(PLATFORM, team, channel, "")
            request_id = new_id("req")
            self.submit(key, user, "status", EphemeralPort(self.client, channel, user, request_id=request_id))
            return
        await ack(text=f"On it: {command.text}…", response_type="ephemeral")
        external = is_external(body, (self.identity.data or {}).get("team_id"))
        actor = Actor(user, PLATFORM, team, channel, via="command", external=external)
        self.spawn(self._start_thread(actor, command.text, respond))

    async def _start_thread(self, actor: Actor, text: str, respond: Any) -> None:
        """Post "@user asked: …" in the channel; its thread is the session the answer goes to."""
        team, channel, user = actor.workspace, actor.channel, actor.user
        if await self.refused(actor, ConversationKey(PLATFORM, team, channel, ""), None):
            return
        asked = blocks.render_mrkdwn(f"{blocks.who(user)} asked: {blocks.escape(text)}").messages[0]
        ts = await post_message(self.client, channel, None, asked)
        if ts is None:
            try:
                await respond(
                    text="I could not post in this channel; invite me (`/invite @srebot`) or DM me.",
                    response_type="ephemeral",
                )
            except Exception:
                log.exception("could not answer a slash command")
            return
        key = ConversationKey(PLATFORM, team, channel, ts)
        self._slash_threads.setdefault((team, channel), deque(maxlen=SLASH_MEMORY)).append(key)
        self.submit(key, user, text, external=actor.external, via=actor.via)

    def _slash_target(self, team: str, channel: str) -> tuple[ConversationKey, str] | None:
        """The newest request that /sre started in this channel and this process still has in flight."""
        started = self._slash_threads.get((team, channel))
        if not started:
            return None
        in_flight = {request.key: request.text for request in self.core.in_flight()}
        for key in reversed(started):
            if key in in_flight:
                return key, in_flight[key]
        return None

    # --- buttons -----------------------------------------------------------------------------------
    async def on_approval(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self.spawn(self._decide(body, action))

    async def _decide(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """The shapes were checked before the ack (trust.malformed)."""
        decision = "approve" if action.get("action_id") == "approval_approve" else "reject"
        user = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        thread = (body.get("message") or {}).get("thread_ts")
        team = (body.get("team") or {}).get("id") or ""
        external = is_external(body, (self.identity.data or {}).get("team_id"))
        actor = Actor(user, PLATFORM, team, channel or "", via="button", external=external)
        try:
            outcome = await self.core.decide(action.get("value") or "", actor, decision)
            accepted, message = outcome.accepted, outcome.message
        except Exception:
            log.exception("approval decision failed")
            accepted, message = False, "Your decision could not be recorded (see the log); try again."
        if not accepted and channel:
            await call(self.client.chat_postEphemeral, channel=channel, user=user, thread_ts=thread,
                       text=blocks.escape(message))

    async def on_alert_button(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self.spawn(self._press(body, action))

    async def _press(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Silence / Acknowledge propose an approval in the thread, Investigate again re-runs the investigation;
        the person who pressed is told privately what happened (or why nothing did)."""
        user = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        message = body.get("message") or {}
        button = ALERT_BUTTONS.get(action.get("action_id", ""), "")
        external = is_external(body, (self.identity.data or {}).get("team_id"))
        actor = Actor(user, PLATFORM, (body.get("team") or {}).get("id") or "", channel or "", via=ALERT_THREAD,
                      external=external)
        try:
            outcome = await self.core.press_alert(action.get("value", ""), button, actor)
            text = outcome.message
        except Exception:
            log.exception("alert button failed", extra={"group_id": action.get("value", "")})
            text = "That did not work (the error is in my log); try again."
        if channel:
            await call(self.client.chat_postEphemeral, channel=channel, user=user,
                       thread_ts=message.get("thread_ts") or message.get("ts"), text=blocks.escape(text))
