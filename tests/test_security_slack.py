"""Who may do what, through the real Slack endpoint: signed requests to the real Bolt app, the real engine and
tools against the Kubernetes fake, the loopback Slack; hostile and malformed input included.

The policy of a TOML file (README, Security): a listed channel where anyone proposes and a Slack user group
approves scaling; a channel not listed is read-only; a channel where only a group may ask. Slack Connect people
(a shared channel, another team) read answers and never propose or approve. Every refusal is private, every
audit row says where and how. Malformed signed payloads get 400; Socket Mode starts without a signing secret.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import aiohttp
import pytest

from bot.approvals import NotAllowed
from bot.policy import EXTERNAL_REFUSAL
from bot.wording import NOT_TOLD_PRIVATELY
from integrations.slack import start_socket_mode
from tests.fakes.slack import in_thread, signed_headers
from tests.test_approvals_slack import (  # noqa: F401 - the `world` fixture
    BOB,
    CHANNEL,
    REQUESTER,
    SCALE,
    World,
    buttons,
    propose,
    srebot_cli,
    world,
)

DAVE = "U0DAVE"  # in the SRE user group
SRE_GROUP = "S0SRE"
RANDOM = "C0RANDOM"  # not listed: read-only
OPS = "C0OPS"  # only the SRE group may ask

POLICY = f"""
[policy.channels.{CHANNEL}]
propose = ["*"]
[policy.channels.{CHANNEL}.kinds.scale]
approve = ["{SRE_GROUP}"]

