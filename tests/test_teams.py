"""Teams end to end: real Activity JSON posted to /api/messages of the srebot app (the Agents SDK on aiohttp),
replies caught by a loopback Bot Connector; with credentials, every request carries a token signed by a
locally generated key that srebot validates against a loopback OpenID metadata / JWKS endpoint."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from microsoft_agents.activity import Activity

from bot.answer import Answer, Finding
from bot.app import Runtime
from bot.config import load_settings
from bot.engine.base import Engine
from bot.commands import HELP_TEXT
from bot.web import build_app
from devtools.loopback.botframework_login import BotFrameworkLogin
from integrations.teams import TEAMS, TeamsIntegration
from integrations.teams import adapter as teams_adapter
from integrations.teams.adapter import reference_dict
from integrations.teams.bot import LOCAL_DECISIONS, conversation_key
from integrations.teams.cards import DECIDE_VERB, REFRESH_VERB
from sessions.store import Origin, Proposal
from tests.helpers import ScriptedEngine
from tests.fakes.serve import eventually
from tests.fakes.bot_connector import (
    ALICE,
    BOB,
    BOT_APP_ID,
    TENANT_ID,
    BotConnectorFake,
    ConnectorCall,
    approval_submit,
    card_action,
    card_submit,
    channel_message,
    conversation_update,
    group_message,
    personal_conversation_id,
    personal_message,
    thread_conversation_id,
    thread_reply,
)

TENANT = TENANT_ID  # the tenant the loopback Bot Connector's people belong to


class StaticTokens:
    """The bot's own token for the Bot Connector: Entra ID cannot be reached from here (MSAL needs it)."""

    def __init__(self, configuration: Any):
        self.configuration = configuration

    async def get_access_token(self, resource_url: str, scopes: list[str], force_refresh: bool = False) -> str:
        return "bot-token-from-entra"


@dataclass
class Srebot:
    client: TestClient
    runtime: Runtime
    teams: TeamsIntegration
    login: BotFrameworkLogin | None = None

    def token(self, activity: dict[str, Any]) -> str:
        assert self.login is not None
        return self.login.token(BOT_APP_ID, activity["serviceUrl"])

    async def request(self, activity: Any, **kwargs: Any) -> tuple[int, Any]:
        """POST the activity (signed by the loopback Bot Framework when credentials are configured)."""
        if self.login is not None and "headers" not in kwargs and isinstance(activity, dict):
            kwargs["headers"] = {"Authorization": f"Bearer {self.token(activity)}"}
        response = await self.client.post("/api/messages", json=activity, **kwargs)
        body = await response.read()
        data = None
        if body and response.content_type == "application/json":
            data = await response.json()
        return response.status, data

    async def post(self, activity: Any, **kwargs: Any) -> int:
        return (await self.request(activity, **kwargs))[0]


def local_env(database: str, *service_urls: str, **extra: str) -> dict[str, str]:
    """Teams without credentials, explicitly (SREBOT_TEAMS_INSECURE=local), replying only to `service_urls`."""
    return {"DATABASE_URL": database, "SREBOT_TEAMS_INSECURE": "local",
            "SREBOT_TEAMS_SERVICE_URLS": ",".join(service_urls), **extra}


def auth_env(database: str, login: BotFrameworkLogin, *service_urls: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": database, "MICROSOFT_APP_ID": BOT_APP_ID,
            "MICROSOFT_APP_PASSWORD": "not-a-real-secret", "MICROSOFT_APP_TENANT_ID": TENANT,
            "SREBOT_TEAMS_OPENID_METADATA": login.metadata_url,
            "SREBOT_TEAMS_SERVICE_URLS": ",".join(service_urls), **extra}


@asynccontextmanager
async def serve(env: dict[str, str], engine: Engine | None = None,
                login: BotFrameworkLogin | None = None) -> AsyncIterator[Srebot]:
    """The srebot web app in process, started and stopped like `srebot serve` (migrations, drain)."""
    runtime = Runtime(load_settings(env=env), engine=engine)
    app = build_app(runtime)
    app[TEAMS].bot.update_interval = 0  # no progress throttling in tests
    async with TestClient(TestServer(app)) as client:
        yield Srebot(client, runtime, app[TEAMS], login)


@pytest.fixture
async def connector() -> AsyncIterator[BotConnectorFake]:
    async with BotConnectorFake() as fake:
        yield fake


@pytest.fixture
async def login(monkeypatch) -> AsyncIterator[BotFrameworkLogin]:
    monkeypatch.setattr(teams_adapter, "msal_provider", StaticTokens)
    async with BotFrameworkLogin() as fake:
        yield fake


