"""Delivery into Slack threads: the ReplyPort of one request, the Notifier of the process, and the send path both share."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import Chunk, PlanUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.answer import Answer
from bot.chart import draw
from bot.presentation import Step, steps_of
from integrations.slack import blocks
from integrations.slack.alerts import alert_message
from integrations.slack.blocks import Rendered, SlackMessage
from bot.ports import AlertThread, ApprovalRecord, Conversation, ConversationKey, Core
from bot.wording import NOT_TOLD_PRIVATELY

if TYPE_CHECKING:
    from bot.alerts.routing import Destination
    from bot.alerts.view import AlertView

log = logging.getLogger("srebot.slack")


async def call(
    method: Callable[..., Awaitable[AsyncSlackResponse]], request_id: str | None = None, **kwargs: Any
) -> AsyncSlackResponse | None:
    """One Web API call; a failure left after the client's own retries (429 with Retry-After,
    connection errors, 5xx) is logged with the request id and gives None, never an exception."""
    try:
        return await method(**kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure is logged here, the caller goes on
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else f"{exc.__class__.__name__}: {exc}"
        log.error(
            "Slack call failed",
            extra={"slack_method": getattr(method, "__name__", "?"), "error": error, "channel": kwargs.get("channel"),
                   "request_id": request_id},
        )
        return None


async def deliver(
    client: AsyncWebClient,
    channel: str,
    thread_ts: str | None,
    rendered: Rendered,
    *,
    replace_ts: str | None = None,
    request_id: str | None = None,
) -> list[str]:
    """Send rendered content into a thread (the first message replacing `replace_ts` when given);
    returns the ts of every message that made it. A file snippet that cannot be uploaded is sent as
    plain messages instead, so nothing is dropped."""
    posted: list[str] = []
    for index, message in enumerate(rendered.messages):
        replaced = index == 0 and replace_ts and await call(
            client.chat_update, request_id, channel=channel, ts=replace_ts, **message.kwargs()
        )
        if replaced and replace_ts:
            posted.append(replace_ts)
            continue
        ts = await post_message(client, channel, thread_ts, message, request_id)
        if ts:
            posted.append(ts)
    if rendered.snippet is not None:
        uploaded = await call(
            client.files_upload_v2,
            request_id,
            channel=channel,
            thread_ts=thread_ts,
            content=rendered.snippet,
            filename=rendered.snippet_name,
            title=rendered.title,
        )
        if uploaded is None:
            for message in blocks.render_text(rendered.snippet, snippet=False).messages:
                ts = await post_message(client, channel, thread_ts, message, request_id)
                if ts:
                    posted.append(ts)
    expected = len(rendered.messages)
    if len(posted) < expected:
        log.error("answer not fully delivered to Slack", extra={"request_id": request_id, "channel": channel,
                                                                "sent": len(posted), "expected": expected})
    return posted


async def post_message(
    client: AsyncWebClient, channel: str, thread_ts: str | None, message: SlackMessage, request_id: str | None = None
) -> str | None:
    response = await call(
        client.chat_postMessage,
        request_id,
        channel=channel,
        thread_ts=thread_ts,
        unfurl_links=False,
        unfurl_media=False,
        **message.kwargs(),
    )
    return response.get("ts") if response is not None else None


class SlackReplyPort:
    """One request's thread: the first progress posts a placeholder at once, later ones update it at
    most once per `min_interval` (the last one wins), and the answer replaces it.

    In a direct message (an assistant thread) the thread shows a status with loading messages instead
    (assistant.threads.setStatus) and the playbook's steps stream as a plan of tasks (chat.startStream);
    where Slack refuses either, the placeholder is used as in a channel."""

    def __init__(
        self,
        client: AsyncWebClient,
        core: Core,
        channel: str,
        thread_ts: str | None,
        *,
        request_id: str | None = None,
        min_interval: float = 1.0,
        user: str | None = None,
    ):
        self.client = client
        self.core = core
        self.channel = channel
        self.thread_ts = thread_ts
        self.request_id = request_id
        self.user = user  # who asked (None in an alert thread, where srebot itself investigates)
        self.min_interval = min_interval
        self.placeholder_ts: str | None = None
        self._lock = asyncio.Lock()
        self._done = False
        self._pending: str | None = None
        self._last = 0.0
        self._flusher: asyncio.Task[None] | None = None
        # direct-message channel ids start with D: there the assistant surface is used
        self._assistant = channel.startswith("D") and thread_ts is not None
        self._stream: AsyncChatStream | None = None
        self._steps: dict[str, Step] = {}

    @property
    def placeholder_ref(self) -> dict[str, str] | None:
        """Where the placeholder is, kept with the turn: whoever ends the turn (e.g. another replica
        after a crash) replaces it instead of leaving "waiting for …" above its notice."""
        return {"channel": self.channel, "ts": self.placeholder_ts} if self.placeholder_ts else None

    async def progress(self, text: str) -> None:
        """The first call returns once the placeholder is in the thread: the dispatcher records the request
        in the database only then, so a burst's placeholders go out ahead of its database work. Later calls
        never wait for Slack: a background task updates the placeholder."""
        if self._done:
            return
        self._pending = text
        first = self._flusher is None
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        if first:
            await asyncio.wait([self._flusher])  # a cancel of the caller leaves the post to finish

    async def _flush_pending(self) -> None:
        while self._pending is not None and not self._done:
            await asyncio.sleep(max(0.0, self._last + self.min_interval - time.monotonic()))
            await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            text, self._pending = self._pending, None
            if text is None or self._done:
                return
            if self._assistant:
                self._assistant = await self._show_steps(text)
                if self._assistant:
                    self._last = time.monotonic()
                    return
            message = blocks.placeholder(text)
            if self.placeholder_ts is None:
                self.placeholder_ts = await post_message(self.client, self.channel, self.thread_ts, message,
                                                         self.request_id)
            else:
                await call(self.client.chat_update, self.request_id, channel=self.channel, ts=self.placeholder_ts,
                           **message.kwargs())
            self._last = time.monotonic()

    async def _show_steps(self, text: str) -> bool:
        """The status with loading messages (first time), then the steps as task updates; False when Slack
        refused, so the placeholder takes over."""
        assert self.thread_ts is not None
        title, steps = steps_of(text)
        if self._stream is None:
            status = await call(self.client.assistant_threads_setStatus, self.request_id, channel_id=self.channel,
                                thread_ts=self.thread_ts, status="is investigating…",
                                loading_messages=blocks.loading_messages(title or text))
            if status is None:
                return False
            self._stream = await self.client.chat_stream(channel=self.channel, thread_ts=self.thread_ts,
                                                         task_display_mode="plan", buffer_size=1)
        chunks: list[Chunk] = [PlanUpdateChunk(title=title)] if title else []
        for step in steps:
            if self._steps.get(step.id) != step:
                self._steps[step.id] = step
                chunks.append(blocks.task_chunk(step))
        if chunks and await call(self._stream.append, self.request_id, chunks=chunks) is None:
            self._stream = None
            return False
        return True

    async def _close_stream(self) -> None:
        """The plan ends with every step that was still running marked done (the answer follows)."""
        if self._stream is None:
            return
        unfinished = [Step(s.id, "complete", s.output) for s in self._steps.values() if s.status == "in_progress"]
        await call(self._stream.stop, self.request_id, chunks=[blocks.task_chunk(s) for s in unfinished] or None)
        self._stream = None

    async def post(self, message: Answer | str) -> None:
        self._done = True  # no progress after this; a placeholder being posted is waited for, then replaced
        async with self._lock:
            if self._flusher is not None:
                self._flusher.cancel()
            await self._close_stream()
            replace, self.placeholder_ts = self.placeholder_ts, None
            await deliver(self.client, self.channel, self.thread_ts, blocks.render(message), replace_ts=replace,
                          request_id=self.request_id)
            if isinstance(message, Answer):
                await upload_chart(self.client, self.channel, self.thread_ts, message, self.request_id)

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        await post_approval(self.client, self.core, self.channel, self.thread_ts, approval, self.request_id)

    async def tell_privately(self, text: str) -> bool:
        """An ephemeral message to the person who asked, in the thread; where Slack refuses it, a mention in
        the thread that gives no details."""
        if self.user is None:
            return False
        told = await call(self.client.chat_postEphemeral, self.request_id, channel=self.channel, user=self.user,
                          thread_ts=self.thread_ts, text=blocks.escape(text))
        if told is None:
            mention = blocks.render_mrkdwn(f"{blocks.who(self.user)} {blocks.escape(NOT_TOLD_PRIVATELY)}")
            await post_message(self.client, self.channel, self.thread_ts, mention.messages[0], self.request_id)
        return True


def chart_filename(answer: Answer) -> str:
    """'checkout-error-rate.png' for the chart "Error rate of checkout"."""
    title = answer.chart.title if answer.chart else "chart"
    return f"{answer.service or 'srebot'}-{title.split(' of ')[0].lower().replace(' ', '-')}.png"


async def upload_chart(
    client: AsyncWebClient, channel: str, thread_ts: str | None, answer: Answer, request_id: str | None = None
) -> bool:
    """The answer's key signal drawn as a PNG and uploaded into the thread; False when there is none or it failed
    (the answer itself is already there)."""
    if answer.chart is None:
        return False
    try:
        png = await asyncio.to_thread(draw, answer.chart)
    except Exception:  # a drawing failure costs the picture, never the answer
        log.exception("could not draw the chart", extra={"request_id": request_id})
        return False
    marks = ", ".join(f"{m.label} {m.at:%H:%M} UTC" for m in answer.chart.marks)
    uploaded = await call(
        client.files_upload_v2, request_id, channel=channel, thread_ts=thread_ts, file=png,
        filename=chart_filename(answer),
        title=answer.chart.title, alt_txt=f"{answer.chart.title} over the window" + (f"; {marks}" if marks else ""),
    )
    return uploaded is not None


async def post_approval(
    client: AsyncWebClient,
    core: Core,
    channel: str,
    thread_ts: str | None,
    approval: ApprovalRecord,
    request_id: str | None = None,
) -> str | None:
    """Post the approval message with its buttons and remember where it is, for the later update."""
    ts = await post_message(client, channel, thread_ts, blocks.approval_request(approval), request_id)
    if ts is None:
        return None
    try:
        await core.approval_posted(approval.id, {"channel": channel, "ts": ts, "thread_ts": thread_ts})
    except Exception:  # the buttons still work; only the later update of this message is lost
        log.exception("could not remember the approval message", extra={"approval_id": approval.id})
    return ts


class EphemeralPort:
    """Answers only the person who asked (chat.postEphemeral), for `/sre status` and refusals."""

    def __init__(self, client: AsyncWebClient, channel: str, user: str, *, request_id: str | None = None):
        self.client = client
        self.channel = channel
        self.user = user
        self.request_id = request_id

    async def progress(self, text: str) -> None:
        return None

    async def post(self, message: Answer | str) -> None:
        rendered = blocks.render(message)
        for page in rendered.pages or rendered.messages:
            await call(self.client.chat_postEphemeral, self.request_id, channel=self.channel, user=self.user,
                       **page.kwargs())

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        await self.post(f"Approval {approval.id} needs a thread; ask in a channel thread instead.")

    async def tell_privately(self, text: str) -> bool:
        await self.post(text)
        return True


class SlackNotifier:
    """Reaches Slack threads outside a request: restart notices, approval decisions and alert threads."""

    platform = "slack"

    def __init__(self, client: AsyncWebClient, core: Core | None = None):
        self.client = client
        self.core = core
        self._team_id: str | None = None

    async def _team(self) -> str | None:
        """The workspace id (auth.test), which the thread's later events carry: one session for both."""
        if self._team_id is None:
            response = await call(self.client.auth_test)
            self._team_id = response.get("team_id") if response is not None else None
        return self._team_id

    async def open_alert(self, destination: Destination, view: AlertView) -> AlertThread | None:
        team = await self._team()
        if team is None:
            return None
        channel = destination.channel
        ts = await post_message(self.client, channel, None, alert_message(view))
        if ts is None:
            return None
        return AlertThread(ConversationKey(self.platform, team, channel, ts), {"channel": channel, "ts": ts})

    async def update_alert(self, key: ConversationKey, message: dict[str, Any], view: AlertView) -> None:
        await call(self.client.chat_update, channel=message.get("channel", key.channel), ts=message.get("ts", key.thread),
                   **alert_message(view).kwargs())

    def thread_port(self, key: ConversationKey, message: dict[str, Any], request_id: str | None = None) -> SlackReplyPort:
        assert self.core is not None, "alert threads need the core (approval messages are remembered there)"
        return SlackReplyPort(self.client, self.core, key.channel, key.thread, request_id=request_id)

    async def say(
        self, conversation: Conversation, message: Answer | str, *, replace: dict[str, str] | None = None
    ) -> None:
        key = conversation.key
        replace_ts = replace.get("ts") if replace and replace.get("channel") == key.channel else None
        await deliver(self.client, key.channel, key.thread or None, blocks.render(message), replace_ts=replace_ts)

    async def approval_changed(self, approval: ApprovalRecord, conversation: Conversation | None) -> None:
        ref = approval.message_ref or {}
        if ref.get("channel") and ref.get("ts"):
            decided = blocks.approval_decided(approval)
            await call(self.client.chat_update, approval.request_id, channel=ref["channel"], ts=ref["ts"],
                       **decided.kwargs())
        outcome = blocks.approval_outcome(approval)
        if outcome is None:
            return
        channel = conversation.key.channel if conversation else ref.get("channel")
        thread = conversation.key.thread if conversation else ref.get("thread_ts")
        if channel:
            await deliver(self.client, channel, thread or None, blocks.render_mrkdwn(outcome),
                          request_id=approval.request_id)
