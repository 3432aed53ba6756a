"""Slack events end to end: the real srebot app and Bolt stack against the fake Slack Web API."""

from __future__ import annotations

import asyncio
import json
import time

from sessions.store import ConversationKey
from tests.fakes.slack import SlackBot, SlackFake, dropped, in_thread, metric
from tests.helpers import ScriptedEngine


def _key(slack: SlackFake, thread: str, channel: str = "C0INCIDENT") -> ConversationKey:
    return ConversationKey("slack", slack.team_id, channel, thread)


async def test_mention_gets_placeholder_then_answer_in_its_thread(slack: SlackFake, bot: SlackBot) -> None:
    mention = slack.app_mention("<@UBOT> diagnose checkout")
    sent = time.monotonic()
    status, _ = await bot.event(mention)
    assert status == 200
    placeholder = await slack.wait_for("chat.postMessage", in_thread(mention["ts"]))
    assert placeholder.at - sent < 1.0  # DESIGN 3.5: the placeholder within a second
    assert placeholder.args["channel"] == "C0INCIDENT"
    assert "Looking into checkout" in placeholder.args["text"]
    placeholder_ts = placeholder.response["ts"]
    answer = await slack.wait_for("chat.update", lambda c: c.args["ts"] == placeholder_ts and "blocks" in c.args
                                  and c.args["blocks"][0]["type"] == "header")
    assert "No backend is configured" in answer.text_blob()
    assert "<@UBOT>" not in json.dumps(answer.args)
    # the session is the thread of the mention
    await bot.idle()
    assert await bot.runtime.store.find_session_id(_key(slack, mention["ts"])) is not None
    assert slack.calls_to("auth.test")  # asked once, at startup


async def test_mention_inside_a_thread_answers_in_that_thread(slack: SlackFake, bot: SlackBot) -> None:
    root = slack.next_ts()
    mention = slack.app_mention("<@UBOT> status of checkout?", thread_ts=root)
    await bot.event(mention)
    await slack.wait_for("chat.postMessage", in_thread(root))
    await bot.idle()
    assert not slack.calls_to("chat.postMessage", in_thread(mention["ts"]))


async def test_follow_up_in_a_session_thread_needs_no_mention(slack: SlackFake, bot: SlackBot) -> None:
    mention = slack.app_mention("<@UBOT> diagnose checkout")
    await bot.event(mention)
    await bot.idle()
    before = len(slack.calls_to("chat.postMessage", in_thread(mention["ts"])))
    await bot.event(slack.message("and its logs?", thread_ts=mention["ts"]))
    await slack.wait_for_count("chat.postMessage", before + 1, in_thread(mention["ts"]))
    await bot.idle()
    turns = await bot.runtime.store.recent_turns(await bot.runtime.store.find_session_id(_key(slack, mention["ts"])))
    assert [t.text for t in turns] == ["diagnose checkout", "and its logs?"]


async def test_chatter_and_unknown_threads_are_ignored(slack: SlackFake, bot: SlackBot) -> None:
    ignored = dropped("ignored")
    await bot.event(slack.message("lunch anyone?"))  # top level, no mention
    await bot.event(slack.message("+1", thread_ts=slack.next_ts()))  # a thread the bot is not in
    await bot.event({"type": "reaction_added", "user": "U0ALICE", "reaction": "eyes", "item": {}, "event_ts": "1.0"})
    await bot.idle()
    assert not slack.calls_to("chat.postMessage")
    assert dropped("ignored") - ignored == 3


async def test_direct_message_is_always_handled(slack: SlackFake, bot: SlackBot) -> None:
    """In a DM (an assistant thread) the thread shows a status while the work runs, the steps stream as a plan,
    and the answer follows in the thread."""
    dm = slack.message("diagnose checkout", channel="D0ALICE", channel_type="im")
    await bot.event(dm)
    status = await slack.wait_for("assistant.threads.setStatus", lambda c: c.args["channel_id"] == "D0ALICE")
    assert status.args["thread_ts"] == dm["ts"] and status.args["status"] and status.args["loading_messages"]
    answer = await slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == "D0ALICE")
    assert answer.args["thread_ts"] == dm["ts"] and "checkout" in answer.args["blocks"][0]["text"]["text"]
    stream = slack.calls_to("chat.startStream")
    assert stream and stream[0].args["channel"] == "D0ALICE" and stream[0].args["thread_ts"] == dm["ts"]
    assert stream[0].args["task_display_mode"] == "plan"
    assert slack.calls_to("chat.stopStream") and not slack.calls_to("chat.update")


async def test_direct_message_falls_back_to_a_placeholder_without_the_assistant_surface(
    slack: SlackFake, bot: SlackBot
) -> None:
    slack.fail("assistant.threads.setStatus", "not_allowed_token_type")
    dm = slack.message("diagnose checkout", channel="D0ALICE", channel_type="im")
    await bot.event(dm)
    placeholder = await slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == "D0ALICE")
    assert placeholder.args["thread_ts"] == dm["ts"]
    answer = await slack.wait_for("chat.update", lambda c: c.args["channel"] == "D0ALICE"
                                  and c.args["blocks"][0]["type"] == "header")
    assert answer.args["ts"] == placeholder.response["ts"] and "checkout" in answer.args["blocks"][0]["text"]["text"]
    assert not slack.calls_to("chat.startStream")


