"""A loopback Bot Connector service (what a Teams `serviceUrl` points at) on 127.0.0.1, and builders of real Teams activities."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from aiohttp import web

from devtools.loopback.serving import Served, serve

BOT_APP_ID = "00000000-0000-0000-0000-00000000b07"
BOT_ID = f"28:{BOT_APP_ID}"
BOT_NAME = "srebot"
TENANT_ID = "tenant-0001"
TEAM_ID = "19:team-general@thread.tacv2"
CHANNEL_ID = "19:incidents@thread.tacv2"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class TeamsUser:
    id: str  # the Teams channel account id, "29:…"
    name: str
    aad_object_id: str  # what srebot uses as the user id (SREBOT_APPROVERS)
    role: str = "user"  # Teams' userRole: "user", or "guest" for a guest account in the tenant
    tenant_id: str = TENANT_ID  # the tenant of the account (another one for an external user)

    def account(self) -> dict[str, str]:
        """The account as an activity's `from` names it."""
        return {"id": self.id, "name": self.name, "aadObjectId": self.aad_object_id}

    def member(self) -> dict[str, str]:
        """The account as the Bot Connector's member calls answer it (a TeamsChannelAccount)."""
        given, _, surname = self.name.partition(" ")
        upn = f"{given.lower()}@example.com"
        return {**self.account(), "givenName": given, "surname": surname, "email": upn, "userPrincipalName": upn,
                "tenantId": self.tenant_id, "userRole": self.role}


ALICE = TeamsUser("29:1alice", "Alice Example", "aad-alice")
BOB = TeamsUser("29:1bob", "Bob Example", "aad-bob")
GUEST = TeamsUser("29:1gina", "Gina Guest", "aad-gina", role="guest")


@dataclass
class ConnectorCall:
    """One call the fake received."""

    method: str
    kind: str  # send | reply | update | delete | other
    path: str
    conversation_id: str | None
    activity_id: str | None  # the activity replied to / updated (None for "send")
    body: dict[str, Any] | None
    headers: dict[str, str]
    response_id: str | None = None  # the id the fake answered with
    status: int = 200
    at: float = field(default_factory=time.monotonic)  # when the fake received it

    @property
    def text(self) -> str:
        """The message text, or every text of its Adaptive Card(s)."""
        if self.body is None:
            return ""
        parts = [self.body.get("text") or ""]
        for attachment in self.body.get("attachments") or []:
            parts.append(card_text(attachment.get("content")))
        return "\n".join(p for p in parts if p)

    @property
    def card(self) -> dict[str, Any] | None:
        """The Adaptive Card content of the message, if it has one."""
        for attachment in (self.body or {}).get("attachments") or []:
            if attachment.get("contentType") == CARD_TYPE:
                return attachment.get("content")
        return None

    @property
    def size(self) -> int:
        """The body as Teams counts a message: JSON in UTF-16 bytes."""
        return len(json.dumps(self.body, ensure_ascii=False).encode("utf-16-le"))