[policy.channels.{OPS}]
ask = ["{SRE_GROUP}"]
propose = ["{SRE_GROUP}"]
"""


def policy_file(world: World, text: str = POLICY) -> str:
    path = Path(world.tmp_path) / "srebot.toml"
    path.write_text(text)
    return str(path)


def thread_text(world: World, thread_ts: str) -> str:
    """Everything the bot said in a thread: its posts and the updates of those posts."""
    posts = world.slack.calls_to("chat.postMessage", in_thread(thread_ts))
    stamps = {p.response.get("ts") for p in posts}
    updates = world.slack.calls_to("chat.update", lambda c: c.args.get("ts") in stamps)
    return "\n".join(c.text_blob() for c in posts + updates)


def ephemerals(world: World, user: str) -> list[str]:
    return [c.args.get("text", "") for c in world.slack.calls_to("chat.postEphemeral", lambda c: c.args.get("user") == user)]


async def test_the_policy_decides_per_channel_and_kind_and_resolves_user_groups(world: World) -> None:
    world.slack.user_groups[SRE_GROUP] = [DAVE]
    bot = await world.bot(SREBOT_CONFIG=policy_file(world))

    # a listed channel: anyone proposes; scaling is approved by the SRE group only, not SREBOT_APPROVERS
    proposed = await propose(world, bot, SCALE)
    await proposed.click("approval_approve", BOB)
    await bot.idle()
    assert any("approvers list for a scale" in text for text in ephemerals(world, BOB))
    assert (await proposed.row()).status == "pending" and world.scale_patches() == []
    await proposed.click("approval_approve", DAVE)
    await bot.idle()
    assert (await proposed.row()).status == "executed" and len(world.scale_patches()) == 1

    # the group was asked once (cached) for the two decisions that needed it
    assert len(world.slack.calls_to("usergroups.users.list")) == 1

    # the audit says where and how each decision was made
    rows = [r for r in await bot.runtime.store.audit_log() if r.approval_id == proposed.approval.id]
    assert [(r.event, r.actor, r.platform, r.workspace, r.channel, r.via) for r in rows] == [
        ("proposed", REQUESTER, "slack", world.slack.team_id, CHANNEL, "command"),
        ("refused", BOB, "slack", world.slack.team_id, CHANNEL, "button"),
        ("approved", DAVE, "slack", world.slack.team_id, CHANNEL, "button"),
        ("executed", DAVE, "slack", world.slack.team_id, CHANNEL, "button"),
    ]

    # a channel not listed is read-only: the proposal is refused, why is told only to the person who asked (an
    # ephemeral message in the thread), the thread says no more than that; nothing can be clicked
    before = len(await bot.runtime.store.approvals())
    status, _ = await bot.command(SCALE, user=REQUESTER, channel=RANDOM)
    assert status == 200
    await bot.idle()
    answer = await world.slack.wait_for("chat.update", lambda c: c.args.get("channel") == RANDOM
                                        and NotAllowed.PUBLIC in c.text_blob())
    assert not buttons(answer) and len(await bot.runtime.store.approvals()) == before
    # a refusal is no failure of the bot: its header says what happened, not "Could not answer"
    assert "🚫 Not allowed here" in answer.text_blob() and "Could not answer" not in answer.text_blob()
    asked = world.slack.calls_to("chat.postMessage", lambda c: c.args.get("channel") == RANDOM and "asked" in c.text_blob())
    thread = asked[0].response["ts"]
    assert "read-only" not in thread_text(world, thread)
    [private] = world.slack.calls_to("chat.postEphemeral", lambda c: "read-only" in c.args.get("text", ""))
    assert (private.args["user"], private.args["channel"], private.args.get("thread_ts")) == (REQUESTER, RANDOM, thread)
    assert not world.slack.calls_to("chat.postMessage", lambda c: c.args.get("channel") == RANDOM and bool(buttons(c)))
    # ... but it still answers questions there
    mention = world.slack.app_mention("<@UBOT> logs checkout", channel=RANDOM)
    await bot.event(mention)
    await world.slack.wait_for("chat.postMessage", in_thread(mention["ts"]), timeout=10)


async def test_who_may_ask_is_refused_privately_and_nothing_is_posted(world: World) -> None:
    world.slack.user_groups[SRE_GROUP] = [DAVE]
    bot = await world.bot(SREBOT_CONFIG=policy_file(world))
    mention = world.slack.app_mention("<@UBOT> diagnose checkout", channel=OPS, user=REQUESTER)
    assert (await bot.event(mention))[0] == 200
    await bot.idle()
    [refusal] = ephemerals(world, REQUESTER)
    assert "You may not ask srebot here" in refusal
    assert not world.slack.calls_to("chat.postMessage", in_thread(mention["ts"]))
    # a member of the group is answered
    allowed = world.slack.app_mention("<@UBOT> logs checkout", channel=OPS, user=DAVE)
    await bot.event(allowed)
    await world.slack.wait_for("chat.postMessage", in_thread(allowed["ts"]), timeout=10)


async def test_slack_connect_people_read_answers_but_never_propose_or_approve(world: World) -> None:
    bot = await world.bot()  # no [policy]: the pre-policy behaviour, where anyone else may propose

    # a mention in a channel shared with another organisation: answered, the action is not proposed, and why is
    # told to that person alone (ephemeral, in the thread)
    mention = world.slack.app_mention("<@UBOT> scale checkout 5", user="U0EXT")
    payload = world.slack.event_payload(mention)
    payload["is_ext_shared_channel"] = True
    assert (await bot.send(json.dumps(payload)))[0] == 200
    await bot.idle()
    said = thread_text(world, mention["ts"])
    assert NotAllowed.PUBLIC in said and "another organisation" not in said
    private = world.slack.calls_to("chat.postEphemeral", lambda c: c.args.get("user") == "U0EXT")
    assert [(c.args["text"], c.args["channel"], c.args.get("thread_ts")) for c in private] == [
        (EXTERNAL_REFUSAL, CHANNEL, mention["ts"])]
    assert await bot.runtime.store.approvals() == []

    # where Slack refuses the ephemeral message, the person is mentioned in the thread, without the reason
    world.slack.fail("chat.postEphemeral", "user_not_in_channel")
    unreachable = world.slack.app_mention("<@UBOT> scale checkout 5", user="U0EXT2")
    payload = world.slack.event_payload(unreachable)
    payload["is_ext_shared_channel"] = True
    assert (await bot.send(json.dumps(payload)))[0] == 200
    await bot.idle()
    said = thread_text(world, unreachable["ts"])
    assert "<@U0EXT2>" in said and NOT_TOLD_PRIVATELY in said and "another organisation" not in said

    # a user of another team in a channel of ours: same
    foreign = world.slack.app_mention("<@UBOT> scale checkout 5", user="U0GUEST")
    foreign["user_team"] = "T0OTHERORG"
    await bot.event(foreign)
    await bot.idle()
    assert "another organisation" not in thread_text(world, foreign["ts"])
    assert ephemerals(world, "U0GUEST") == [EXTERNAL_REFUSAL]
    assert await bot.runtime.store.approvals() == []
    assert not world.slack.calls_to("chat.postMessage", lambda c: bool(buttons(c)))

    # an approval proposed by one of ours cannot be approved by a click from another team, even one claiming
    # an approver's id
    proposed = await propose(world, bot, SCALE)
    body = world.slack.block_actions("approval_approve", proposed.approval.id, user=BOB,
                                     message_ts=proposed.message.response["ts"], thread_ts=proposed.thread)
    payload = json.loads(parse_qs(body)["payload"][0])
    payload["user"]["team_id"] = "T0OTHERORG"
    assert (await bot.send(urlencode({"payload": json.dumps(payload)})))[0] == 200
    await bot.idle()
    assert EXTERNAL_REFUSAL in ephemerals(world, BOB)
    assert (await proposed.row()).status == "pending" and world.scale_patches() == []
    refused = [r for r in await bot.runtime.store.audit_log() if r.event == "refused"]
    assert refused and refused[-1].actor == BOB and refused[-1].via == "button"


@pytest.mark.integration  # `srebot approve` in child processes
async def test_a_cli_decision_names_its_operator_and_obeys_the_same_policy(world: World) -> None:
    world.slack.user_groups[SRE_GROUP] = [DAVE]
    config = policy_file(world)
    bot = await world.bot(SREBOT_CONFIG=config)
    proposed = await propose(world, bot, SCALE)
    code, _, err = await srebot_cli(world, "approve", proposed.approval.id)  # no --user: refused by the parser
    assert code == 2 and "--user" in err
    code, _, err = await srebot_cli(world, "--config", config, "approve", proposed.approval.id, "--user", BOB)
    assert code == 1 and "approvers list for a scale" in err and world.scale_patches() == []
    code, out, err = await srebot_cli(world, "--config", config, "approve", proposed.approval.id, "--user", DAVE)
    assert code == 0, err
    assert f"Approved by {DAVE} (via CLI)" in out and len(world.scale_patches()) == 1
    await proposed.wait_in_thread(f"done (approved by <@{DAVE}> (via CLI))")
    rows = [r for r in await bot.runtime.store.audit_log() if r.approval_id == proposed.approval.id]
    assert [(r.event, r.actor, r.platform, r.via) for r in rows[-2:]] == [
        ("approved", DAVE, "cli", "cli"), ("executed", DAVE, "cli", "cli")]


@pytest.mark.parametrize(
    "hostile",
    [
        {"actions": "nope"},
        {"actions": ["nope"]},
        {"actions": [{"action_id": 5, "value": "x"}]},
        {"user": "U0BOB"},
        {"user": {"id": ["U0BOB"]}},
        {"channel": "C0INCIDENT"},
        {"container": "x", "channel": None},
        {"message": "x"},
    ],
)
async def test_malformed_signed_interactivity_is_a_400_and_leaves_no_failed_task(
    world: World, hostile: dict, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await world.bot()
    body = world.slack.block_actions("approval_approve", "apr_x", user=BOB)
    payload = json.loads(parse_qs(body)["payload"][0])
    payload.update(hostile)
    with caplog.at_level(logging.ERROR):
        status, text = await bot.send(urlencode({"payload": json.dumps(payload)}))
        await bot.idle()
    assert status == 400, text
    assert not [r for r in caplog.records if r.name in ("asyncio", "srebot.slack") and r.levelno >= logging.ERROR]
    # the bot goes on: a well-formed request after it is answered
    mention = world.slack.app_mention("<@UBOT> logs checkout")
    assert (await bot.event(mention))[0] == 200
    await world.slack.wait_for("chat.postMessage", in_thread(mention["ts"]), timeout=10)


async def test_malformed_signed_events_are_a_400(world: World) -> None:
    bot = await world.bot()
    for bad in ({"user": 5}, {"channel": {"id": "C1"}}, {"text": ["x"]}):
        event = {**world.slack.app_mention("<@UBOT> logs checkout"), **bad}
        assert (await bot.event(event))[0] == 400
    payload = world.slack.event_payload(world.slack.app_mention("<@UBOT> hi"))
    payload["event"] = "nope"
    assert (await bot.send(json.dumps(payload)))[0] == 400


async def test_socket_mode_starts_without_a_signing_secret_and_http_is_refused(world: World) -> None:
    slack = world.slack
    bot = await world.bot(SLACK_APP_TOKEN=slack.app_token, SLACK_SIGNING_SECRET="")
    handler = await start_socket_mode(bot.app, bot.runtime)
    try:
        await slack.wait_for_socket()
        mention = slack.app_mention("<@UBOT> logs checkout")
        await slack.wait_for_ack(await slack.send_envelope(slack.event_payload(mention)))
        await slack.wait_for("chat.postMessage", in_thread(mention["ts"]), timeout=10)
        # over HTTP nothing can be verified: every request is refused, also one "signed" with an empty secret
        body = slack.event_body(slack.app_mention("<@UBOT> restart checkout"))
        assert (await bot.send(body))[0] == 401
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{bot.url}/slack/events", data=body.encode(),
                                    headers=signed_headers(body, "")) as response:
                assert response.status == 401
        await bot.idle()
        assert await bot.runtime.store.approvals() == []
    finally:
        await handler.close_async()
