"""The /sre slash command end to end: immediate ephemeral response, then work in a new thread."""

from __future__ import annotations

import asyncio

from bot.commands import HELP_TEXT
from bot.commands import parse_command as parse_sre
from sessions.store import ConversationKey
from tests.fakes.slack import SlackBot, SlackFake, in_thread
from tests.helpers import ScriptedEngine


def top_level(call) -> bool:
    return call.args.get("thread_ts") is None


async def test_help_is_the_ephemeral_response(slack: SlackFake, bot: SlackBot) -> None:
    status, body = await bot.command("help")
    assert status == 200
    assert body == {"text": HELP_TEXT, "response_type": "ephemeral"}
    await bot.idle()
    assert not slack.calls_to("chat.postMessage")


async def test_empty_unknown_or_malformed_subcommand_gets_help(bot: SlackBot) -> None:
    for text, note in (("", None), ("frobnicate checkout", "I don't know `/sre frobnicate`"),
                       ("scale checkout lots", "Usage: `/sre scale <service> <replicas>`"),
                       ("diagnose", "Usage: `/sre diagnose <service>`")):
        status, body = await bot.command(text)
        assert status == 200 and body["response_type"] == "ephemeral"
        assert body["text"].endswith(HELP_TEXT)
        if note:
            assert body["text"].startswith(note)


def test_parse_sre_subcommands() -> None:
    assert parse_sre("Diagnose checkout").text == "diagnose checkout"
    assert parse_sre("cost").text == "cost" and parse_sre("cost checkout 30d").text == "cost checkout 30d"
    assert parse_sre("scale checkout 5").text == "scale checkout 5"
    assert parse_sre("restart").name == "help"
    assert parse_sre("ack incident 42").text == "ack incident 42"
    for word in ("status", "incidents", "cancel"):
        assert parse_sre(word).name == word


async def test_diagnose_posts_a_top_level_message_and_answers_in_its_thread(slack: SlackFake, bot: SlackBot) -> None:
    status, body = await bot.command("diagnose checkout", user="U0ALICE")
    assert status == 200
    assert body["text"] == "On it: diagnose checkout…" and body["response_type"] == "ephemeral"
    asked = await slack.wait_for("chat.postMessage", top_level)
    assert asked.args["channel"] == "C0INCIDENT"
    assert asked.args["text"] == "<@U0ALICE> asked: diagnose checkout"
    thread = asked.response["ts"]
    placeholder = await slack.wait_for("chat.postMessage", in_thread(thread))
    assert "Looking into checkout" in placeholder.args["text"]
    answer = await slack.wait_for("chat.update", lambda c: c.args["ts"] == placeholder.response["ts"]
                                  and c.args["blocks"][0]["type"] == "header")
    assert answer.args["channel"] == "C0INCIDENT"
    await bot.idle()
    session = await bot.runtime.store.find_session_id(ConversationKey("slack", slack.team_id, "C0INCIDENT", thread))
    assert session is not None
    assert [t.user_id for t in await bot.runtime.store.recent_turns(session)] == ["U0ALICE"]


async def test_cancel_stops_the_running_slash_request(slack: SlackFake, db_file: str) -> None:
    engine = ScriptedEngine(delay=60)
    async with SlackBot(slack, db_file, engine=engine) as bot:
        _, nothing = await bot.command("cancel")
        assert nothing["text"] == (
            "Nothing started with /sre in this channel is running on this replica; "
            "type `cancel` in the request's thread instead."
        )
        await bot.command("diagnose checkout")
        asked = await slack.wait_for("chat.postMessage", top_level)
        thread = asked.response["ts"]
        await asyncio.wait_for(engine.started.wait(), 5)
        placeholder = await slack.wait_for("chat.postMessage", in_thread(thread))
        status, body = await bot.command("cancel", user="U0BOB")
        assert status == 200 and body["text"] == "Cancelling “diagnose checkout”…"
        await slack.wait_for("chat.postMessage", lambda c: in_thread(thread)(c) and "Cancelling" in c.args["text"])
        cancelled = await slack.wait_for("chat.update", lambda c: c.args["ts"] == placeholder.response["ts"]
                                         and "Cancelled" in c.text_blob())
        assert "⏹" in cancelled.args["blocks"][0]["text"]["text"]
        await bot.idle()
        assert engine.finished.is_set()
        turn = await bot.runtime.store.get_turn(engine.requests[0].request_id)
        assert turn is not None and turn.status == "cancelled"


async def test_status_is_answered_privately(slack: SlackFake, db_file: str) -> None:
    gate = asyncio.Event()
    engine = ScriptedEngine(gate=gate)
    async with SlackBot(slack, db_file, engine=engine) as bot:
        await bot.command("diagnose checkout")
        await asyncio.wait_for(engine.started.wait(), 5)
        status, body = await bot.command("status", user="U0BOB")
        assert status == 200 and body["response_type"] == "ephemeral"
        private = await slack.wait_for("chat.postEphemeral")
        assert private.args["user"] == "U0BOB" and private.args["channel"] == "C0INCIDENT"
        assert "1 in flight" in private.text_blob() and "diagnose checkout" in private.text_blob()
        gate.set()
        await bot.idle()


async def test_a_channel_the_bot_cannot_post_in_is_explained(slack: SlackFake, bot: SlackBot) -> None:
    slack.fail("chat.postMessage", "not_in_channel")
    status, body = await bot.command("diagnose checkout")
    assert status == 200 and body["text"].startswith("On it")
    await bot.idle()
    assert any("could not post in this channel" in r.get("text", "") for r in slack.responses)
    assert await bot.runtime.store.active_turns() == []