async def test_bot_messages_and_edits_are_ignored(slack: SlackFake, bot: SlackBot) -> None:
    own = slack.message("Looking into checkout…", channel="D0ALICE", channel_type="im", user="UBOT", bot_id="BBOT")
    other_bot = slack.message("deploy finished", channel="D0ALICE", channel_type="im", user=None,
                              subtype="bot_message", bot_id="B0CI")
    own_user = slack.message("<@UBOT> hi", channel="D0ALICE", channel_type="im", user="UBOT")
    edited = slack.message("", channel="D0ALICE", channel_type="im", subtype="message_changed")
    deleted = slack.message("", channel="D0ALICE", channel_type="im", user=None, subtype="message_deleted")
    for event in (own, other_bot, own_user, edited, deleted):
        status, _ = await bot.event(event)
        assert status == 200
    await bot.idle()
    assert not slack.calls_to("chat.postMessage")


async def test_retries_are_acked_and_dropped_once_handled(slack: SlackFake, bot: SlackBot) -> None:
    mention = slack.app_mention("<@UBOT> diagnose checkout")
    await bot.event(mention, event_id="Ev0FIRST")
    await bot.idle()
    handled = len(slack.calls_to("chat.postMessage"))
    duplicates = dropped("duplicate")
    status, _ = await bot.event(mention, event_id="Ev0FIRST", retry_num=1)
    assert status == 200
    await bot.idle()
    assert len(slack.calls_to("chat.postMessage")) == handled  # not processed again
    assert dropped("duplicate") - duplicates >= 1


async def test_a_retry_whose_first_delivery_was_lost_is_handled(slack: SlackFake, bot: SlackBot) -> None:
    mention = slack.app_mention("<@UBOT> diagnose checkout")
    status, _ = await bot.event(mention, event_id="Ev0LOST", retry_num=1)
    assert status == 200
    await slack.wait_for("chat.postMessage", in_thread(mention["ts"]))


async def test_duplicate_event_id_is_dropped_also_after_a_restart(slack: SlackFake, db_file: str) -> None:
    mention = slack.app_mention("<@UBOT> diagnose checkout")
    duplicates = dropped("duplicate")
    async with SlackBot(slack, db_file) as first:
        await first.event(mention, event_id="Ev0DUP")
        await first.idle()
        await first.event(mention, event_id="Ev0DUP")
        await first.idle()
    assert len(slack.calls_to("chat.postMessage", in_thread(mention["ts"]))) == 1
    async with SlackBot(slack, db_file) as second:  # a new process on the same database
        status, _ = await second.event(mention, event_id="Ev0DUP")
        assert status == 200
        await second.idle()
    assert len(slack.calls_to("chat.postMessage", in_thread(mention["ts"]))) == 1
    assert dropped("duplicate") - duplicates == 2


async def test_mention_delivered_as_app_mention_and_message_is_handled_once(slack: SlackFake, bot: SlackBot) -> None:
    ts = slack.next_ts()
    text = "<@UBOT> diagnose checkout"
    await asyncio.gather(
        bot.event(slack.app_mention(text, ts=ts)),
        bot.event(slack.message(text, ts=ts)),
    )
    await bot.idle()
    assert len(slack.calls_to("chat.postMessage", in_thread(ts))) == 1
    assert len(await bot.runtime.store.recent_turns(await bot.runtime.store.find_session_id(_key(slack, ts)))) == 1


async def test_bad_or_stale_signature_is_401_and_nothing_happens(slack: SlackFake, bot: SlackBot) -> None:
    mention = slack.app_mention("<@UBOT> diagnose checkout")
    status, _ = await bot.event(mention, secret="not-the-secret")
    assert status == 401
    status, _ = await bot.event(mention, timestamp=int(time.time()) - 600)
    assert status == 401
    body = slack.event_body(mention)
    status, _ = await bot.send(body, timestamp=int(time.time()) - 600)
    assert status == 401
    await bot.idle()
    assert not slack.calls_to("chat.postMessage")
    assert await bot.runtime.store.find_session_id(_key(slack, mention["ts"])) is None


async def test_malformed_bodies_are_400(slack: SlackFake, bot: SlackBot) -> None:
    assert (await bot.send("{not json", content_type="application/json"))[0] == 400
    assert (await bot.send("payload=%7Bbroken", content_type="application/x-www-form-urlencoded"))[0] == 400
    assert (await bot.send("hello=world"))[0] == 400
    assert (await bot.send("[1, 2]", content_type="application/json"))[0] == 400
    await bot.idle()
    assert not slack.calls_to("chat.postMessage")


async def test_url_verification_answers_the_challenge(bot: SlackBot) -> None:
    status, body = await bot.send(json.dumps({"token": "t", "challenge": "c-123", "type": "url_verification"}))
    assert status == 200 and "c-123" in body