def _activity(data: dict[str, Any]) -> Activity:
    return Activity.model_validate(data)


def session_of(call: ConnectorCall) -> str:
    match = re.search(r"session (s_[0-9a-f]+)", call.text)
    assert match, call.text
    return match.group(1)


def is_card(call: ConnectorCall) -> bool:
    return call.card is not None


def stream_info(call: ConnectorCall) -> dict[str, Any] | None:
    return next((e for e in (call.body or {}).get("entities") or [] if e.get("type") == "streaminfo"), None)


# --- conversations -------------------------------------------------------------------------------
async def test_personal_chat_streams_the_acknowledgement_then_ends_the_stream_with_the_answer(
        db_file: str, connector) -> None:
    async with serve(local_env(db_file, connector.url)) as srebot:
        activity = personal_message(connector.url, "help")
        started = time.monotonic()
        assert await srebot.post(activity) == 200
        assert time.monotonic() - started < 2
        # the acknowledgement is the stream's first informative update, a reply sent during the turn
        ack = connector.calls[0]
        assert ack.kind == "reply" and ack.activity_id == activity["id"]
        assert ack.conversation_id == personal_conversation_id(ALICE)
        assert ack.body["type"] == "typing" and ack.body["text"] == srebot.runtime.engine.acknowledgement("help")
        assert stream_info(ack)["streamType"] == "informative" and stream_info(ack)["streamSequence"] == 1

        answer = await connector.wait_for(is_card)
        assert answer.kind == "send" and answer.conversation_id == personal_conversation_id(ALICE)
        assert stream_info(answer)["streamType"] == "final" and stream_info(answer)["streamId"] == ack.response_id
        card = answer.card
        assert card["type"] == "AdaptiveCard" and card["version"] in ("1.4", "1.5")
        for line in HELP_TEXT.splitlines():
            assert line in answer.text
        assert answer.body["from"]["id"] == activity["recipient"]["id"]
        assert "Authorization" not in answer.headers  # no credentials, no token


async def test_channel_mention_is_stripped_and_unaddressed_messages_are_ignored(db_file: str, connector) -> None:
    engine = ScriptedEngine()
    async with serve(local_env(db_file, connector.url), engine) as srebot:
        activity = channel_message(connector.url, "diagnose checkout")
        assert activity["text"] == "<at>srebot</at> diagnose checkout"
        assert await srebot.post(activity) == 200
        answer = await connector.wait_for(is_card)
        assert [r.text for r in engine.requests] == ["diagnose checkout"]
        assert answer.conversation_id == thread_conversation_id(activity["id"])
        assert "Answer to “diagnose checkout”" in answer.text
        assert stream_info(answer) is None  # streaming is for personal chats only
        ack = connector.calls[0]
        assert ack.kind == "reply" and ack.body["type"] == "message"
        assert ack.body["text"] == "Looking into “diagnose checkout”…"
        request = engine.requests[0]
        assert request.user == ALICE.aad_object_id
        assert request.key.workspace == "tenant-0001"
        assert request.key.thread == activity["conversation"]["id"]

        # a new top-level channel post without the mention, and a group chat message without it
        before = len(connector.calls)
        assert await srebot.post(channel_message(connector.url, "checkout is down", mention=False)) == 200
        assert await srebot.post(group_message(connector.url, "anyone?", mention=False)) == 200
        await asyncio.sleep(0.2)
        assert len(connector.calls) == before and len(engine.requests) == 1

        # the same group chat with the mention is handled
        assert await srebot.post(group_message(connector.url, "status of checkout")) == 200
        await connector.wait_for(lambda c: c.conversation_id == "19:group-chat-1@thread.v2" and is_card(c))
        assert engine.requests[-1].text == "status of checkout"


async def test_thread_follow_up_without_mention_continues_the_session(db_file: str, connector) -> None:
    engine = ScriptedEngine()
    async with serve(local_env(db_file, connector.url), engine) as srebot:
        root = channel_message(connector.url, "diagnose checkout")
        assert await srebot.post(root) == 200
        first = await connector.wait_for(is_card)
        follow_up = thread_reply(connector.url, "and its logs?", root_id=root["id"], user=BOB)
        assert "<at>" not in follow_up["text"]
        assert await srebot.post(follow_up) == 200
        cards = await connector.wait_for_count(2, is_card)
        assert [r.text for r in engine.requests] == ["diagnose checkout", "and its logs?"]
        assert session_of(first) == session_of(cards[1])
        key = conversation_key(_activity(follow_up))
        assert await srebot.runtime.store.find_session_id(key) == session_of(first)
        # the follow-up's acknowledgement is a reply in the same thread
        ack = next(c for c in connector.calls if c.kind == "reply" and c.activity_id == follow_up["id"])
        assert ack.conversation_id == thread_conversation_id(root["id"])


