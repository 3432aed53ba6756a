"""Teams end to end: real Activity JSON posted to /api/messages of the srebot app, replies caught by a fake Bot Connector."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from botbuilder.schema import Activity

from bot.answer import Answer, Finding
from bot.app import Runtime
from bot.config import load_settings
from bot.engine.base import Engine
from bot.commands import HELP_TEXT
from bot.web import build_app
from integrations.teams import TEAMS, TeamsIntegration
from integrations.teams.adapter import reference_dict
from integrations.teams.bot import conversation_key
from sessions.store import Origin, Proposal
from tests.helpers import ScriptedEngine
from tests.fakes.bot_connector import (
    ALICE,
    BOB,
    BotConnectorFake,
    ConnectorCall,
    approval_submit,
    card_submit,
    channel_message,
    conversation_update,
    group_message,
    personal_conversation_id,
    personal_message,
    thread_conversation_id,
    thread_reply,
)


@dataclass
class Srebot:
    client: TestClient
    runtime: Runtime
    teams: TeamsIntegration

    async def post(self, activity: Any, **kwargs: Any) -> int:
        response = await self.client.post("/api/messages", json=activity, **kwargs)
        await response.read()
        return response.status


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'srebot.db'}", "MICROSOFT_APP_ID": "", **extra}


@asynccontextmanager
async def serve(env: dict[str, str], engine: Engine | None = None) -> AsyncIterator[Srebot]:
    """The srebot web app in process, started and stopped like `srebot serve` (migrations, drain)."""
    runtime = Runtime(load_settings(env=env), engine=engine)
    app = build_app(runtime)
    app[TEAMS].bot.update_interval = 0  # no progress throttling in tests
    async with TestClient(TestServer(app)) as client:
        yield Srebot(client, runtime, app[TEAMS])


@pytest.fixture
async def connector() -> AsyncIterator[BotConnectorFake]:
    async with BotConnectorFake() as fake:
        yield fake


def _activity(data: dict[str, Any]) -> Activity:
    return Activity().deserialize(data)


def session_of(call: ConnectorCall) -> str:
    match = re.search(r"session (s_[0-9a-f]+)", call.text)
    assert match, call.text
    return match.group(1)


def is_card(call: ConnectorCall) -> bool:
    return call.card is not None


# --- conversations -------------------------------------------------------------------------------
async def test_personal_help_acknowledges_in_the_turn_then_answers_with_a_card(tmp_path, connector) -> None:
    async with serve(env_for(tmp_path)) as srebot:
        activity = personal_message(connector.url, "help")
        started = time.monotonic()
        assert await srebot.post(activity) == 200
        assert time.monotonic() - started < 2
        # the acknowledgement is a reply sent during the turn, before the HTTP response
        ack = connector.calls[0]
        assert ack.kind == "reply" and ack.activity_id == activity["id"]
        assert ack.conversation_id == personal_conversation_id(ALICE)
        assert ack.body["text"] == srebot.runtime.engine.acknowledgement("help")

        answer = await connector.wait_for(is_card)
        assert answer.kind == "send" and answer.conversation_id == personal_conversation_id(ALICE)
        card = answer.card
        assert card["type"] == "AdaptiveCard" and card["version"] in ("1.4", "1.5")
        for line in HELP_TEXT.splitlines():
            assert line in answer.text
        assert answer.body["from"]["id"] == activity["recipient"]["id"]


async def test_channel_mention_is_stripped_and_unaddressed_messages_are_ignored(tmp_path, connector) -> None:
    engine = ScriptedEngine()
    async with serve(env_for(tmp_path), engine) as srebot:
        activity = channel_message(connector.url, "diagnose checkout")
        assert activity["text"] == "<at>srebot</at> diagnose checkout"
        assert await srebot.post(activity) == 200
        answer = await connector.wait_for(is_card)
        assert [r.text for r in engine.requests] == ["diagnose checkout"]
        assert answer.conversation_id == thread_conversation_id(activity["id"])
        assert "Answer to “diagnose checkout”" in answer.text
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


async def test_thread_follow_up_without_mention_continues_the_session(tmp_path, connector) -> None:
    engine = ScriptedEngine()
    async with serve(env_for(tmp_path), engine) as srebot:
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


async def test_slow_request_updates_the_placeholder_and_answers_after_the_turn(tmp_path, connector) -> None:
    gate = asyncio.Event()
    engine = ScriptedEngine(steps=("Querying metrics…", "Reading logs…"), gate=gate)
    async with serve(env_for(tmp_path), engine) as srebot:
        activity = personal_message(connector.url, "diagnose checkout")
        started = time.monotonic()
        assert await srebot.post(activity) == 200
        assert time.monotonic() - started < 2
        ack = connector.calls[0]
        assert ack.kind == "reply" and ack.body["text"] == "Looking into “diagnose checkout”…"
        await connector.wait_for(lambda c: c.kind == "update" and c.body["text"] == "Reading logs…")
        updates = connector.updates(ack.response_id)
        assert [u.body["text"] for u in updates] == ["Querying metrics…", "Reading logs…"]
        assert not any(is_card(c) for c in connector.calls)

        gate.set()
        answer = await connector.wait_for(is_card)
        assert answer.kind == "send"  # proactive, through the stored reference
        assert "Answer to “diagnose checkout”" in answer.text
        settled = await connector.wait_for(lambda c: c.kind == "update" and c.body["text"].endswith("✓"))
        assert settled.activity_id == ack.response_id


async def test_proactive_messages_reach_the_thread_after_a_restart(tmp_path, connector) -> None:
    env = env_for(tmp_path)
    activity = channel_message(connector.url, "diagnose checkout")
    async with serve(env, ScriptedEngine()) as first:
        assert await first.post(activity) == 200
        await connector.wait_for(is_card)
        key = conversation_key(_activity(activity))
        session_id = await first.runtime.store.find_session_id(key)
        assert session_id is not None
        # a turn this process was running when it "crashed"
        turn = await first.runtime.store.create_turn(session_id, "req_lost", "diagnose payments", ALICE.aad_object_id,
                                                     "crashed-instance")
        await first.runtime.store.update_turn(turn, "running")
    connector.calls.clear()

    # a new process on the same database: crash recovery tells the thread through the stored reference
    async with serve(env, ScriptedEngine()) as second:
        notice = await connector.wait_for(lambda c: "I was restarted" in c.text)
        assert notice.kind == "send" and notice.conversation_id == thread_conversation_id(activity["id"])
        assert "diagnose payments" in notice.text

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


# --- approvals -----------------------------------------------------------------------------------
async def _session_with_reference(srebot: Srebot, connector: BotConnectorFake) -> tuple[str, dict[str, Any]]:
    activity = personal_message(connector.url, "restart checkout")
    assert await srebot.post(activity) == 200
    await connector.wait_for(is_card)
    session_id = await srebot.runtime.store.find_session_id(conversation_key(_activity(activity)))
    assert session_id is not None
    return session_id, reference_dict(_activity(activity))


async def test_approval_card_refuses_the_requester_and_accepts_another_approver(tmp_path, connector) -> None:
    executed: list[str] = []
    async with serve(env_for(tmp_path, SREBOT_APPROVERS=f"{ALICE.aad_object_id},{BOB.aad_object_id}"),
                     ScriptedEngine()) as srebot:

        async def executor(approval) -> str:  # noqa: ANN001
            executed.append(approval.id)
            return "rollout restarted"

        srebot.runtime.approvals.executor = executor
        session_id, reference = await _session_with_reference(srebot, connector)
        approval = await srebot.runtime.approvals.propose(
            Proposal("restart", "shop/checkout", {}, "Restart checkout in shop",
                     Origin(ALICE.aad_object_id, "teams", session_id))
        )
        await srebot.teams.bot.port(reference).ask_approval(approval)
        sent = await connector.wait_for(lambda c: is_card(c) and "Restart checkout in shop" in c.text)
        card = sent.card
        assert card["version"] in ("1.4", "1.5")
        assert [(a["type"], a["data"]) for a in card["actions"]] == [
            ("Action.Submit", {"srebot": "approval", "decision": "approve", "approval_id": approval.id}),
            ("Action.Submit", {"srebot": "approval", "decision": "reject", "approval_id": approval.id}),
        ]
        assert ALICE.aad_object_id in sent.text and "Expires" in sent.text
        stored = await srebot.runtime.store.get_approval(approval.id)
        assert stored.message_ref == {"activity_id": sent.response_id, "conversation": reference}

        conversation_id = personal_conversation_id(ALICE)
        # the requester presses Approve: refused, told why (a mention, Teams has no ephemeral), nothing changes
        press = approval_submit(connector.url, approval.id, "approve", user=ALICE, conversation_id=conversation_id,
                                reply_to_id=sent.response_id)
        assert await srebot.post(press) == 200
        refusal = await connector.wait_for(lambda c: "someone else has to approve" in c.text)
        assert refusal.kind == "reply" and refusal.activity_id == press["id"]
        assert refusal.body["entities"][0]["mentioned"]["id"] == ALICE.id
        assert (await srebot.runtime.store.get_approval(approval.id)).status == "pending"
        assert connector.updates(sent.response_id) == [] and executed == []

        # another approver presses Approve: executed once, the card is updated, the outcome posted
        press = approval_submit(connector.url, approval.id, "approve", user=BOB, conversation_id=conversation_id,
                                reply_to_id=sent.response_id)
        assert await srebot.post(press) == 200
        assert await srebot.post(press) == 200  # a redelivery of the same activity is dropped
        outcome = await connector.wait_for(lambda c: c.kind == "send" and "done (approved by aad-bob): rollout restarted" in c.text)
        assert outcome.conversation_id == conversation_id
        updates = connector.updates(sent.response_id)
        assert updates, "the approval card was not updated"
        final = updates[-1]
        assert "Approved by aad-bob" in final.text and "rollout restarted" in final.text
        assert "actions" not in final.card
        assert executed == [approval.id]
        assert (await srebot.runtime.store.get_approval(approval.id)).status == "executed"

        # a late press of the decided card changes nothing and says so
        late = approval_submit(connector.url, approval.id, "reject", user=BOB, conversation_id=conversation_id)
        assert await srebot.post(late) == 200
        await connector.wait_for(lambda c: "Already executed" in c.text)
        assert executed == [approval.id]


async def test_approval_reject_updates_the_card(tmp_path, connector) -> None:
    async with serve(env_for(tmp_path, SREBOT_APPROVERS=BOB.aad_object_id), ScriptedEngine()) as srebot:
        session_id, reference = await _session_with_reference(srebot, connector)
        approval = await srebot.runtime.approvals.propose(
            Proposal("scale", "shop/checkout", {"replicas": 5}, "Scale checkout to 5",
                     Origin(ALICE.aad_object_id, "teams", session_id))
        )
        await srebot.teams.bot.port(reference).ask_approval(approval)
        sent = await connector.wait_for(lambda c: is_card(c) and "Scale checkout to 5" in c.text)
        assert "replicas=5" in sent.text
        press = approval_submit(connector.url, approval.id, "reject", user=BOB,
                                conversation_id=personal_conversation_id(ALICE))
        assert await srebot.post(press) == 200
        update = await connector.wait_for(lambda c: c.kind == "update" and c.activity_id == sent.response_id)
        assert "Rejected by aad-bob" in update.text
        await connector.wait_for(lambda c: c.kind == "send" and "was rejected by aad-bob" in c.text)
        assert (await srebot.runtime.store.get_approval(approval.id)).status == "rejected"


async def test_other_card_submits_are_plain_messages(tmp_path, connector) -> None:
    engine = ScriptedEngine()
    async with serve(env_for(tmp_path), engine) as srebot:
        assert await srebot.post(card_submit(connector.url, {"something": "else"}, user=ALICE)) == 200
        await connector.wait_for(is_card)
        assert [r.text for r in engine.requests] == ["help"]


# --- limits, dedupe, auth, malformed input -------------------------------------------------------
async def test_a_large_answer_is_split_into_messages_under_the_teams_limit(tmp_path, connector) -> None:
    findings = [
        Finding(severity=("critical", "warning", "info")[i % 3], source="logs", title=f"pattern {i:03d} " + "x" * 80,
                evidence="ERROR " + "stack frame " * 40)
        for i in range(120)
    ]
    engine = ScriptedEngine(answer=Answer(intent="logs", summary="Lots of errors.", findings=findings))
    async with serve(env_for(tmp_path), engine) as srebot:
        assert await srebot.post(personal_message(connector.url, "logs checkout")) == 200
        last = await connector.wait_for(lambda c: is_card(c) and re.search(r"part (\d+) of \1\)", c.text))
        cards = [c for c in connector.calls if is_card(c)]
        assert 1 < len(cards) < 10 and cards[-1] is last and "session s_" in last.text
        assert all(c.size < 40_000 for c in cards)
        assert "more findings in the next message" in cards[0].text
        text = "\n".join(c.text for c in cards)
        assert all(f"pattern {i:03d}" in text for i in range(120))


async def test_duplicate_deliveries_are_processed_once(tmp_path, connector) -> None:
    engine = ScriptedEngine()
    async with serve(env_for(tmp_path), engine) as srebot:
        activity = personal_message(connector.url, "diagnose checkout")
        statuses = await asyncio.gather(*(srebot.post(activity) for _ in range(3)))
        assert statuses == [200, 200, 200]
        await connector.wait_for(is_card)
        assert await srebot.post(activity) == 200  # a retry after the answer
        await asyncio.sleep(0.2)
        assert len(engine.requests) == 1
        assert len([c for c in connector.calls if is_card(c)]) == 1
        assert len([c for c in connector.calls if c.kind == "reply"]) == 1


async def test_auth_on_refuses_requests_without_a_valid_token(tmp_path, connector) -> None:
    engine = ScriptedEngine()
    env = env_for(tmp_path, MICROSOFT_APP_ID="11111111-2222-3333-4444-555555555555",
                  MICROSOFT_APP_PASSWORD="not-a-real-secret")
    async with serve(env, engine) as srebot:
        activity = personal_message(connector.url, "help")
        assert await srebot.post(activity) == 401
        assert await srebot.post(activity, headers={"Authorization": "Bearer not.a.jwt"}) == 401
        assert await srebot.post(activity, headers={"Authorization": "Basic dXNlcjpwdw=="}) == 401
        await asyncio.sleep(0.1)
        assert connector.calls == [] and engine.requests == []


async def test_auth_off_is_logged_once_at_mount(tmp_path, caplog) -> None:
    with caplog.at_level("WARNING", logger="srebot.teams"):
        async with serve(env_for(tmp_path)) as srebot:
            assert not srebot.teams.config.auth_enabled
    warnings = [r for r in caplog.records if "NOT authenticated" in r.getMessage()]
    assert len(warnings) == 1


async def test_malformed_bodies_are_400_and_other_activities_are_ignored(tmp_path, connector) -> None:
    engine = ScriptedEngine()
    async with serve(env_for(tmp_path), engine) as srebot:
        for body in (b"{not json", b"[]", b'{"text": "no type"}', b"\xff\xfe"):
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
        invoke = personal_message(connector.url, "")
        invoke.update(type="invoke", name="adaptiveCard/action", value={"action": {"type": "Action.Execute"}})
        assert await srebot.post(invoke) == 200
        await asyncio.sleep(0.1)
        assert connector.calls == [] and engine.requests == []
        assert (await srebot.client.get("/healthz")).status == 200


async def test_connector_failures_are_logged_not_raised(tmp_path, connector) -> None:
    engine = ScriptedEngine()
    async with serve(env_for(tmp_path), engine) as srebot:
        connector.fail_next(status=413, times=1, code="MessageSizeTooBig")
        assert await srebot.post(personal_message(connector.url, "diagnose checkout")) == 200
        answer = await connector.wait_for(is_card)  # the failed acknowledgement does not stop the answer
        assert connector.calls[0].status == 413
        assert "Answer to" in answer.text