def card_text(node: Any) -> str:
    """Every text of an Adaptive Card (TextBlocks, RichTextBlocks as one line each, and facts as "title: value"),
    in order."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "TextBlock":
                found.append(str(value.get("text", "")))
            elif value.get("type") == "RichTextBlock":
                found.append("".join(str(run.get("text", "")) for run in value.get("inlines", [])))
            elif value.get("type", "Fact") == "Fact" and "title" in value and "value" in value:
                found.append(f"{value['title']}: {value['value']}")
            for key, inner in value.items():
                if key != "text":
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(node)
    return "\n".join(found)


@dataclass
class _Failure:
    status: int
    times: int
    body: dict[str, Any] = field(default_factory=dict)


class BotConnectorFake(Served):
    """The Bot Connector REST API of one service URL, recording every call (with its monotonic arrival time `at`).

    `BotConnectorFake` is an aiohttp server on 127.0.0.1 (a random port) that answers the Bot Connector
    REST calls a bot makes and records each one with its JSON body:

        POST /v3/conversations/{conversationId}/activities                 kind "send"   (new message)
        POST /v3/conversations/{conversationId}/activities/{activityId}    kind "reply"  (reply to an activity)
        PUT  /v3/conversations/{conversationId}/activities/{activityId}    kind "update" (edit a message)
        DELETE /v3/conversations/{conversationId}/activities/{activityId}  kind "delete"
        GET  /v3/conversations/{conversationId}/members                    kind "members"
        GET  /v3/conversations/{conversationId}/members/{memberId}         kind "member"
        POST /v3/conversations                                             kind "create" (a 1:1 chat)

    GET members answers the accounts in `members` (Alice and Bob by default) as TeamsChannelAccounts (with
    `userRole` "user" / "guest" and `tenantId`); GET one member answers that account, or 404
    MemberNotFoundInConversation. POST /v3/conversations with one member and a `tenantId` answers the
    personal conversation of that member (`{"id": "a:1personal-<aadObjectId>"}`, as `personal_conversation_id`),
    400 BadArgument otherwise; messages sent there are then recorded like any other.

    POST answers `{"id": "<new id>"}` (ids "act-1", "act-2", … in order), PUT answers `{"id": activityId}`.
    Anything else is recorded with kind "other" and answered 404.

        async with BotConnectorFake() as connector:
            activity = personal_message(connector.url, "help")
            ... post `activity` to the bot's /api/messages ...
            card = await connector.wait_for(lambda c: c.card is not None)
            assert "I'm srebot" in card.text

    `wait_for(predicate, timeout)` returns the first recorded call (past or future) matching `predicate`,
    or fails the test with the calls seen so far. `fail_next(status, times)` makes the next calls fail,
    to test how the bot copes with a Bot Connector error (e.g. 413 MessageSizeTooBig).

    The builders return activity JSON as Teams sends it (personal chat, group chat, channel message with a
    mention entity and `<at>srebot</at>` in the text, a reply in a channel thread whose conversation id
    carries `;messageid=`, an Action.Submit message with `value`, a conversationUpdate), with `serviceUrl`
    pointing at the fake. They are plain dicts: change anything before posting.
    """

    def __init__(self, host: str = "127.0.0.1", members: tuple[TeamsUser, ...] | None = None):
        self.host = host
        self.members = list(members if members is not None else (ALICE, BOB))
        self.port: int | None = None
        self.calls: list[ConnectorCall] = []
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._failures: list[_Failure] = []
        self._runner: web.AppRunner | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, base = await serve(app, self.host)
        self.port = int(base.rsplit(":", 1)[1])
        return self

    @property
    def url(self) -> str:
        """The serviceUrl to put in activities (with the trailing slash Teams uses)."""
        assert self.port is not None, "start the fake first"
        return f"http://{self.host}:{self.port}/"

    # --- queries ---------------------------------------------------------------------------------
    def messages(self, conversation_id: str | None = None) -> list[ConnectorCall]:
        """New messages and replies (not updates), optionally of one conversation."""
        return [
            c for c in self.calls
            if c.kind in ("send", "reply") and (conversation_id is None or c.conversation_id == conversation_id)
        ]

    def updates(self, activity_id: str | None = None) -> list[ConnectorCall]:
        return [c for c in self.calls if c.kind == "update" and (activity_id is None or c.activity_id == activity_id)]

    async def wait_for(self, predicate: Callable[[ConnectorCall], bool], timeout: float = 5.0) -> ConnectorCall:
        """The first call (already recorded or still to come) for which `predicate` is true."""

        def match() -> ConnectorCall | None:
            return next((c for c in self.calls if predicate(c)), None)

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while (found := match()) is None:
                        await self._changed.wait()
                    return found
        except TimeoutError:
            seen = "\n".join(f"  {c.method} {c.kind} {c.conversation_id} {c.text[:100]!r}" for c in self.calls)
            raise AssertionError(f"no matching Bot Connector call within {timeout} s; calls:\n{seen}") from None

    async def wait_for_count(
        self, count: int, predicate: Callable[[ConnectorCall], bool] = lambda c: True, timeout: float = 5.0
    ) -> list[ConnectorCall]:
        """Wait until at least `count` calls match; returns all that match."""
        await self.wait_for(lambda c: sum(predicate(x) for x in self.calls) >= count, timeout)
        return [c for c in self.calls if predicate(c)]

    def fail_next(self, status: int = 500, times: int = 1, code: str = "ServiceError") -> None:
        """Answer the next `times` calls with `status` and a Bot Connector error body."""
        self._failures.append(_Failure(status, times, {"error": {"code": code, "message": f"fake {status}"}}))

    # --- server ----------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        parts = request.match_info["tail"].split("/")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"_raw": raw.decode(errors="replace")}
        kind, conversation_id, activity_id = "other", None, None
        member: str | None = None
        if parts == ["v3", "conversations"] and request.method == "POST":
            kind = "create"
        elif len(parts) == 4 and parts[:2] == ["v3", "conversations"] and parts[3] == "members":
            conversation_id, kind = parts[2], "members" if request.method == "GET" else "other"
        elif len(parts) == 5 and parts[:2] == ["v3", "conversations"] and parts[3] == "members":
            conversation_id, member = parts[2], parts[4]
            kind = "member" if request.method == "GET" else "other"
        elif len(parts) >= 4 and parts[:2] == ["v3", "conversations"] and parts[3] == "activities":
            conversation_id = parts[2]
            activity_id = parts[4] if len(parts) > 4 else None
            kind = {
                ("POST", False): "send",
                ("POST", True): "reply",
                ("PUT", True): "update",
                ("DELETE", True): "delete",
            }.get((request.method, activity_id is not None), "other")
        call = ConnectorCall(
            method=request.method,
            kind=kind,
            path=request.path,
            conversation_id=conversation_id,
            activity_id=activity_id,
            body=body,
            headers=dict(request.headers),
        )
        response: web.Response
        if self._failures:
            failure = self._failures[0]
            failure.times -= 1
            if failure.times <= 0:
                self._failures.pop(0)
            call.status = failure.status
            response = web.json_response(failure.body, status=failure.status)
        elif kind in ("send", "reply"):
            call.response_id = f"act-{next(self._ids)}"
            response = web.json_response({"id": call.response_id})
        elif kind == "update":
            call.response_id = activity_id
            response = web.json_response({"id": activity_id})
        elif kind == "delete":
            response = web.Response(status=200)
        elif kind == "members":
            response = web.json_response([user.member() for user in self.members])
        elif kind == "member":
            found = next((u for u in self.members if member in (u.id, u.aad_object_id)), None)
            if found is None:
                call.status = 404
                response = web.json_response({"error": {"code": "MemberNotFoundInConversation",
                                                        "message": "The member is not in this conversation"}},
                                             status=404)
            else:
                response = web.json_response(found.member())
        elif kind == "create":
            response = self._create(call)
        else:
            call.status = 404
            response = web.json_response({"error": {"code": "NotFound", "message": request.path}}, status=404)
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        return response

    def _create(self, call: ConnectorCall) -> web.Response:
        """POST /v3/conversations: Teams makes (or finds again) the 1:1 chat of the bot with one member."""
        body = call.body if isinstance(call.body, dict) else {}
        members = body.get("members")
        tenant = body.get("tenantId") or ((body.get("channelData") or {}).get("tenant") or {}).get("id")
        member_id = members[0].get("id") if isinstance(members, list) and len(members) == 1 and isinstance(
            members[0], dict) else None
        found = next((u for u in self.members if member_id in (u.id, u.aad_object_id)), None)
        if body.get("isGroup") or not tenant or found is None:
            call.status = 400
            return web.json_response({"error": {"code": "BadArgument",
                                                 "message": "a 1:1 chat needs one known member and a tenantId"}},
                                     status=400)
        call.response_id = personal_conversation_id(found)
        return web.json_response({"id": call.response_id})


# --- activity builders ---------------------------------------------------------------------------
_activity_ids = itertools.count(1_700_000_000_001)


def new_activity_id() -> str:
    return str(next(_activity_ids))


def _base(service_url: str, *, text: str, user: TeamsUser, conversation: dict[str, Any],
          channel_data: dict[str, Any], activity_id: str | None) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "type": "message",
        "id": activity_id or new_activity_id(),
        "timestamp": now,
        "localTimestamp": now,
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": user.account(),
        "conversation": conversation,
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "textFormat": "plain",
        "locale": "en-US",
        "text": text,
        "entities": [{"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web",
                      "timezone": "Europe/Berlin"}],
        "channelData": channel_data,
    }


def personal_conversation_id(user: TeamsUser = ALICE) -> str:
    return f"a:1personal-{user.aad_object_id}"


def personal_message(service_url: str, text: str, *, user: TeamsUser = ALICE,
                     conversation_id: str | None = None, activity_id: str | None = None) -> dict[str, Any]:
    """A 1:1 chat message to the bot."""
    return _base(
        service_url, text=text, user=user, activity_id=activity_id,
        conversation={"conversationType": "personal", "tenantId": TENANT_ID,
                      "id": conversation_id or personal_conversation_id(user)},
        channel_data={"tenant": {"id": TENANT_ID}},
    )


def _mention(text: str) -> tuple[str, list[dict[str, Any]]]:
    tag = f"<at>{BOT_NAME}</at>"
    return f"{tag} {text}", [{"type": "mention", "text": tag, "mentioned": {"id": BOT_ID, "name": BOT_NAME}}]


def group_message(service_url: str, text: str, *, mention: bool = True, user: TeamsUser = ALICE,
                  conversation_id: str = "19:group-chat-1@thread.v2",
                  activity_id: str | None = None) -> dict[str, Any]:
    """A group chat message (the bot is only addressed with an @mention)."""
    activity = _base(
        service_url, text=text, user=user, activity_id=activity_id,
        conversation={"isGroup": True, "conversationType": "groupChat", "tenantId": TENANT_ID,
                      "id": conversation_id},
        channel_data={"tenant": {"id": TENANT_ID}},
    )
    if mention:
        activity["text"], mentions = _mention(text)
        activity["entities"] += mentions
    return activity


def thread_conversation_id(root_id: str, channel_id: str = CHANNEL_ID) -> str:
    return f"{channel_id};messageid={root_id}"


def channel_message(service_url: str, text: str, *, mention: bool = True, user: TeamsUser = ALICE,
                    channel_id: str = CHANNEL_ID, root_id: str | None = None,
                    activity_id: str | None = None) -> dict[str, Any]:
    """A channel message. Without `root_id` it starts a thread (its conversation id carries its own id
    as `;messageid=`); with `root_id` it is a reply in that thread. `mention` adds `<at>srebot</at>`
    to the text and the mention entity."""
    activity_id = activity_id or new_activity_id()
    root = root_id or activity_id
    activity = _base(
        service_url, text=text, user=user, activity_id=activity_id,
        conversation={"isGroup": True, "conversationType": "channel", "tenantId": TENANT_ID,
                      "id": thread_conversation_id(root, channel_id)},
        channel_data={"teamsChannelId": channel_id, "teamsTeamId": TEAM_ID,
                      "channel": {"id": channel_id}, "team": {"id": TEAM_ID}, "tenant": {"id": TENANT_ID}},
    )
    if root_id:
        activity["replyToId"] = root_id
    if mention:
        activity["text"], mentions = _mention(text)
        activity["entities"] += mentions
    return activity


def thread_reply(service_url: str, text: str, *, root_id: str, mention: bool = False,
                 user: TeamsUser = ALICE, channel_id: str = CHANNEL_ID,
                 activity_id: str | None = None) -> dict[str, Any]:
    """A follow-up in a channel thread (no mention by default)."""
    return channel_message(service_url, text, mention=mention, user=user, channel_id=channel_id,
                           root_id=root_id, activity_id=activity_id)


def card_submit(service_url: str, value: dict[str, Any], *, conversation_id: str | None = None,
                user: TeamsUser = BOB, reply_to_id: str | None = None,
                activity_id: str | None = None) -> dict[str, Any]:
    """What Teams sends when someone presses an Action.Submit button: a message with `value` (the
    action's data) and no text, replying to the card's activity."""
    conversation_id = conversation_id or personal_conversation_id(user)
    conversation: dict[str, Any] = {"conversationType": "personal", "tenantId": TENANT_ID, "id": conversation_id}
    if ";messageid=" in conversation_id:  # a card in a channel thread
        conversation.update(isGroup=True, conversationType="channel")
    activity = _base(service_url, text="", user=user, activity_id=activity_id, conversation=conversation,
                     channel_data={"tenant": {"id": TENANT_ID}, "source": {"name": "message"}})
    activity.pop("text")
    activity["value"] = value
    if reply_to_id:
        activity["replyToId"] = reply_to_id
    return activity


def card_action(service_url: str, verb: str, data: dict[str, Any], *, conversation_id: str | None = None,
                user: TeamsUser = BOB, trigger: str = "manual", reply_to_id: str | None = None,
                activity_id: str | None = None) -> dict[str, Any]:
    """What Teams sends for an Adaptive Card Action.Execute (a press, or an automatic refresh): an
    `adaptiveCard/action` invoke whose answer (the HTTP response) is the card the user sees next."""
    activity = card_submit(service_url, {}, conversation_id=conversation_id, user=user, reply_to_id=reply_to_id,
                           activity_id=activity_id)
    activity.update(type="invoke", name="adaptiveCard/action",
                    value={"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": trigger})
    return activity


def approval_submit(service_url: str, approval_id: str, decision: str = "approve", **kwargs: Any) -> dict[str, Any]:
    """A press of srebot's Approve / Reject button."""
    value = {"srebot": "approval", "decision": decision, "approval_id": approval_id}
    return card_submit(service_url, value, **kwargs)


def conversation_update(service_url: str, *, conversation_id: str | None = None) -> dict[str, Any]:
    """The bot was added to a personal chat."""
    activity = personal_message(service_url, "", conversation_id=conversation_id)
    activity.update(type="conversationUpdate", membersAdded=[{"id": BOT_ID}])
    activity.pop("text")
    return activity