async def test_personal_progress_is_informative_updates_and_elsewhere_the_typing_indicator(
        db_file: str, connector) -> None:
    gate = asyncio.Event()
    engine = ScriptedEngine(steps=("Querying metrics…", "Reading logs…"), gate=gate)
    async with serve(local_env(db_file, connector.url), engine) as srebot:
        activity = personal_message(connector.url, "diagnose checkout")
        started = time.monotonic()
        assert await srebot.post(activity) == 200
        assert time.monotonic() - started < 2
        ack = connector.calls[0]
        await connector.wait_for(lambda c: c.body and c.body.get("text") == "Reading logs…")
        updates = [c for c in connector.calls if c.body and c.body.get("type") == "typing"]
        assert [u.body["text"] for u in updates] == ["Looking into “diagnose checkout”…", "Querying metrics…",
                                                     "Reading logs…"]
        assert [stream_info(u)["streamSequence"] for u in updates] == [1, 2, 3]
        assert all(stream_info(u)["streamId"] == ack.response_id for u in updates[1:])
        assert not any(is_card(c) for c in connector.calls)

        gate.set()
        answer = await connector.wait_for(is_card)
        assert answer.kind == "send"  # proactive, through the stored reference
        assert stream_info(answer)["streamType"] == "final" and stream_info(answer)["streamId"] == ack.response_id
        assert "Answer to “diagnose checkout”" in answer.text

        # in a channel thread: the "Looking into" reply, then the typing indicator while it works
        gate.clear()
        connector.calls.clear()
        root = channel_message(connector.url, "diagnose payments")
        assert await srebot.post(root) == 200
        typing = await connector.wait_for_count(2, lambda c: c.body and c.body.get("type") == "typing")
        assert all(stream_info(t) is None and not t.body.get("text") for t in typing)
        assert connector.calls[0].body["text"] == "Looking into “diagnose payments”…"
        assert connector.updates() == []
        gate.set()
        await connector.wait_for(is_card)


async def test_a_crash_notice_in_a_personal_chat_ends_the_stream_left_open(db_file: str, connector) -> None:
    gate = asyncio.Event()
    async with serve(local_env(db_file, connector.url), ScriptedEngine(gate=gate)) as srebot:
        assert await srebot.post(personal_message(connector.url, "diagnose checkout")) == 200
        ack = connector.calls[0]
        store = srebot.runtime.store

        async def started() -> list[Any]:
            return [t for t in await store.active_turns() if t.status == "running"]

        (turn,) = await eventually(started, what="the turn running")
        # what the next process finds with the turn after a crash: the stream its acknowledgement opened
        assert turn.placeholder == {"stream_id": ack.response_id}
        conversation = await store.get_session(turn.session_id)
        await srebot.runtime.notifiers["teams"].say(conversation, "I was restarted while working on it; ask again.",
                                                    replace=turn.placeholder)
        notice = await connector.wait_for(lambda c: "I was restarted" in c.text)
        assert stream_info(notice) == {"type": "streaminfo", "streamType": "final", "streamId": ack.response_id}
        gate.set()


async def test_proactive_messages_reach_the_thread_after_a_restart(db_file: str, connector) -> None:
    env = local_env(db_file, connector.url)
    activity = channel_message(connector.url, "diagnose checkout")
    async with serve(env, ScriptedEngine()) as first:
        assert await first.post(activity) == 200
        await connector.wait_for(is_card)
        key = conversation_key(_activity(activity))
        session_id = await first.runtime.store.find_session_id(key)
        assert session_id is not None
        # a turn this process was running when it "crashed", its placeholder since deleted in Teams
        turn = await first.runtime.store.create_turn(session_id, "req_lost", "diagnose payments", ALICE.aad_object_id,
                                                     "crashed-instance")
        await first.runtime.store.start_turn(turn, "crashed-instance", {"activity_id": "act-deleted"})
    connector.calls.clear()
    connector.fail_next(404, code="NotFound")

    # a new process on the same database: crash recovery tells the thread through the stored reference;
    # Teams refuses to update the placeholder, so the notice is posted instead
    async with serve(env, ScriptedEngine()) as second:
        notice = await connector.wait_for(lambda c: "I was restarted" in c.text and c.status == 200)
        assert notice.kind == "send" and notice.conversation_id == thread_conversation_id(activity["id"])
        assert "diagnose payments" in notice.text
        refused = connector.calls[0]
        assert (refused.kind, refused.activity_id, refused.status) == ("update", "act-deleted", 404)

        conversation = await second.runtime.store.get_session(session_id)
        assert conversation is not None and conversation.reference is not None
        notifier = second.runtime.notifiers["teams"]
        await notifier.say(conversation, Answer(summary="Checkout recovered.", session_id=session_id))
        card = await connector.wait_for(lambda c: is_card(c) and "Checkout recovered." in c.text)
        assert card.conversation_id == thread_conversation_id(activity["id"])

        # and a follow-up in that thread is a session continued by the new process
        follow_up = thread_reply(connector.url, "what changed?", root_id=activity["id"])
        assert await second.post(follow_up) == 200
        answer = await connector.wait_for(lambda c: is_card(c) and "what changed?" in c.text)
        assert session_of(answer) == session_id


