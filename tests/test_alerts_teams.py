"""Alert threads in a Teams channel (DESIGN 3.9): Alertmanager's payloads (written by hand here; the real Alertmanager
run is tests/test_alerts_e2e.py) posted to the srebot web app, whose routing sends the group to a Teams channel; the
loopback Bot Connector receives what Teams would: the root card as a new channel post, the investigation and the
resolved line as replies in its thread, the root card updated in place. The card's buttons are Universal Actions
pressed as Teams sends them (signed `adaptiveCard/action` invokes), and the policy decides who may press them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.policy import ALERT_THREAD, EXTERNAL_REFUSAL
from integrations.teams.alerts import ALERT_VERB
from integrations.teams.bot import LOCAL_PRESSES
from integrations.teams.cards import DECIDE_VERB
from tests.fakes.bot_connector import (
    ALICE,
    BOB,
    CHANNEL_ID,
    GUEST,
    TENANT_ID,
    BotConnectorFake,
    ConnectorCall,
    TeamsUser,
    card_action,
    personal_conversation_id,
    thread_conversation_id,
    thread_reply,
)
from tests.helpers import ScriptedEngine
from tests.test_alerts import ALERTS_BASE, TOKEN, alert, payload
from tests.test_teams import Srebot, auth_env, connector, local_env, login, serve  # noqa: F401 - fixtures

CAROL = TeamsUser("29:1carol", "Carol Example", "aad-carol")
CONFIG = ALERTS_BASE.replace("{", "{{").replace("}", "}}") + """
[[alerts.routes]]
match = {{ namespace = "shop" }}
teams_conversation = "{channel}"
teams_service_url = "{service_url}"
teams_tenant_id = "{tenant}"
"""
POLICY = f"""
[policy.channels."{CHANNEL_ID}"]
propose = ["{ALICE.aad_object_id}"]
approve = ["{BOB.aad_object_id}"]
"""


def config(tmp_path: Path, connector: BotConnectorFake, extra: str = "") -> str:
    path = tmp_path / "srebot.toml"
    path.write_text(CONFIG.format(channel=CHANNEL_ID, service_url=connector.url, tenant=TENANT_ID) + extra)
    return str(path)


async def deliver(srebot: Srebot, body: dict[str, Any]) -> int:
    """What Alertmanager's webhook receiver does."""
    response = await srebot.client.post("/alerts/alertmanager", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    return response.status


async def settle(srebot: Srebot) -> None:
    await srebot.runtime.alerts.idle()
    await srebot.runtime.dispatcher.wait_idle()


def is_root(call: ConnectorCall) -> bool:
    return call.kind == "send" and call.conversation_id == CHANNEL_ID


def buttons(call: ConnectorCall | dict[str, Any]) -> list[tuple[str, str, str]]:
    card = call.card if isinstance(call, ConnectorCall) else call
    assert card is not None
    return [(a["type"], a["title"], a.get("verb", "")) for a in card.get("actions") or []]


def press(connector: BotConnectorFake, root: ConnectorCall, button: str, user: TeamsUser) -> dict[str, Any]:
    """A press of a button of the root card, as Teams sends it (from the thread the card starts)."""
    data = {"srebot": "alert", "group_id": root.card["actions"][0]["data"]["group_id"], "button": button}  # type: ignore[index]
    return card_action(connector.url, ALERT_VERB, data, user=user, reply_to_id=root.response_id,
                       conversation_id=thread_conversation_id(root.response_id or ""))


async def test_a_group_routed_to_teams_is_a_channel_thread_investigated_followed_up_and_resolved_in_place(
    tmp_path: Path, connector: BotConnectorFake, login: Any, db_file: str
) -> None:
    env = auth_env(db_file, login, connector.url, SREBOT_ALERTS_TOKEN=TOKEN, SREBOT_CONFIG=config(tmp_path, connector))
    engine = ScriptedEngine()
    async with serve(env, engine, login) as srebot:
        body = payload(alert(), alert("HighLatency", fingerprint="fp-2", severity="warning"))
        assert await deliver(srebot, body) == 200
        root = await connector.wait_for(is_root)
        # the root card: a new post in the configured channel, through the configured serviceUrl, with the bot's token
        assert root.path.startswith("/v3/conversations/") and root.headers["Authorization"] == "Bearer bot-token-from-entra"
        text = root.text
        for expected in ("🔥 Firing: HighErrorRate and HighLatency — checkout", "Severity: critical", "Service: checkout",
                         "Since: 10:42 UTC", "• HighErrorRate (critical) since 10:42 UTC", "HighErrorRate on checkout",
                         "[Runbook](https://wiki.example/runbooks/checkout)",
                         "[Dashboard](https://grafana.example/d/abc/checkout)"):
            assert expected in text, expected
        assert buttons(root) == [("Action.Execute", "Silence 1h", ALERT_VERB),
                                 ("Action.Execute", "Acknowledge incident", ALERT_VERB),
                                 ("Action.Execute", "Investigate again", ALERT_VERB)]
        thread = thread_conversation_id(root.response_id or "")
        # the investigation is asked as "why is checkout alerting?" and answered in the thread
        answer = await connector.wait_for(lambda c: c.conversation_id == thread and "Answer to “why is checkout alerting?”" in c.text)
        assert answer.kind == "send" and answer.card is not None
        (investigation,) = engine.requests
        assert investigation.alert is not None and investigation.key.thread == thread
        assert investigation.key.workspace == TENANT_ID and investigation.key.channel == CHANNEL_ID

        # Alertmanager re-sends the group: nothing new
        for _ in range(3):
            assert await deliver(srebot, body) == 200
        await settle(srebot)
        assert len([c for c in connector.calls if is_root(c)]) == 1 and len(engine.requests) == 1

        # a follow-up in the thread, without a mention, is the same session
        follow_up = thread_reply(connector.url, "and its logs?", root_id=root.response_id or "", user=ALICE)
        assert await srebot.post(follow_up) == 200
        await connector.wait_for(lambda c: c.conversation_id == thread and "Answer to “and its logs?”" in c.text)
        assert [r.key for r in engine.requests] == [investigation.key] * 2
    connector.calls.clear()

    # another process on the same database resolves it: the root card is updated in place, a line in the thread
    async with serve(env, ScriptedEngine(), login) as restarted:
        resolved = payload(alert(status="resolved", ends="2026-12-03T10:58:30Z"),
                           alert("HighLatency", fingerprint="fp-2", status="resolved", ends="2026-12-03T10:58:30Z"))
        assert await deliver(restarted, resolved) == 200
        update = await connector.wait_for(lambda c: c.kind == "update")
        assert update.activity_id == root.response_id and update.conversation_id == thread
        assert "✅ Resolved: HighErrorRate and HighLatency — checkout" in update.text
        assert "Resolved: 10:58 UTC, after 16 min" in update.text
        line = await connector.wait_for(lambda c: c.kind == "send" and "Resolved at 10:58 UTC, after 16 min" in c.text)
        assert line.conversation_id == thread
        await settle(restarted)
        assert not [c for c in connector.calls if is_root(c)]


async def test_alert_card_buttons_ask_the_policy_and_refusals_are_told_only_to_the_presser(
    tmp_path: Path, connector: BotConnectorFake, login: Any, monkeypatch: pytest.MonkeyPatch, db_file: str
) -> None:
    monkeypatch.setattr("bot.alerts.desk.AGAIN_GUARD", timedelta(0))  # the first investigation has just started
    connector.members += [CAROL, GUEST]  # the Bot Connector vouches for Carol (a user) and Gina (a guest)
    env = auth_env(db_file, login, connector.url, SREBOT_ALERTS_TOKEN=TOKEN,
                   SREBOT_CONFIG=config(tmp_path, connector, POLICY), ALERTMANAGER_URL="http://127.0.0.1:9")
    engine = ScriptedEngine()
    async with serve(env, engine, login) as srebot:
        assert await deliver(srebot, payload()) == 200
        root = await connector.wait_for(is_root)
        thread = thread_conversation_id(root.response_id or "")
        await connector.wait_for(lambda c: c.conversation_id == thread and "Answer to" in c.text)
        store = srebot.runtime.store

        # Bob may approve here but not propose: his Silence is refused in his own card, nothing is posted or proposed
        sent_before = len(connector.messages())
        status, response = await srebot.request(press(connector, root, "silence", BOB))
        assert status == 200 and response["statusCode"] == 200
        card = response["value"]
        assert "You may not propose a silence here" in str(card)
        assert "Firing: HighErrorRate — checkout" in str(card)  # his view of the same card, buttons and all
        assert len(buttons(card)) == 3
        assert await store.approvals() == [] and len(connector.messages()) == sent_before
        refused = [r for r in await store.audit_log() if r.event == "refused"]
        assert [(r.actor, r.kind, r.platform, r.channel, r.via) for r in refused] == [
            (BOB.aad_object_id, "silence", "teams", CHANNEL_ID, ALERT_THREAD)]

        # Alice may propose: the approval card goes into the thread for everyone, she is told in hers
        status, response = await srebot.request(press(connector, root, "silence", ALICE))
        assert status == 200 and "someone else approves it in the thread" in str(response["value"])
        (approval,) = await store.approvals()
        assert (approval.kind, approval.requester) == ("silence", ALICE.aad_object_id)
        assert approval.target == 'alertname="HighErrorRate",namespace="shop",service="checkout",severity="critical"'
        approval_card = await connector.wait_for(lambda c: c.conversation_id == thread and approval.id in c.text)
        assert "Approval needed" in approval_card.text and "Requested by: Alice Example" in approval_card.text
        proposed = [r for r in await store.audit_log() if r.event == "proposed"]
        assert [(r.actor, r.via) for r in proposed] == [(ALICE.aad_object_id, ALERT_THREAD)]
        # four eyes: Alice cannot approve her own silence; Carol is not an approver
        data = {"srebot": "approval", "approval_id": approval.id, "decision": "approve"}
        for who, why in ((ALICE, "someone else has to approve"), (CAROL, "not in the approvers list")):
            status, response = await srebot.request(card_action(connector.url, DECIDE_VERB, data, user=who,
                                                                conversation_id=thread))
            assert why in str(response["value"])
        assert (await store.get_approval(approval.id)).status == "pending"  # type: ignore[union-attr]

        # Investigate again is a question: Carol may ask, and the investigation is hers
        status, response = await srebot.request(press(connector, root, "investigate", CAROL))
        assert status == 200 and "Investigating again" in str(response["value"])
        await settle(srebot)
        again = engine.requests[-1]
        assert (again.user, again.via, again.key.thread) == (CAROL.aad_object_id, ALERT_THREAD, thread)
        assert again.alert is not None

        # when the press takes longer than the invoke may wait, the refusal reaches Bob in his 1:1 chat with the bot
        srebot.teams.bot.ack_wait = 0
        status, response = await srebot.request(press(connector, root, "silence", BOB))
        assert status == 200 and "a refusal, privately" in str(response["value"])
        told = await connector.wait_for(lambda c: c.kind == "send" and "You may not propose a silence here" in c.text)
        assert told.conversation_id == personal_conversation_id(BOB)
        assert len(await store.approvals()) == 1
        srebot.teams.bot.ack_wait = 2.0

        # a guest account of the tenant presses nothing, not even Investigate again; told in her card only
        for button in ("investigate", "silence", "ack"):
            status, response = await srebot.request(press(connector, root, button, GUEST))
            assert status == 200 and EXTERNAL_REFUSAL in str(response["value"])
        await settle(srebot)
        assert len(engine.requests) == 2 and len(await store.approvals()) == 1
        refused = [r for r in await store.audit_log() if r.event == "refused" and r.actor == GUEST.aad_object_id]
        assert [(r.kind, r.via) for r in refused] == [(None, ALERT_THREAD), ("silence", ALERT_THREAD),
                                                      ("ack_incident", ALERT_THREAD)]


async def test_without_credentials_a_press_from_teams_does_nothing(
    tmp_path: Path, connector: BotConnectorFake, db_file: str
) -> None:
    """Local mode proves nobody's identity, so nobody's press can be checked against the policy."""
    env = local_env(db_file, connector.url, SREBOT_ALERTS_TOKEN=TOKEN, SREBOT_CONFIG=config(tmp_path, connector))
    engine = ScriptedEngine()
    async with serve(env, engine) as srebot:
        assert await deliver(srebot, payload()) == 200
        root = await connector.wait_for(is_root)
        await settle(srebot)
        status, response = await srebot.request(press(connector, root, "investigate", ALICE))
        assert status == 200 and LOCAL_PRESSES in str(response["value"])
        await settle(srebot)
        assert len(engine.requests) == 1 and await srebot.runtime.store.approvals() == []


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('[[alerts.routes]]\nmatch = { team = "x" }\nteams_conversation = "19:x@thread.tacv2"\n',
         "teams_conversation needs teams_service_url"),
        ('[[alerts.routes]]\nmatch = { team = "x" }\nteams_conversation = "19:x@thread.tacv2;messageid=1"\n'
         'teams_service_url = "https://smba.trafficmanager.net/emea/"\n', "without ';messageid="),
    ],
)
def test_teams_destination_config_errors_name_the_key(tmp_path: Path, extra: str, error: str) -> None:
    from bot.config import ConfigError, load_settings

    path = tmp_path / "bad.toml"
    path.write_text(extra)
    with pytest.raises(ConfigError) as raised:
        load_settings(env={"SREBOT_CONFIG": str(path)})
    assert "alerts.routes.0" in str(raised.value) and error in str(raised.value)


