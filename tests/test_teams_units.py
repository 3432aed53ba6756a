"""The Teams activity handler on botbuilder's TestAdapter, and the Adaptive Card rendering and size limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity

from bot.answer import Answer, Finding, Link, Recommendation, ToolStatus
from bot.app import Runtime
from bot.ports import Decision
from bot.config import load_settings
from integrations.teams.adapter import Outbox
from integrations.teams.bot import TeamsBot, conversation_key, strip_bot_mention, user_of
from integrations.teams.cards import (
    CARD_BUDGET,
    MAX_PARTS,
    answer_cards,
    approval_card,
    payload_size,
)
from sessions.store import ApprovalRecord, utcnow
from tests.fakes.bot_connector import (
    ALICE,
    BOB,
    BOT_ID,
    approval_submit,
    card_text,
    channel_message,
    personal_message,
    thread_reply,
)
from tests.helpers import ScriptedEngine

SERVICE_URL = "http://connector.invalid/"


def activity(data: dict) -> Activity:
    return Activity().deserialize(data)


# --- the handler on TestAdapter ------------------------------------------------------------------
@pytest.fixture
async def runtime(tmp_path) -> AsyncIterator[Runtime]:
    rt = Runtime(load_settings(env={"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'srebot.db'}"}),
                 engine=ScriptedEngine())
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
def adapter_and_bot(runtime: Runtime) -> tuple[TestAdapter, TeamsBot]:
    bot = TeamsBot(runtime, outbox=None, ack_wait=2.0, update_interval=0)  # type: ignore[arg-type]
    adapter = TestAdapter(bot.on_turn)
    bot.outbox = Outbox(adapter, "")  # proactive sends land in the TestAdapter's buffer too
    return adapter, bot


async def test_handler_strips_the_mention_and_acknowledges_in_the_turn(adapter_and_bot, runtime) -> None:
    adapter, _ = adapter_and_bot
    await adapter.receive_activity(activity(channel_message(SERVICE_URL, "diagnose checkout")))
    # the acknowledgement was sent inside the turn, as a reply
    ack = adapter.get_next_activity()
    assert ack.text == "Looking into “diagnose checkout”…"
    assert ack.reply_to_id is not None
    await runtime.dispatcher.wait_idle()
    engine: ScriptedEngine = runtime.engine  # type: ignore[assignment]
    assert [r.text for r in engine.requests] == ["diagnose checkout"]
    answer = adapter.get_next_activity()
    assert answer.attachments[0].content_type == "application/vnd.microsoft.card.adaptive"
    assert "Answer to “diagnose checkout”" in card_text(answer.attachments[0].content)


async def test_handler_routes_a_card_value_to_the_approval_decision(adapter_and_bot, runtime, monkeypatch) -> None:
    adapter, _ = adapter_and_bot
    decided: list[tuple] = []

    async def decide(approval_id: str, user: str, decision: str, *, platform: str) -> Decision:
        decided.append((approval_id, user, decision, platform))
        return Decision(False, "You are not in the approvers list (SREBOT_APPROVERS), so you cannot approve this.")

    monkeypatch.setattr(runtime.approvals, "decide", decide)
    await adapter.receive_activity(activity(approval_submit(SERVICE_URL, "apr_123", "approve", user=BOB)))
    assert decided == [("apr_123", BOB.aad_object_id, "approve", "teams")]
    refusal = adapter.get_next_activity()
    assert refusal.text.startswith(f"<at>{BOB.name}</at> You are not in the approvers list")
    assert refusal.serialize()["entities"][0]["mentioned"]["id"] == BOB.id
    engine: ScriptedEngine = runtime.engine  # type: ignore[assignment]
    assert engine.requests == []


async def test_handler_ignores_unaddressed_channel_messages(adapter_and_bot, runtime) -> None:
    adapter, _ = adapter_and_bot
    await adapter.receive_activity(activity(channel_message(SERVICE_URL, "hello team", mention=False)))
    await adapter.receive_activity(activity(thread_reply(SERVICE_URL, "no session here", root_id="999")))
    await runtime.dispatcher.wait_idle()
    assert adapter.get_next_activity() is None
    assert runtime.engine.requests == []  # type: ignore[attr-defined]


# --- pure helpers --------------------------------------------------------------------------------
def test_mention_stripping_is_literal_and_keeps_other_mentions() -> None:
    data = channel_message(SERVICE_URL, "diagnose checkout")
    data["text"] = "<at>sre.bot (prod)</at> diagnose checkout &amp; ask <at>Bob</at>&nbsp;"
    data["entities"] = [
        {"type": "mention", "text": "<at>sre.bot (prod)</at>", "mentioned": {"id": BOT_ID, "name": "sre.bot (prod)"}},
        {"type": "mention", "text": "<at>Bob</at>", "mentioned": {"id": BOB.id, "name": "Bob"}},
    ]
    assert strip_bot_mention(activity(data)) == "diagnose checkout & ask <at>Bob</at>"


def test_conversation_key_makes_a_channel_thread_one_session() -> None:
    root = activity(channel_message(SERVICE_URL, "diagnose checkout", activity_id="1700"))
    reply = activity(thread_reply(SERVICE_URL, "and logs?", root_id="1700"))
    assert conversation_key(root) == conversation_key(reply)
    key = conversation_key(reply)
    assert key.platform == "teams" and key.workspace == "tenant-0001"
    assert key.channel == "19:incidents@thread.tacv2" and key.thread == "19:incidents@thread.tacv2;messageid=1700"
    personal = activity(personal_message(SERVICE_URL, "hi"))
    assert conversation_key(personal).channel == conversation_key(personal).thread
    assert user_of(personal) == ALICE.aad_object_id
    del personal.channel_data["tenant"]
    personal.conversation.additional_properties = {}
    assert conversation_key(personal).workspace == "default"


# --- cards ---------------------------------------------------------------------------------------
def _approval(**changes) -> ApprovalRecord:
    now = utcnow()
    values = dict(id="apr_1", kind="rollback", target="shop/checkout", params={}, description="Roll back checkout",
                  requester="aad-alice", platform="teams", status="pending", session_id=None, request_id=None,
                  created_at=now, expires_at=now + timedelta(minutes=30))
    values.update(changes)
    return ApprovalRecord(**values)


def test_approval_card_has_two_submit_actions_and_loses_them_once_decided() -> None:
    card = approval_card(_approval())
    assert card["version"] in ("1.4", "1.5")
    assert [a["data"] for a in card["actions"]] == [
        {"srebot": "approval", "decision": "approve", "approval_id": "apr_1"},
        {"srebot": "approval", "decision": "reject", "approval_id": "apr_1"},
    ]
    assert all(a["type"] == "Action.Submit" for a in card["actions"])
    text = card_text(card)
    assert "Roll back checkout" in text and "aad-alice" in text and "UTC" in text
    decided = approval_card(_approval(status="executed", decided_by="aad-bob", decided_at=utcnow(), result="ok"))
    assert "actions" not in decided and "Approved by aad-bob" in card_text(decided)


def test_answer_card_shows_findings_by_severity_and_the_rest() -> None:
    answer = Answer(
        intent="diagnose", service="checkout", namespace="shop", summary="Errors after the rollout.",
        findings=[Finding(severity="info", source="kubernetes", title="3 pods ready"),
                  Finding(severity="critical", source="metrics", title="Error rate 8.3%", evidence="sum(rate(…))")],
        recommendations=[Recommendation(title="Roll back checkout", approval_id="apr_1")],
        links=[Link(title="Grafana", url="https://grafana.example/d/abc")],
        tools=[ToolStatus(name="metrics", ok=True, ms=120), ToolStatus(name="cost", ok=False, error="not configured")],
        confidence=0.8, session_id="s_1",
    )
    [card] = answer_cards(answer)
    text = card_text(card)
    assert text.index("Critical (1)") < text.index("Error rate 8.3%") < text.index("Info (1)") < text.index("3 pods")
    for expected in ("Roll back checkout", "apr_1", "[Grafana](https://grafana.example/d/abc)", "metrics ✓ 120 ms",
                     "cost ✗ not configured", "confidence 80%", "session s_1"):
        assert expected in text


def test_oversized_answers_are_split_and_never_dropped_silently() -> None:
    findings = [Finding(severity="warning", source="logs", title=f"f{i}", evidence="e" * 3000) for i in range(20)]
    cards = answer_cards(Answer(summary="s " * 20_000, findings=findings, session_id="s_1"))
    assert 1 < len(cards) <= MAX_PARTS
    assert all(payload_size(c) <= CARD_BUDGET for c in cards)
    assert "20 more findings in the next message" in card_text(cards[0])
    assert all(f"**f{i}**" in "".join(card_text(c) for c in cards) for i in range(20))

    huge = [Finding(severity="info", source="logs", title=f"g{i}", evidence="e" * 9000) for i in range(200)]
    cards = answer_cards(Answer(summary="s", findings=huge, session_id="s_1"))
    assert len(cards) == MAX_PARTS
    assert all(payload_size(c) <= CARD_BUDGET for c in cards)
    assert "more findings and further details are not shown" in card_text(cards[-1])