# --- approvals (Universal Actions, on an authenticated bot) ----------------------------------------
async def _propose(srebot: Srebot, connector: BotConnectorFake, **fields: Any) -> tuple[Any, ConnectorCall]:
    activity = personal_message(connector.url, "restart checkout")
    assert await srebot.post(activity) == 200
    await connector.wait_for(is_card)
    session_id = await srebot.runtime.store.find_session_id(conversation_key(_activity(activity)))
    assert session_id is not None
    what = {"kind": "restart", "target": "shop/checkout", "params": {}, "description": "Restart checkout in shop",
            **fields}
    approval = await srebot.runtime.approvals.propose(
        Proposal(**what, origin=Origin(ALICE.aad_object_id, "teams", session_id)))
    await srebot.teams.bot.port(reference_dict(_activity(activity))).ask_approval(approval)
    sent = await connector.wait_for(lambda c: is_card(c) and approval.id in c.text)
    return approval, sent


def _actions(card: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["type"], a["title"]) for a in card.get("actions") or []]


async def test_approval_card_shows_each_person_their_buttons_and_updates_for_everyone(
        db_file: str, connector, login) -> None:
    executed: list[str] = []
    env = auth_env(db_file, login, connector.url, SREBOT_APPROVERS=f"{ALICE.aad_object_id},{BOB.aad_object_id}")
    async with serve(env, ScriptedEngine(), login) as srebot:

        async def executor(approval) -> str:  # noqa: ANN001
            executed.append(approval.id)
            return "rollout restarted"

        srebot.runtime.approvals.executor = executor
        approval, sent = await _propose(srebot, connector)
        card = sent.card
        assert card["version"] == "1.4"
        # everyone sees the request and its status; only Bob (an approver, not the requester) is refreshed
        assert card["refresh"]["userIds"] == [BOB.id]
        assert card["refresh"]["action"] == {"type": "Action.Execute", "title": "Refresh", "verb": REFRESH_VERB,
                                             "data": {"srebot": "approval", "approval_id": approval.id}}
        assert _actions(card) == [("Action.Execute", "Review")]
        assert "Requested by: Alice Example" in sent.text and ALICE.aad_object_id not in sent.text
        assert sent.headers["Authorization"] == "Bearer bot-token-from-entra"
        stored = await srebot.runtime.store.get_approval(approval.id)
        assert stored.message_ref["activity_id"] == sent.response_id

        conversation_id = personal_conversation_id(ALICE)
        data = {"srebot": "approval", "approval_id": approval.id}

        # Bob's automatic refresh: Approve and Reject, each behind a confirmation
        status, body = await srebot.request(card_action(connector.url, REFRESH_VERB, data, user=BOB,
                                                        conversation_id=conversation_id, trigger="automatic"))
        assert status == 200 and body["statusCode"] == 200
        assert body["type"] == "application/vnd.microsoft.card.adaptive"
        bobs = body["value"]
        assert _actions(bobs) == [("Action.ShowCard", "Approve"), ("Action.ShowCard", "Reject")]
        confirm = bobs["actions"][0]["card"]["actions"][0]
        assert confirm["type"] == "Action.Execute" and confirm["verb"] == DECIDE_VERB
        assert confirm["data"] == {**data, "decision": "approve"}

        # Alice (the requester) may only reject, and is told why she cannot approve
        status, body = await srebot.request(card_action(connector.url, REFRESH_VERB, data, user=ALICE,
                                                        conversation_id=conversation_id))
        assert _actions(body["value"]) == [("Action.ShowCard", "Reject")]
        assert "someone else has to approve" in str(body["value"])
        # her forged approval is refused, only to her, and changes nothing
        status, body = await srebot.request(card_action(connector.url, DECIDE_VERB, {**data, "decision": "approve"},
                                                        user=ALICE, conversation_id=conversation_id))
        assert status == 200 and "someone else has to approve" in str(body["value"])
        assert (await srebot.runtime.store.get_approval(approval.id)).status == "pending"
        assert connector.updates(sent.response_id) == [] and executed == []

        # Bob confirms: executed once; his card answers at once, everyone's card is updated
        status, body = await srebot.request(card_action(connector.url, DECIDE_VERB, {**data, "decision": "approve"},
                                                        user=BOB, conversation_id=conversation_id))
        assert status == 200 and "Approved by Bob Example" in str(body["value"])
        assert "actions" not in body["value"] and "refresh" not in body["value"]
        outcome = await connector.wait_for(lambda c: c.kind == "send" and "done (approved by Bob Example): rollout restarted" in c.text)
        assert outcome.conversation_id == conversation_id and "Bob Example" in outcome.text
        final = connector.updates(sent.response_id)[-1]
        assert "Approved by Bob Example" in final.text and "rollout restarted" in final.text
        assert "actions" not in final.card and "refresh" not in final.card
        assert executed == [approval.id]
        stored = await srebot.runtime.store.get_approval(approval.id)
        assert stored.status == "executed" and stored.decided_by == BOB.aad_object_id

        # a late decision on the decided card changes nothing and says so
        status, body = await srebot.request(card_action(connector.url, DECIDE_VERB, {**data, "decision": "reject"},
                                                        user=BOB, conversation_id=conversation_id))
        assert status == 200 and "Approved by Bob Example" in str(body["value"])
        assert executed == [approval.id]