async def test_ack_comes_before_the_engine_finishes(slack: SlackFake, db_file: str) -> None:
    gate = asyncio.Event()
    engine = ScriptedEngine(gate=gate)
    async with SlackBot(slack, db_file, engine=engine) as bot:
        mention = slack.app_mention("<@UBOT> diagnose checkout")
        status, _ = await bot.event(mention)
        assert status == 200 and not engine.finished.is_set()
        await asyncio.wait_for(engine.started.wait(), 5)
        # the placeholder is up while the engine works
        await slack.wait_for("chat.postMessage", in_thread(mention["ts"]))
        status, body = await bot.command("diagnose payments")
        assert status == 200 and "On it" in body["text"] and not engine.finished.is_set()
        gate.set()
        await slack.wait_for("chat.update", lambda c: "Answer to “diagnose checkout”" in c.text_blob())
        await bot.idle()
    assert metric("srebot_ack_latency_seconds_count", platform="slack") > 0


async def test_engine_failure_is_posted_with_the_request_id(slack: SlackFake, db_file: str) -> None:
    engine = ScriptedEngine(error=RuntimeError("boom"))
    async with SlackBot(slack, db_file, engine=engine) as bot:
        mention = slack.app_mention("<@UBOT> diagnose checkout")
        await bot.event(mention)
        placeholder = await slack.wait_for("chat.postMessage", in_thread(mention["ts"]))
        failure = await slack.wait_for("chat.update", lambda c: "Something went wrong" in c.text_blob())
        assert failure.args["ts"] == placeholder.response["ts"]
        request_id = engine.requests[0].request_id
        assert request_id in failure.text_blob()
        assert failure.args["blocks"][0]["text"]["text"].startswith("⚠️ Could not answer: Something went wrong")
        assert "RuntimeError" not in failure.text_blob() and "boom" not in failure.text_blob()  # that is in the log


async def test_progress_updates_are_coalesced(slack: SlackFake, db_file: str) -> None:
    steps = tuple(f"step {i}" for i in range(1, 11))
    engine = ScriptedEngine(steps=steps, delay=1.5)
    async with SlackBot(slack, db_file, engine=engine) as bot:
        mention = slack.app_mention("<@UBOT> diagnose checkout")
        await bot.event(mention)
        placeholder = await slack.wait_for("chat.postMessage", in_thread(mention["ts"]))
        await bot.idle()
    updates = slack.calls_to("chat.update", lambda c: c.args["ts"] == placeholder.response["ts"])
    assert [u.args["text"] for u in updates[:-1]] == ["step 10"]  # the last one wins, once
    assert updates[-1].args["blocks"][0]["type"] == "header"  # then the answer replaces it
    assert updates[0].at - placeholder.at >= 0.9


async def test_events_received_are_counted(slack: SlackFake, bot: SlackBot) -> None:
    before = metric("srebot_events_received_total", platform="slack", kind="app_mention")
    await bot.event(slack.app_mention("<@UBOT> help"))
    await bot.idle()
    assert metric("srebot_events_received_total", platform="slack", kind="app_mention") - before == 1


async def test_the_engine_gets_the_text_as_typed(slack: SlackFake, db_file: str) -> None:
    engine = ScriptedEngine()
    async with SlackBot(slack, db_file, engine=engine) as bot:
        await bot.event(slack.app_mention("<@UBOT>   promql: rate(x[5m]) &gt; 0 for <https://shop.example|shop.example>"))
        await bot.event(slack.app_mention("<@UBOT>"))
        await bot.idle()
    assert sorted(r.text for r in engine.requests) == ["help", "promql: rate(x[5m]) > 0 for shop.example"]
    assert {r.user for r in engine.requests} == {"U0ALICE"}


async def test_work_handed_off_by_a_burst_waits_for_the_bursts_acks() -> None:
    """Claims and placeholders of a burst's first events run after the later events' acks, not between
    them (Slack's wait for an ack would otherwise grow with the burst); a stream that never pauses does
    not hold them back for more than a moment."""
    from integrations.slack.intake import AcksFirst

    order: list[str] = []

    async def acks(first: AcksFirst, count: int) -> None:
        for index in range(count):
            with first.acking():
                order.append(f"ack {index}")
            await asyncio.sleep(0.001)

    async def handed_off(first: AcksFirst) -> None:
        await first.wait()
        order.append("work")

    burst = AcksFirst(quiet=0.2, most=5.0)
    with burst.acking():
        order.append("ack first")
    await asyncio.gather(handed_off(burst), acks(burst, 10))
    assert order.index("work") == len(order) - 1  # after every ack of the burst

    order.clear()
    stream = AcksFirst(quiet=0.2, most=0.05)
    with stream.acking():
        order.append("ack first")
    await asyncio.gather(handed_off(stream), acks(stream, 400))  # 400 acks take well over 0.05 s
    assert order.index("work") < len(order) - 1  # not after the whole stream