async def test_a_service_url_outside_the_allow_list_stops_the_start(
    tmp_path: Path, connector: BotConnectorFake, db_file: str
) -> None:
    """The serviceUrl of a destination is checked like an incoming activity's: a Teams / Bot Framework host or a
    SREBOT_TEAMS_SERVICE_URLS prefix; anything else is a configuration error at start, naming the key."""
    from bot.app import Runtime
    from bot.config import ConfigError, load_settings
    from bot.web import build_app

    elsewhere = "http://127.0.0.2:8080/"
    path = tmp_path / "srebot.toml"
    path.write_text(CONFIG.format(channel=CHANNEL_ID, service_url=elsewhere, tenant=TENANT_ID))
    env = local_env(db_file, connector.url, SREBOT_ALERTS_TOKEN=TOKEN, SREBOT_CONFIG=str(path))
    with pytest.raises(ConfigError) as raised:
        build_app(Runtime(load_settings(env=env)))
    assert "alerts.routes.0.teams_service_url" in str(raised.value) and elsewhere in str(raised.value)


@pytest.mark.integration  # starts srebot in a child process
def test_check_finds_a_teams_destination_serve_would_refuse(tmp_path: Path) -> None:
    """`srebot check` is where an operator learns the configuration is wrong, before a deploy crash-loops on it."""
    from tests.test_cli import srebot

    elsewhere = "http://127.0.0.2:8080/"
    path = tmp_path / "srebot.toml"
    path.write_text(CONFIG.format(channel=CHANNEL_ID, service_url=elsewhere, tenant=TENANT_ID))
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}", "SREBOT_CONFIG": str(path),
           "SREBOT_ALERTS_TOKEN": TOKEN, "MICROSOFT_APP_ID": "app-id", "MICROSOFT_APP_PASSWORD": "secret",
           "MICROSOFT_APP_TENANT_ID": TENANT_ID}
    result = srebot("check", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "alerts.routes.0.teams_service_url" in result.stderr and elsewhere in result.stderr