async def test_cards_posted_before_universal_actions_still_decide(db_file: str, connector, login) -> None:
    async with serve(auth_env(db_file, login, connector.url, SREBOT_APPROVERS=BOB.aad_object_id),
                     ScriptedEngine(), login) as srebot:
        approval, sent = await _propose(srebot, connector, kind="scale", params={"replicas": 5},
                                        description="Scale checkout to 5")
        assert "replicas=5" in sent.text
        conversation_id = personal_conversation_id(ALICE)
        # the requester is not an approver: refused, told why in her personal chat (private), nothing changes
        press = approval_submit(connector.url, approval.id, "approve", user=ALICE, conversation_id=conversation_id,
                                reply_to_id=sent.response_id)
        assert await srebot.post(press) == 200
        refusal = await connector.wait_for(lambda c: "someone else has to approve" in c.text)
        assert refusal.kind == "reply" and refusal.activity_id == press["id"]
        assert refusal.conversation_id == conversation_id
        # Bob rejects with the old Action.Submit data; a redelivery is dropped
        press = approval_submit(connector.url, approval.id, "reject", user=BOB, conversation_id=conversation_id)
        assert await srebot.post(press) == 200
        assert await srebot.post(press) == 200
        update = await connector.wait_for(lambda c: c.kind == "update" and c.activity_id == sent.response_id)
        assert "Rejected by Bob Example" in update.text
        await connector.wait_for(lambda c: c.kind == "send" and "was rejected by Bob Example" in c.text)
        assert (await srebot.runtime.store.get_approval(approval.id)).status == "rejected"


async def test_without_credentials_nobody_can_decide_from_teams(db_file: str, connector) -> None:
    """Local mode proves nobody's identity, so a claimed aadObjectId decides nothing."""
    executed: list[str] = []
    async with serve(local_env(db_file, connector.url, SREBOT_APPROVERS=BOB.aad_object_id),
                     ScriptedEngine()) as srebot:
        srebot.runtime.approvals.executor = lambda approval: executed.append(approval.id)  # type: ignore[assignment]
        approval, sent = await _propose(srebot, connector)
        conversation_id = personal_conversation_id(ALICE)
        press = approval_submit(connector.url, approval.id, "approve", user=BOB, conversation_id=conversation_id)
        assert await srebot.post(press) == 200
        await connector.wait_for(lambda c: LOCAL_DECISIONS[:40] in c.text)
        status, body = await srebot.request(card_action(
            connector.url, DECIDE_VERB, {"srebot": "approval", "approval_id": approval.id, "decision": "approve"},
            user=BOB, conversation_id=conversation_id))
        assert status == 200 and LOCAL_DECISIONS[:40] in str(body["value"])
        assert "Action.ShowCard" not in str(body["value"])
        assert (await srebot.runtime.store.get_approval(approval.id)).status == "pending" and executed == []


