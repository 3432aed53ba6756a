"""No Python exception text in chat: an exception with a distinctive message, fed through each path that used to
quote it (the database failing a request, an approved action raising, the model answering with an error), ends up
in the log under its request id, while the Slack and Teams payloads say what failed in words."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.approvals import Approvals
from bot.actions import REGISTRY
from bot.policy import Policy
from bot.wording import database_reason, database_trouble
from integrations.slack import blocks
from integrations.teams import cards
from sessions.store import ConversationKey, DatabaseError, Origin, Proposal, Store
from tests.fakes.bot_connector import BotConnectorFake, personal_message
from tests.fakes.slack import SlackBot, SlackFake, in_thread
from tests.helpers import ScriptedEngine
from tests.test_teams import local_env, serve

MARKER = "xyzzy-41f7-distinctive"
PYTHON = ("Traceback", "Error:", "Exception", "OSError", "TimeoutError", "RuntimeError", MARKER)


def assert_no_python(payload: object) -> None:
    text = json.dumps(payload, ensure_ascii=False, default=str)
    found = [word for word in PYTHON if word in text]
    assert not found, f"{found} in {text[:600]}"


def logged_with(caplog: pytest.LogCaptureFixture, *needles: str) -> bool:
    """Some log record carries all of `needles` (in its message, its extras or its exception)."""
    for record in caplog.records:
        text = record.getMessage() + " " + json.dumps({k: str(v) for k, v in vars(record).items()})
        if record.exc_info:
            text += " " + logging.Formatter().formatException(record.exc_info)
        if all(n in text for n in needles):
            return True
    return False


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (TimeoutError(MARKER), "timed out"),
        (ConnectionRefusedError(111, MARKER), "connection refused"),
        (RuntimeError(MARKER), "it did not answer"),
    ],
    ids=["timeout", "refused", "other"],
)
def test_database_trouble_says_what_failed_in_words(cause: BaseException, reason: str) -> None:
    error = DatabaseError(cause)
    assert MARKER in str(error)  # the exception keeps its detail for the log
    assert database_reason(error) == reason
    told = database_trouble("take this request", error)
    assert told == (f"I could not take this request: I could not reach my database ({reason}) — "
                    "`srebot check` shows each backend's state. Ask again in a minute.")
    assert_no_python(told)


async def test_the_database_failing_a_request_is_logged_not_posted_in_slack(
    slack: SlackFake, db_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    engine = ScriptedEngine(error=DatabaseError(TimeoutError(MARKER)))
    async with SlackBot(slack, db_file, engine=engine) as bot:
        mention = slack.app_mention("<@UBOT> diagnose checkout")
        await bot.event(mention)
        told = await slack.wait_for("chat.update", lambda c: "my database" in c.text_blob())
        await bot.idle()
    request_id = engine.requests[0].request_id
    assert "I could not reach my database (timed out)" in told.text_blob() and request_id in told.text_blob()
    for call in slack.calls_to("chat.postMessage", in_thread(mention["ts"])) + slack.calls_to("chat.update"):
        assert_no_python(call.args)
    assert logged_with(caplog, MARKER, request_id)


async def test_the_database_failing_a_request_is_logged_not_posted_in_teams(
    db_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    engine = ScriptedEngine(error=DatabaseError(ConnectionRefusedError(111, MARKER)))
    async with BotConnectorFake() as connector, serve(local_env(db_file, connector.url), engine=engine) as bot:
        assert await bot.post(personal_message(connector.url, "diagnose checkout")) in (200, 201, 202)
        await connector.wait_for(lambda c: "my database" in json.dumps(c.body or {}, ensure_ascii=False))
        sent = [call.body for call in connector.calls]
    request_id = engine.requests[0].request_id
    assert any("I could not reach my database (connection refused)" in json.dumps(body, ensure_ascii=False)
               for body in sent)
    assert_no_python(sent)
    assert logged_with(caplog, MARKER, request_id)


async def test_an_approved_action_that_raises_is_logged_not_posted(
    db_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    async def explode(_approval: object) -> str:
        raise RuntimeError(MARKER)

    store = Store(db_file)
    await store.upgrade()
    try:
        approvals = Approvals(store, explode, policy=Policy(None, approvers=["U0BOB"], kinds=REGISTRY), ttl_seconds=600,
                              notifiers={})
        session = await store.session_id_for(ConversationKey("slack", "T1", "C1", "1.0"))
        pending = await approvals.propose(Proposal(
            "restart", "shop/checkout", {}, "restart 3 pods of shop/checkout",
            Origin("U0ALICE", "slack", session, "req_0123456789abcdef01234567")))
        decision = await approvals.decide(pending.id, "U0BOB", "approve", platform="slack")
    finally:
        await store.close()
    final = decision.approval
    assert final is not None and final.status == "failed"
    assert f"in srebot's log under approval {final.id}" in (final.result or "")
    assert_no_python([decision.message, final.result])
    assert_no_python([blocks.approval_decided(final).kwargs(), blocks.approval_outcome(final)])
    assert_no_python([cards.approval_card(final), cards.approval_outcome(final)])
    assert logged_with(caplog, MARKER, final.id, "req_0123456789abcdef01234567")
