"""Approval buttons in Slack end to end: the message, four-eyes refusals, decisions, updates, expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.answer import Action, Answer, Recommendation
from sessions.store import ApprovalRecord, Proposal
from tests.fakes.slack import Call, SlackBot, SlackFake, in_thread
from tests.helpers import ScriptedEngine

REQUESTER, APPROVER, OUTSIDER = "U0ALICE", "U0BOB", "U0CAROL"


class ProposingEngine(ScriptedEngine):
    """Answers every request with a restart recommendation that needs approval."""

    def __init__(self) -> None:
        super().__init__(answer=self.propose)
        self.runtime: Any = None
        self.approvals: list[ApprovalRecord] = []

    async def propose(self, request, session) -> Answer:
        approval = await self.runtime.approvals.propose(
            Proposal("restart", "shop/checkout", {}, "Restart deployment shop/checkout (3 pods, rolling)",
                     request.origin(session.id))
        )
        self.approvals.append(approval)
        return Answer(intent="action", service="checkout", summary="checkout is stuck; a restart should help.",
                      recommendations=[Recommendation(title="Restart checkout",
                                                      action=Action(kind="restart", target="shop/checkout"),
                                                      approval_id=approval.id)],
                      session_id=session.id)


@dataclass
class Asked:
    """A request that proposed an approval, and the approval message it got."""

    bot: SlackBot
    thread: str
    message: Call
    approval: ApprovalRecord

    async def click(self, action_id: str, user: str) -> int:
        status, _ = await self.bot.click(action_id, self.approval.id, user=user, message_ts=self.message.response["ts"],
                                         thread_ts=self.thread)
        return status


def buttons(call: Call) -> list[dict]:
    return [e for b in call.args.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


async def ask(slack: SlackFake, bot: SlackBot, engine: ProposingEngine) -> Asked:
    engine.runtime = bot.runtime
    mention = slack.app_mention("<@UBOT> restart checkout", user=REQUESTER)
    await bot.event(mention)
    message = await slack.wait_for("chat.postMessage", lambda c: in_thread(mention["ts"])(c) and buttons(c))
    await bot.idle()
    return Asked(bot, mention["ts"], message, engine.approvals[0])


@pytest.fixture
async def asked(slack: SlackFake, db_file: str) -> AsyncIterator[Asked]:
    engine = ProposingEngine()
    async with SlackBot(slack, db_file, engine=engine, env={"SREBOT_APPROVERS": APPROVER}) as bot:
        yield await ask(slack, bot, engine)


def updates_of(slack: SlackFake, asked: Asked) -> list[Call]:
    return slack.calls_to("chat.update", lambda c: c.args["ts"] == asked.message.response["ts"])


def thread_posts(slack: SlackFake, asked: Asked, text: str) -> list[Call]:
    return slack.calls_to("chat.postMessage", lambda c: in_thread(asked.thread)(c) and text in c.text_blob())


async def test_approval_message_shows_what_who_until_when_and_buttons(slack: SlackFake, asked: Asked) -> None:
    approval = asked.approval
    assert [(b["action_id"], b["value"]) for b in buttons(asked.message)] == [
        ("approval_approve", approval.id), ("approval_reject", approval.id)]
    text = asked.message.text_blob()
    assert "Restart deployment shop/checkout (3 pods, rolling)" in text
    assert f"<@{REQUESTER}>" in text and f"{approval.expires_at:%H:%M} UTC" in text
    stored = await asked.bot.runtime.store.get_approval(approval.id)
    assert stored.message_ref == {"channel": "C0INCIDENT", "ts": asked.message.response["ts"], "thread_ts": asked.thread}
    # the answer itself carries the change as a button that says what it does, and approves it (after a confirm)
    answers = slack.calls_to("chat.update", lambda c: any(b["action_id"] == "approval_approve" for b in buttons(c)))
    [button] = [b for b in buttons(answers[-1]) if b["action_id"] == "approval_approve"]
    assert button["value"] == approval.id and button["text"]["text"].startswith("Restart") and button["confirm"]
    assert button["style"] == "primary"
    reject = [b for b in buttons(asked.message) if b["action_id"] == "approval_reject"][0]
    assert "style" not in reject  # the safe choice is not styled as danger


async def test_refused_clicks_get_a_private_explanation_and_change_nothing(slack: SlackFake, asked: Asked) -> None:
    updates_before = len(slack.calls_to("chat.update"))
    assert [await asked.click("approval_approve", user) for user in (REQUESTER, OUTSIDER)] == [200, 200]
    await asked.bot.idle()
    refusals = {c.args["user"]: c.args for c in slack.calls_to("chat.postEphemeral")}
    assert set(refusals) == {REQUESTER, OUTSIDER}
    assert "four eyes" in refusals[REQUESTER]["text"] and "approvers list" in refusals[OUTSIDER]["text"]
    assert refusals[REQUESTER]["thread_ts"] == asked.thread
    assert len(slack.calls_to("chat.update")) == updates_before
    assert (await asked.bot.runtime.store.get_approval(asked.approval.id)).status == "pending"


async def test_approve_updates_the_message_and_posts_the_outcome(slack: SlackFake, asked: Asked) -> None:
    assert await asked.click("approval_approve", APPROVER) == 200
    await asked.bot.idle()
    updates = updates_of(slack, asked)
    assert f"Approved by <@{APPROVER}>" in updates[0].text_blob() and not buttons(updates[0])
    final = await asked.bot.runtime.store.get_approval(asked.approval.id)
    # no executor is wired in this test: the action fails, and the thread is told
    assert final.status == "failed" and final.decided_by == APPROVER
    assert f"{final.decided_at:%H:%M} UTC" in updates[-1].text_blob() and "failed" in updates[-1].text_blob()
    assert len(thread_posts(slack, asked, "failed (approved by")) == 1
    # a second click changes nothing and says why, privately
    await asked.click("approval_approve", APPROVER)
    await asked.bot.idle()
    assert "Already failed" in slack.calls_to("chat.postEphemeral")[-1].args["text"]


async def test_reject_by_the_requester(slack: SlackFake, asked: Asked) -> None:
    await asked.click("approval_reject", REQUESTER)
    await asked.bot.idle()
    update = updates_of(slack, asked)[-1]
    assert f"Rejected by <@{REQUESTER}>" in update.text_blob() and not buttons(update)
    assert thread_posts(slack, asked, "was rejected by")
    assert (await asked.bot.runtime.store.get_approval(asked.approval.id)).status == "rejected"


async def test_expiry_updates_the_message(slack: SlackFake, db_file: str) -> None:
    engine = ProposingEngine()
    async with SlackBot(slack, db_file, engine=engine, env={"SREBOT_APPROVERS": APPROVER}) as bot:
        bot.runtime.approvals.ttl_seconds = 0
        asked = await ask(slack, bot, engine)
        assert await bot.runtime.approvals.sweep() == 1
    update = updates_of(slack, asked)[-1]
    assert "Expired" in update.text_blob() and not buttons(update)
    assert thread_posts(slack, asked, "expired without")