# --- authentication and destinations -------------------------------------------------------------
async def test_teams_is_off_without_credentials(db_file: str, connector) -> None:
    env = {"DATABASE_URL": db_file,
           "SREBOT_TEAMS_SERVICE_URLS": connector.url}
    runtime = Runtime(load_settings(env=env))
    app = build_app(runtime)
    assert TEAMS not in app
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/api/messages", json=personal_message(connector.url, "diagnose checkout"))
        assert response.status == 404
        assert (await client.get("/healthz")).status == 200
    assert connector.calls == []


async def test_every_request_needs_a_valid_token_for_this_bot(db_file: str, connector, login) -> None:
    engine = ScriptedEngine()
    async with serve(auth_env(db_file, login, connector.url), engine, login) as srebot:
        activity = personal_message(connector.url, "help")
        url = connector.url
        now = int(time.time())
        forged = {
            "no header": None,
            "basic": "Basic dXNlcjpwdw==",
            "not a jwt": "Bearer not.a.jwt",
            "bad audience": f"Bearer {login.token('another-bot', url)}",
            "bad issuer": f"Bearer {login.token(BOT_APP_ID, url, iss='https://evil.example')}",
            "expired": f"Bearer {login.token(BOT_APP_ID, url, exp=now - 3600, nbf=now - 7200)}",
            "unsigned": f"Bearer {BotFrameworkLogin.unsigned(BOT_APP_ID, url)}",
            "unknown key": f"Bearer {login.token(BOT_APP_ID, url, key=BotFrameworkLogin.other_key())}",
            "other serviceurl claim": f"Bearer {login.token(BOT_APP_ID, 'https://smba.trafficmanager.net/emea/')}",
            "no serviceurl claim": f"Bearer {login.token(BOT_APP_ID, url, serviceurl=None)}",
        }
        for name, header in forged.items():
            headers = {"Authorization": header} if header else {}
            assert await srebot.post(activity, headers=headers) == 401, name
        await asyncio.sleep(0.1)
        assert connector.calls == [] and engine.requests == []
        assert "/v1/.well-known/keys" in login.requests  # the keys came from the OpenID metadata's jwks_uri

        assert await srebot.post(activity) == 200  # signed by the Bot Framework for this bot: answered
        await connector.wait_for(is_card)
        assert [r.text for r in engine.requests] == ["help"]


async def test_without_the_bots_own_token_a_request_is_503_and_taken_up_on_retry(
        db_file: str, connector, login, monkeypatch) -> None:
    class EntraDown(StaticTokens):
        async def get_access_token(self, resource_url: str, scopes: list[str], force_refresh: bool = False) -> str:
            raise ValueError("Failed to acquire token")

    engine = ScriptedEngine()
    monkeypatch.setattr(teams_adapter, "msal_provider", EntraDown)
    async with serve(auth_env(db_file, login, connector.url), engine, login) as srebot:
        activity = personal_message(connector.url, "help")
        assert await srebot.post(activity) == 503
        assert connector.calls == [] and engine.requests == []
        monkeypatch.setattr(srebot.teams.adapter._channel_service_client_factory, "tokens", StaticTokens(None))
        assert await srebot.post(activity) == 200  # the Bot Framework's retry of the same activity
        await connector.wait_for(is_card)
        assert [r.text for r in engine.requests] == ["help"]


async def test_replies_never_go_to_a_service_url_outside_the_allow_list(db_file: str, connector, login) -> None:
    async with BotConnectorFake() as elsewhere:
        # without credentials: a serviceUrl that is not allowed is refused, and nothing is sent there
        async with serve(local_env(db_file, connector.url), ScriptedEngine()) as srebot:
            assert await srebot.post(personal_message(elsewhere.url, "diagnose checkout")) == 401
        # with credentials: even a token naming that serviceUrl does not make it an allowed destination
        async with serve(auth_env(db_file, login, connector.url),
                         ScriptedEngine(), login) as srebot:
            assert await srebot.post(personal_message(elsewhere.url, "diagnose checkout")) == 401
        await asyncio.sleep(0.1)
        assert elsewhere.calls == [] and connector.calls == []


