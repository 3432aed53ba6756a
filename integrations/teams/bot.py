"""The Teams activity handler: message activities become Requests for the dispatcher; approval cards'
Universal Actions (and the Action.Submit of cards posted before them) become decisions; alert cards' buttons
become presses, which the policy decides like everything else."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import re
from collections.abc import Coroutine
from typing import Any

from microsoft_agents.activity import Activity, AdaptiveCardInvokeResponse, AdaptiveCardInvokeValue
from microsoft_agents.hosting.core import ActivityHandler, TurnContext

from bot.policy import ALERT_THREAD
from bot.ports import (
    Actor, ApprovalRecord, ApprovalState, ConversationKey, Core, DatabaseError, Decision, Request,
)
from bot.telemetry import EVENTS_DROPPED, EVENTS_RECEIVED
from bot.wording import NOT_READY, database_trouble
from integrations.teams.adapter import THREAD_MARK, Outbox, reference_dict
from integrations.teams.alerts import ALERT_VERB, alert_card, pressed
from integrations.teams.auth import TeamsAuth
from integrations.teams.cards import CARD_CONTENT_TYPE, DECIDE_VERB, REFRESH_VERB, ApprovalView, approval_card
from integrations.teams.members import Organisation
from integrations.teams.port import TeamsPort, approval_names, mention_activity

log = logging.getLogger("srebot.teams")

PLATFORM = "teams"
LOCAL_DECISIONS = (
    "Teams runs without credentials here (SREBOT_TEAMS_INSECURE=local), so nobody's identity is proven and "
    "approvals cannot be decided from Teams; use `srebot approve ID --user NAME` in a terminal."
)
LOCAL_PRESSES = (
    "Teams runs without credentials here (SREBOT_TEAMS_INSECURE=local), so nobody's identity is proven and "
    "alert buttons cannot be used from Teams."
)


def tenant_of(activity: Activity) -> str:
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = channel_data.get("tenant") if isinstance(channel_data.get("tenant"), dict) else {}
    conversation = activity.conversation
    return tenant.get("id") or (conversation.tenant_id if conversation else None) or "default"


def conversation_key(activity: Activity) -> ConversationKey:
    """Workspace = tenant, channel = the conversation without its thread part, thread = the full id,
    so every message of a channel thread (`…;messageid=<root>`) is one session."""
    full = activity.conversation.id
    return ConversationKey(PLATFORM, tenant_of(activity), full.split(THREAD_MARK, 1)[0], full)


def user_of(activity: Activity) -> str:
    """Approvers are configured as AAD object ids; the channel id is the fallback."""
    sender = activity.from_property
    return (sender.aad_object_id or sender.id) if sender else "unknown"


def _bot_mentions(activity: Activity) -> list[dict[str, Any]]:
    bot_id = activity.recipient.id if activity.recipient else None
    found = []
    for entity in activity.entities or []:
        props = entity.model_dump(by_alias=True, exclude_none=True)
        if (props.get("type") or "").lower() != "mention":
            continue
        mentioned = props.get("mentioned") or {}
        if bot_id and mentioned.get("id") == bot_id:
            found.append(props)
    return found


def mentions_bot(activity: Activity) -> bool:
    return bool(_bot_mentions(activity))


def strip_bot_mention(activity: Activity) -> str:
    """The message text without the bot's @mention (literal, so a bot name with regex characters is
    removed too), HTML entities decoded."""
    text = activity.text or ""
    for mention in _bot_mentions(activity):
        name = (mention.get("mentioned") or {}).get("name") or ""
        for literal in filter(None, (mention.get("text"), f"<at>{name}</at>" if name else None)):
            text = text.replace(literal, " ")
    text = re.sub(r"<at>\s*</at>", " ", text)
    return " ".join(html.unescape(text).replace("\xa0", " ").split())


def approval_submit(activity: Activity) -> dict[str, str] | None:
    """The data of an Action.Submit on an approval card posted before Universal Actions, when this message is one."""
    value = activity.value
    if isinstance(value, dict) and value.get("srebot") == "approval":
        if value.get("decision") in ("approve", "reject") and isinstance(value.get("approval_id"), str):
            return value
    return None


def mention_reply(activity: Activity, text: str) -> Activity:
    """A reply that @mentions the sender (a bot has no ephemeral messages in a conversation)."""
    return mention_activity(activity.from_property, text)


def _card_response(card: dict[str, Any]) -> AdaptiveCardInvokeResponse:
    return AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=card)


def _error_response(status: int, message: str) -> AdaptiveCardInvokeResponse:
    return AdaptiveCardInvokeResponse(status_code=status, type="application/vnd.microsoft.error",
                                      value={"code": "BadRequest", "message": message})


class TeamsBot(ActivityHandler):
    """Personal chats are always handled; group chats need an @mention of the bot; in a channel a
    message needs the mention unless its thread already has a session (a follow-up)."""

    def __init__(self, core: Core, outbox: Outbox, auth: TeamsAuth, *, ack_wait: float = 2.0,
                 update_interval: float = 1.5, organisation: Organisation | None = None,
                 names: dict[str, str] | None = None):
        super().__init__()
        self.core = core
        self.outbox = outbox
        self.auth = auth
        # who is of this organisation (may propose and approve); local mode proves no one's identity
        self.organisation = organisation or Organisation(core.settings.microsoft_app_tenant_id, check=not auth.local)
        self.names = names if names is not None else {}  # TeamsNotifier.names: who pressed an alert button
        self.ack_wait = ack_wait  # how long a turn waits for the acknowledgement to reply with it
        self.update_interval = update_interval
        self._background: set[asyncio.Task[Any]] = set()

    def port(self, reference: dict[str, Any], turn: TurnContext | None = None, *, personal: bool = False) -> TeamsPort:
        return TeamsPort(self.outbox, self.core, reference, turn=turn, update_interval=self.update_interval,
                         personal=personal)

    async def on_turn(self, turn_context: TurnContext) -> None:
        EVENTS_RECEIVED.labels(PLATFORM, turn_context.activity.type or "unknown").inc()
        await super().on_turn(turn_context)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        sender = activity.from_property
        if sender is None or (activity.recipient and sender.id == activity.recipient.id) or sender.role == "bot":
            EVENTS_DROPPED.labels(PLATFORM, "bot_message").inc()
            return
        reference = reference_dict(activity)
        submit = approval_submit(activity)
        if submit is not None:
            if await self._first_delivery(activity):
                await self._decide_submit(turn_context, submit, reference)
            return
        key = conversation_key(activity)
        kind = (activity.conversation.conversation_type or "personal").lower()
        mentioned = mentions_bot(activity)
        addressed = mentioned or kind == "personal"
        if not self.core.ready:
            # without the database a follow-up cannot be told from chatter in a thread the bot is not in
            EVENTS_DROPPED.labels(PLATFORM, "not_ready").inc()
            if addressed:
                await turn_context.send_activity(mention_reply(activity, NOT_READY))
            return
        with self.core.taking():  # one database deadline for the claim, the thread lookup and recording the turn
            port = await self._take(turn_context, key, kind, mentioned, reference)
        if port is not None:
            await port.hold_turn(self.ack_wait)

    async def _take(
        self, turn_context: TurnContext, key: ConversationKey, kind: str, mentioned: bool, reference: dict[str, Any]
    ) -> TeamsPort | None:
        """Claim the activity and submit its request; its port, or None when it is not taken (told why if ours)."""
        activity = turn_context.activity
        addressed = mentioned or kind == "personal"
        ours = addressed
        try:
            session_id = await self.core.session_of(key)
            ours = addressed or session_id is not None
            if not mentioned and (kind == "groupchat" or (kind == "channel" and session_id is None)):
                EVENTS_DROPPED.labels(PLATFORM, "not_addressed").inc()
                return None
            if not await self._first_delivery(activity):
                return None
            if session_id is not None and not self.auth.local:
                # an authenticated activity whose serviceUrl matched its token: the conversation may have moved
                await self.core.remember_reference(session_id, reference)
        except DatabaseError as exc:
            log.warning("could not take a Teams message", extra={"error": str(exc)})
            EVENTS_DROPPED.labels(PLATFORM, "database").inc()
            if ours:  # a follow-up gets the same reply as a mention, once it is known to be in our thread
                await turn_context.send_activity(mention_reply(activity, database_trouble("take this request", exc)))
            return None
        text = strip_bot_mention(activity) or "help"
        port = self.port(reference, turn_context, personal=kind == "personal")
        standing = await self.organisation.standing(turn_context)
        request = Request(key=key, user=user_of(activity), text=text, port=port, reference=reference,
                          external=standing.external, unverified=standing.unverified)
        refusal = await self.core.policy.refusal(request.actor, "ask", where=key)
        if refusal is not None:
            EVENTS_DROPPED.labels(PLATFORM, "refused").inc()
            await port.tell_privately(refusal)
            return None
        self.core.submit(request)
        return port

    async def _first_delivery(self, activity: Activity) -> bool:
        """False for a repeated delivery of one activity id (on any replica, across restarts)."""
        if activity.id and not await self.core.claim(PLATFORM, activity.id):
            EVENTS_DROPPED.labels(PLATFORM, "duplicate").inc()
            return False
        return True

    # --- approvals -------------------------------------------------------------------------------
    async def _actor(self, turn_context: TurnContext) -> Actor:
        """Who presses a card's button, where (tenant, conversation; what the audit log records) and whether
        they are of this organisation."""
        activity = turn_context.activity
        key = conversation_key(activity)
        standing = await self.organisation.standing(turn_context)
        return Actor(user_of(activity), PLATFORM, key.workspace, key.channel, via="card",
                     external=standing.external, unverified=standing.unverified)

    async def _decision(self, turn_context: TurnContext, approval_id: str, decision: str) -> Decision | None:
        """Decide through the one decision path, in the background (an approved action may take a
        while); None when it is still running after `ack_wait` (its outcome reaches the conversation
        through TeamsNotifier). The decider's display name is kept for the card first."""
        if self.auth.local:
            return Decision(False, LOCAL_DECISIONS)
        activity = turn_context.activity
        actor = await self._actor(turn_context)
        user = actor.user
        approval = await self.core.approval(approval_id)
        name = activity.from_property.name if activity.from_property else None
        if approval is not None and approval.message_ref and name and approval_names(approval).get(user) != name:
            names = {**approval_names(approval), user: name}
            await self.core.approval_posted(approval_id, {**approval.message_ref, "names": names})
        task = self._spawn(self.core.decide(approval_id, actor, decision))
        done, _ = await asyncio.wait([task], timeout=self.ack_wait)
        return task.result() if done else None

    async def _decide_submit(self, turn_context: TurnContext, submit: dict[str, str], reference: dict[str, Any]) -> None:
        """A press on an Action.Submit approval card: a refusal is told to the person who pressed, privately."""
        decision = await self._decision(turn_context, submit["approval_id"], submit["decision"])
        if decision is not None and not decision.accepted:
            personal = (turn_context.activity.conversation.conversation_type or "").lower() == "personal"
            await self.port(reference, turn_context, personal=personal).tell_privately(decision.message)

    async def on_adaptive_card_invoke(
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        """An Action.Execute of an approval card: "refresh" answers the person with their own view;
        "decide" decides, and answers with the card as it now is (TeamsNotifier updates it for everyone)."""
        action = invoke_value.action
        data = action.data if isinstance(action.data, dict) else {}
        alert = pressed(data)
        if alert is not None and action.verb == ALERT_VERB:
            return await self._press(turn_context, *alert)
        approval_id = data.get("approval_id")
        if data.get("srebot") != "approval" or not isinstance(approval_id, str):
            EVENTS_DROPPED.labels(PLATFORM, "invoke").inc()
            return _error_response(400, "not an srebot approval action")
        note: str | None = None
        if action.verb == DECIDE_VERB and data.get("decision") in ("approve", "reject"):
            decision = await self._decision(turn_context, approval_id, data["decision"])
            if decision is None:
                note = "Working on it; this card updates when it is done."
            elif not decision.accepted:
                note = decision.message
        elif action.verb != REFRESH_VERB:
            return _error_response(400, f"unknown action {action.verb!r}")
        approval = await self.core.approval(approval_id)
        if approval is None:
            return _error_response(404, f"There is no approval {approval_id}.")
        return _card_response(await self._card_for(approval, turn_context, note))

    async def _press(self, turn_context: TurnContext, group_id: str, button: str) -> AdaptiveCardInvokeResponse:
        """A button of an alert thread's root card: pressed on behalf of the person, if the policy lets them.
        They are answered with the card as it is now and what happened (or why not) — to them only; what the
        press starts (an investigation, an approval card) goes into the thread for everyone."""
        if self.auth.local:
            note = LOCAL_PRESSES
        else:
            actor = dataclasses.replace(await self._actor(turn_context), via=ALERT_THREAD)
            sender = turn_context.activity.from_property
            if sender is not None and sender.name:
                self.names[actor.user] = sender.name
            task = self._spawn(self.core.press_alert(group_id, button, actor))
            done, _ = await asyncio.wait([task], timeout=self.ack_wait)
            if not done:  # the invoke cannot wait longer: a refusal still reaches the person, in a 1:1 chat
                self._spawn(self._tell_refusal(task, reference_dict(turn_context.activity)))
                note = "Working on it; what happens comes in the thread (a refusal, privately)."
            elif task.exception() is not None:
                note = f"That did not work ({task.exception().__class__.__name__}); try again."
            else:
                note = task.result().message
        shown = await self.core.alert_view(group_id)
        if shown is None:
            return _error_response(404, "I have no alert thread for this button any more.")
        return _card_response(alert_card(shown, note))

    async def _tell_refusal(self, press: asyncio.Task[Decision], reference: dict[str, Any]) -> None:
        decision = await press
        if not decision.accepted:
            await self.port(reference).tell_privately(decision.message)

    async def _card_for(self, approval: ApprovalRecord, turn_context: TurnContext, note: str | None) -> dict[str, Any]:
        """The approval as the person in the turn sees it: their buttons, or why they have none."""
        ref = approval.message_ref or {}
        common = {"names": approval_names(approval), "approver_ids": ref.get("approver_ids") or ()}
        if approval.status != ApprovalState.PENDING:
            return approval_card(approval, **common)
        if self.auth.local:
            return approval_card(approval, **common, view=ApprovalView(note=note or LOCAL_DECISIONS))
        actor = await self._actor(turn_context)
        refused = await self.core.refusal(approval, actor, "approve")
        can_reject = await self.core.refusal(approval, actor, "reject") is None
        if note is None and refused is not None:
            note = refused
        can_approve = refused is None
        return approval_card(approval, **common, view=ApprovalView(can_approve, can_reject, note))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a decision or button press failed", exc_info=task.exception())

    async def drain(self, timeout: float = 20.0) -> None:
        """Let decisions in progress finish (used at shutdown)."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)
