"""Slack's app surface around the answers: "Show details", feedback buttons, the App Home (recent alerts, pending
approvals, open investigations) and suggested prompts in new assistant threads."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.ports import Core, Overview, RecentAlert
from bot.presentation import change_label, when
from integrations.slack import blocks
from integrations.slack.alerts import ICON as ALERT_ICON
from integrations.slack.blocks import APPROVE, REJECT, escape, header, sections, trim, who
from integrations.slack.port import call, deliver

log = logging.getLogger("srebot.slack")

PLATFORM = "slack"
HOME_BLOCK = "home_approval_"
HOME_ITEMS = 20
HOME_ALERTS = 10  # the most recent alert groups, firing or resolved
HOME_BLOCKS = 100  # Slack's limit for a Home tab view
RATINGS = {"good", "bad"}


class SlackSurface:
    """Listeners for the parts of Slack around a thread's answers; each acks at once and works in a task."""

    def __init__(self, core: Core, client: AsyncWebClient, spawn: Callable[[Coroutine[Any, Any, Any]], None]):
        self.core = core
        self.client = client
        self._spawn = spawn  # the intake's: its idle() waits for these too

    def register(self, bolt: AsyncApp) -> None:
        # approvals pressed in the App Home come here first (Bolt runs the first listener that matches)
        for action_id in (APPROVE, REJECT):
            bolt.action({"action_id": action_id, "block_id": re.compile(f"^{HOME_BLOCK}")})(self.on_home_decision)
        bolt.action(blocks.DETAILS_ACTION)(self.on_details)
        bolt.action(blocks.FEEDBACK_ACTION)(self.on_feedback)
        bolt.event("app_home_opened")(self.on_home_opened)
        bolt.event("assistant_thread_started")(self.on_assistant_thread)

    # --- "Show details" ------------------------------------------------------------------------------
    async def on_details(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self._spawn(self._details(body, action.get("value", "")))

    async def _details(self, body: dict[str, Any], request_id: str) -> None:
        channel, thread, user = _where(body)
        if not channel:
            return
        try:
            answer = await self.core.answer_of(request_id)
        except Exception:
            log.exception("could not read an answer", extra={"request_id": request_id})
            answer = None
        if answer is None:
            await call(self.client.chat_postEphemeral, request_id, channel=channel, user=user, thread_ts=thread,
                       text="I could not find the details of this answer; ask again for a fresh one.")
            return
        await deliver(self.client, channel, thread, blocks.render_details(answer), request_id=request_id)

    # --- feedback ------------------------------------------------------------------------------------
    async def on_feedback(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self._spawn(self._feedback(body, action.get("value", "")))

    async def _feedback(self, body: dict[str, Any], value: str) -> None:
        rating, _, request_id = value.partition(" ")
        channel, thread, user = _where(body)
        if rating not in RATINGS or not request_id:
            log.warning("feedback with an unexpected value", extra={"value": value[:100]})
            return
        try:
            stored = await self.core.rate(request_id, user, rating)
        except Exception:
            log.exception("could not store feedback", extra={"request_id": request_id})
            stored = False
        text = ("Thanks — noted with this answer." + (" A thumbs-down becomes a test case for srebot."
                                                      if rating == "bad" else "")) if stored else (
            "I could not store your rating; try again in a moment.")
        if channel:
            await call(self.client.chat_postEphemeral, request_id, channel=channel, user=user, thread_ts=thread,
                       text=text)

    # --- App Home ------------------------------------------------------------------------------------
    async def on_home_opened(self, event: dict[str, Any]) -> None:
        if event.get("tab") == "home" and event.get("user"):
            self._spawn(self.publish_home(event["user"]))

    async def on_home_decision(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self._spawn(self._home_decision(body, action))

    async def _home_decision(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id", "")
        decision = "approve" if action.get("action_id") == APPROVE else "reject"
        try:
            outcome = await self.core.decide(action.get("value", ""), user, decision, platform=PLATFORM)
            notice = outcome.message
        except Exception:
            log.exception("approval decision from the App Home failed")
            notice = "Your decision could not be recorded; try again."
        await self.publish_home(user, notice=notice)

    async def publish_home(self, user: str, *, notice: str | None = None) -> None:
        """Publish `user`'s Home tab: recent alerts with links to their threads, pending approvals with buttons
        where they may approve, and open investigations."""
        now = datetime.now(UTC)
        try:
            overview = await self.core.overview(user, HOME_ITEMS)
            view = home_view(overview, now=now, notice=notice, links=await self._thread_links(overview.alerts))
        except Exception:
            log.exception("could not read the App Home's state")
            view = home_view(Overview([], []), now=now,
                             notice="I could not read the current state (database unavailable); open the tab again.")
        await call(self.client.views_publish, None, user_id=user, view=view)

    async def _thread_links(self, alerts: list[RecentAlert]) -> dict[str, str]:
        """Each Slack alert thread's permalink (chat.getPermalink), by group id; a thread whose link cannot be had
        is listed without one."""
        shown = [a for a in alerts[:HOME_ALERTS] if a.thread is not None and a.thread.platform == PLATFORM]

        async def one(alert: RecentAlert) -> str | None:
            assert alert.thread is not None
            response = await call(self.client.chat_getPermalink, None, channel=alert.thread.channel,
                                  message_ts=alert.thread.thread)
            return response.get("permalink") if response is not None else None

        found = await asyncio.gather(*(one(a) for a in shown))
        return {a.view.group_id: link for a, link in zip(shown, found, strict=True) if link}

    # --- assistant threads ---------------------------------------------------------------------------
    async def on_assistant_thread(self, event: dict[str, Any]) -> None:
        thread = event.get("assistant_thread") or {}
        if thread.get("channel_id") and thread.get("thread_ts"):
            self._spawn(call(self.client.assistant_threads_setSuggestedPrompts, None, channel_id=thread["channel_id"],
                             thread_ts=thread["thread_ts"], title="Ask about a service",
                             prompts=suggested_prompts(list(self.core.settings.services))))


def _where(body: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """The channel, the thread of the message that was clicked, and who clicked."""
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return channel, message.get("thread_ts") or message.get("ts"), (body.get("user") or {}).get("id", "")


def suggested_prompts(services: list[str]) -> list[dict[str, str]]:
    """Up to four prompts for a new assistant thread, about the catalog's first service when there is one."""
    service = services[0] if services else "checkout"
    return [
        {"title": f"Why is {service} failing?", "message": f"why is {service} failing?"},
        {"title": f"What changed in {service}?", "message": f"what changed in {service}?"},
        {"title": "What alerts are firing?", "message": "what alerts are firing?"},
        {"title": "Help", "message": "help"},
    ]


def home_view(overview: Overview, *, now: datetime, notice: str | None = None,
              links: dict[str, str] | None = None) -> dict[str, Any]:
    """The Home tab: recent alerts (linked to their threads: `links` by group id), pending approvals (approvable
    here by eligible approvers) and open investigations."""
    view: list[dict[str, Any]] = [header("srebot")]
    if notice:
        view += sections([f":information_source: {escape(notice)}"])
    turns, pending, alerts = overview.investigations, overview.approvals, overview.alerts[:HOME_ALERTS]
    firing = sum(a.view.status == "firing" for a in alerts)
    view += [blocks.DIVIDER, *sections([f"*Recent alerts ({firing} firing)*"])]
    if not alerts:
        view.append(blocks.context("No alert has come in."))
    for alert in alerts:
        view += sections([alert_line(alert, now, (links or {}).get(alert.view.group_id))])
    view += [blocks.DIVIDER, *sections([f"*Pending approvals ({len(pending)})*"])]
    if not pending:
        view.append(blocks.context("No change is waiting for approval."))
    for approval, may_approve in pending[:HOME_ITEMS]:
        view += sections([f"*{escape(change_label(approval.description))}*"])
        view.append(blocks.context(f"Requested by {who(approval.requester)} · expires {when(approval.expires_at, now)}"
                                   f" · `{approval.id}`"))
        if may_approve:
            view.append({"type": "actions", "block_id": f"{HOME_BLOCK}{approval.id}", "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary", "value": approval.id,
                 "text": {"type": "plain_text", "text": "Approve"}, "confirm": blocks.confirm(approval.description)},
                {"type": "button", "action_id": REJECT, "value": approval.id,
                 "text": {"type": "plain_text", "text": "Reject (change nothing)"}},
            ]})
        else:
            view.append(blocks.context("_You cannot approve this one (you asked for it, or you are not an approver)._"))
    view += [blocks.DIVIDER, *sections([f"*Open investigations ({len(turns)})*"])]
    if not turns:
        view.append(blocks.context("Nothing is being investigated right now."))
    for turn in turns[:HOME_ITEMS]:
        age = when(turn.created_at, now) if turn.created_at else ""
        view += sections([f"• *{escape(turn.status)}*: “{escape(trim(' '.join(turn.text.split()), 150))}” "
                          f"— {who(turn.user_id)}" + (f" · {age}" if age else "")])
    return {"type": "home", "blocks": view[:HOME_BLOCKS]}


def alert_line(alert: RecentAlert, now: datetime, link: str | None) -> str:
    """'🔥 *Firing: HighErrorRate — checkout*' over 'critical · since 10:42 UTC (12 min ago) · Open the thread'."""
    shown = alert.view
    state = (f"resolved {when(shown.resolved_at, now)}" if shown.resolved_at is not None
             else f"since {when(shown.since, now)}")
    if link:
        where = f"<{link}|Open the thread>"
    elif alert.thread is not None and alert.thread.platform != PLATFORM:
        where = f"thread in {alert.thread.platform.capitalize()}"
    else:
        where = "no thread yet"
    return (f"{ALERT_ICON.get(shown.status, '')} *{escape(trim(shown.title, 200))}*\n"
            f"{escape(shown.severity)} · {state} · {where}")