async def test_a_stored_reference_is_not_taken_over_by_an_unauthenticated_activity(db_file: str, connector) -> None:
    async with BotConnectorFake() as other:
        async with serve(local_env(db_file, connector.url, other.url), ScriptedEngine()) as srebot:
            root = channel_message(connector.url, "diagnose checkout")
            assert await srebot.post(root) == 200
            await connector.wait_for(is_card)
            key = conversation_key(_activity(root))
            session_id = await srebot.runtime.store.find_session_id(key)
            # someone who knows the conversation id writes into it from another serviceUrl
            assert await srebot.post(thread_reply(other.url, "what now?", root_id=root["id"])) == 200
            await other.wait_for(is_card)
            stored = await srebot.runtime.store.get_session(session_id)
            assert stored.reference["serviceUrl"] == connector.url


async def test_a_silent_destination_delays_nobody_else(db_file: str, connector) -> None:
    """Six activities whose (allowed) serviceUrl accepts connections and never answers do not delay a
    legitimate reply: one destination gets a bounded number of connections, and every call has a deadline."""
    held: list[asyncio.StreamWriter] = []
    open_now, most = 0, 0

    hanging_up = False

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, most
        if hanging_up:
            writer.close()
            return
        held.append(writer)
        open_now += 1
        most = max(most, open_now)
        while await reader.read(65536):  # until the bot gives up and closes the connection
            pass
        open_now -= 1

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    silent_url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}/"
    try:
        async with serve(local_env(db_file, connector.url, silent_url), ScriptedEngine()) as srebot:
            # the deadline outlasts the legitimate reply however slow the machine: that reply must not wait for it
            srebot.teams.destinations.timeout = aiohttp.ClientTimeout(total=30.0)
            srebot.teams.destinations.per_destination = 2
            stuck = [personal_message(silent_url, f"diagnose s{i}", conversation_id=f"a:silent-{i}")
                     for i in range(6)]
            stalled = [asyncio.create_task(srebot.post(a)) for a in stuck]
            while len(held) < 2:  # the silent destination holds its two connections
                await asyncio.sleep(0.01)
            assert await srebot.post(personal_message(connector.url, "diagnose checkout")) == 200
            await connector.wait_for(is_card, timeout=10)
            # answered while all six still wait on the silent destination
            assert not any(task.done() for task in stalled) and open_now == 2
            hanging_up = True  # the destination hangs up on every call: the six end, none of them with an error
            for writer in held:
                writer.close()
            assert all(s == 200 for s in await asyncio.gather(*stalled))
            assert most <= 2  # never more connections at once to that destination than allowed

            # and a call the destination never answers ends at its deadline: the bot gives up and hangs up
            srebot.teams.destinations.timeout = aiohttp.ClientTimeout(total=0.3)
            hanging_up = False
            held.clear()
            assert await srebot.post(personal_message(silent_url, "diagnose s7", conversation_id="a:silent-7")) == 200
            async with asyncio.timeout(10):  # without a deadline the bot would hold the connection for good
                while not held or open_now:  # never_answer returns once the bot has closed the connection
                    await asyncio.sleep(0.01)
    finally:
        silent.close()
        for writer in held:
            writer.close()


async def test_local_mode_refuses_a_public_bind(db_file: str, monkeypatch, capsys) -> None:
    from bot.cli import EXIT_CONFIG, main

    for key in ("MICROSOFT_APP_ID", "SREBOT_TEAMS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SREBOT_TEAMS_INSECURE", "local")
    monkeypatch.setenv("DATABASE_URL", db_file)
    assert await asyncio.to_thread(main, ["serve", "--host", "0.0.0.0", "--port", "0"]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--host 127.0.0.1" in err


def test_single_tenant_needs_a_tenant_id() -> None:
    from bot.config import ConfigError

    with pytest.raises(ConfigError, match="MICROSOFT_APP_TENANT_ID is required"):
        load_settings(env={"MICROSOFT_APP_ID": BOT_APP_ID, "MICROSOFT_APP_PASSWORD": "x"})
    settings = load_settings(env={"MICROSOFT_APP_ID": BOT_APP_ID, "MICROSOFT_APP_PASSWORD": "x",
                                  "MICROSOFT_APP_TYPE": "MultiTenant"})
    assert settings.teams_mode == "auth"
    msi = load_settings(env={"MICROSOFT_APP_ID": BOT_APP_ID, "MICROSOFT_APP_TYPE": "UserAssignedMSI",
                             "MICROSOFT_APP_TENANT_ID": TENANT})
    assert msi.teams_mode == "auth"
    assert load_settings(env={}).teams_mode == "off"
    assert load_settings(env={"SREBOT_TEAMS_INSECURE": "local"}).teams_mode == "local"
    assert load_settings(env={"SREBOT_TEAMS_INSECURE": "local", "SREBOT_TEAMS": "off"}).teams_mode == "off"


# --- limits, dedupe, malformed input -------------------------------------------------------------
async def test_a_large_answer_is_split_into_messages_under_the_teams_limit(db_file: str, connector) -> None:
    findings = [
        Finding(severity=("critical", "warning", "info")[i % 3], source="logs", title=f"pattern {i:03d} " + "x" * 80,
                evidence="ERROR " + "stack frame " * 40)
        for i in range(120)
    ]
    engine = ScriptedEngine(answer=Answer(intent="logs", summary="Lots of errors.", findings=findings))
    async with serve(local_env(db_file, connector.url), engine) as srebot:
        assert await srebot.post(personal_message(connector.url, "logs checkout")) == 200
        last = await connector.wait_for(lambda c: is_card(c) and re.search(r"part (\d+) of \1\)", c.text))
        cards = [c for c in connector.calls if is_card(c)]
        assert 1 < len(cards) < 10 and cards[-1] is last and "session s_" in last.text
        assert all(c.size < 40_000 for c in cards)
        assert "The details follow in the next message." in cards[0].text  # short first, the rest after it
        assert "more findings in the next message" in cards[1].text
        assert stream_info(cards[0])["streamType"] == "final" and stream_info(cards[1]) is None
        text = "\n".join(c.text for c in cards)
        assert all(f"pattern {i:03d}" in text for i in range(120))


async def test_duplicate_deliveries_are_processed_once(db_file: str, connector) -> None:
    engine = ScriptedEngine()
    async with serve(local_env(db_file, connector.url), engine) as srebot:
        activity = personal_message(connector.url, "diagnose checkout")
        statuses = await asyncio.gather(*(srebot.post(activity) for _ in range(3)))
        assert statuses == [200, 200, 200]
        await connector.wait_for(is_card)
        assert await srebot.post(activity) == 200  # a retry after the answer
        await asyncio.sleep(0.2)
        assert len(engine.requests) == 1
        assert len([c for c in connector.calls if is_card(c)]) == 1
        assert len([c for c in connector.calls if c.kind == "reply"]) == 1


async def test_local_mode_is_logged_loudly_at_mount(db_file: str, connector, caplog) -> None:
    with caplog.at_level("WARNING", logger="srebot.teams"):
        async with serve(local_env(db_file, connector.url)) as srebot:
            assert srebot.teams.auth.local
    warnings = [r for r in caplog.records if "NOT authenticated" in r.getMessage()]
    assert len(warnings) == 1 and connector.url in warnings[0].getMessage()


async def test_malformed_bodies_are_400_and_other_activities_are_ignored(db_file: str, connector) -> None:
    engine = ScriptedEngine()
    async with serve(local_env(db_file, connector.url), engine) as srebot:
        for body in (b"{not json", b"[]", b'{"text": "no type"}', b"\xff\xfe", b'{"type": 5}'):
            response = await srebot.client.post("/api/messages", data=body,
                                                headers={"Content-Type": "application/json"})
            assert response.status == 400, body
        no_service_url = personal_message(connector.url, "help")
        del no_service_url["serviceUrl"]
        assert await srebot.post(no_service_url) == 400

        assert await srebot.post(conversation_update(connector.url)) == 200
        typing = personal_message(connector.url, "")
        typing.update(type="typing")
        assert await srebot.post(typing) == 200
        assert await srebot.post({"type": "typing"}) == 200
        status, body = await srebot.request(card_action(connector.url, "other", {"something": "else"}))
        assert status == 200 and body["statusCode"] == 400
        await asyncio.sleep(0.1)
        assert connector.calls == [] and engine.requests == []
        assert (await srebot.client.get("/healthz")).status == 200


async def test_other_card_submits_are_plain_messages(db_file: str, connector) -> None:
    engine = ScriptedEngine()
    async with serve(local_env(db_file, connector.url), engine) as srebot:
        assert await srebot.post(card_submit(connector.url, {"something": "else"}, user=ALICE)) == 200
        await connector.wait_for(is_card)
        assert [r.text for r in engine.requests] == ["help"]


async def test_connector_failures_are_logged_not_raised(db_file: str, connector) -> None:
    engine = ScriptedEngine()
    async with serve(local_env(db_file, connector.url), engine) as srebot:
        connector.fail_next(status=413, times=1, code="MessageSizeTooBig")
        assert await srebot.post(group_message(connector.url, "diagnose checkout")) == 200
        answer = await connector.wait_for(is_card)  # the failed acknowledgement does not stop the answer
        assert connector.calls[0].status == 413
        assert "Answer to" in answer.text
