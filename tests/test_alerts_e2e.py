"""End to end (DESIGN 3.9), every part real but Slack and Teams: a real Prometheus evaluates an alerting rule on a
series it scrapes from this test, a real Alertmanager (Debian's prometheus-alertmanager) groups the alert and calls its
webhook receiver — a real `srebot serve` with the bearer token in `http_config` — and Slack is the loopback fake. No
payload is written by hand. The same run routed to a Teams channel goes to the srebot web app in this process (its
Bot Framework login and token are loopback fakes) and the loopback Bot Connector.

Checked: one thread in the alerts channel, one investigation in it (while Alertmanager keeps re-sending the group),
"Silence 1h" pressed by one person and approved by another creates the silence in Alertmanager (createdBy the
person, matchers from the alert's labels), and when the series recovers the root message is updated in place and a
line is posted in the thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devtools.loopback.serving import serve
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.fakes.alerting import Alertmanager, alertmanager, prometheus_alerting
from tests.fakes.serve import ServeProcess, free_port
from tests.fakes.bot_connector import ALICE, BOB, CHANNEL_ID, TENANT_ID, BotConnectorFake, card_action, \
    thread_conversation_id
from tests.fakes.slack import Call, SlackFake, metric
from tests.test_alerts import ALERTS_BASE
from tests.test_teams import auth_env, connector, login  # noqa: F401 - fixtures
from tests.test_teams import serve as serve_srebot

pytestmark = pytest.mark.integration  # real Alertmanager, Prometheus, PostgreSQL and srebot processes

TOKEN = "e2e-alertmanager-token-5f2c"
CHANNEL = "CALERTS"
RULES = """
groups:
  - name: shop
    rules:
      - alert: CheckoutErrorRate
        expr: checkout_error_ratio > 0.05
        labels:
          severity: critical
        annotations:
          summary: "checkout serves {{ $value | humanizePercentage }} errors"
"""


class Exporter:
    """The series Prometheus scrapes: checkout's error ratio, set by the test."""

    def __init__(self) -> None:
        self.value = 0.2
        self._runner: web.AppRunner | None = None
        self.address = ""

    async def start(self) -> "Exporter":
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner, url = await serve(app)
        self.address = url.removeprefix("http://")
        return self

    async def _metrics(self, _: web.Request) -> web.Response:
        body = (
            "# TYPE checkout_error_ratio gauge\n"
            f'checkout_error_ratio{{service="checkout",namespace="shop"}} {self.value}\n'
        )
        return web.Response(text=body, content_type="text/plain")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class World:
    slack: SlackFake
    bot: ServeProcess
    am: Alertmanager
    exporter: Exporter

    def roots(self) -> list[Call]:
        return self.slack.calls_to(
            "chat.postMessage", lambda c: c.args.get("channel") == CHANNEL and not c.args.get("thread_ts")
        )

    def in_thread(self, ts: str, text: str) -> list[Call]:
        return self.slack.calls_to(
            "chat.postMessage", lambda c: c.args.get("thread_ts") == ts and text in c.text_blob()
        )

    async def click(self, action_id: str, value: str, user: str, ts: str, thread_ts: str | None = None) -> int:
        body = self.slack.block_actions(action_id, value, user=user, channel=CHANNEL, message_ts=ts, thread_ts=thread_ts)
        status, _ = await self.slack.deliver(self.bot.events_url, body)
        return status


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    database = await _create_pg_database()
    config = tmp_path / "srebot.toml"
    config.write_text(ALERTS_BASE)
    am_port, prometheus_port = free_port(), free_port()
    stack = ExitStack()
    exporter = await Exporter().start()
    try:
        async with SlackFake() as slack:
            env = {
                "DATABASE_URL": database,
                "SREBOT_CONFIG": str(config),
                "SREBOT_ALERTS_TOKEN": TOKEN,
                "ALERTMANAGER_URL": f"http://127.0.0.1:{am_port}",
                "PROMETHEUS_URL": f"http://127.0.0.1:{prometheus_port}",  # the investigation reads it
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_SIGNING_SECRET": slack.signing_secret,
                "SLACK_API_URL": slack.api_url,
                "SREBOT_APPROVERS": "U0BOB",
                "SREBOT_KUBERNETES": "off",
                "SREBOT_COST": "off",
            }
            async with ServeProcess(env, cwd=tmp_path) as bot:
                # the servers start in a thread: this loop keeps answering the bot's Slack calls meanwhile
                am = await asyncio.to_thread(
                    stack.enter_context,
                    alertmanager(tmp_path / "am", webhook_url=f"{bot.url}/alerts/alertmanager", token=TOKEN,
                                 port=am_port, group_wait="1s", group_interval="2s", repeat_interval="3s"),
                )
                await asyncio.to_thread(
                    stack.enter_context,
                    prometheus_alerting(tmp_path / "prometheus", am.url, target=exporter.address, rules=RULES,
                                        port=prometheus_port),
                )
                yield World(slack, bot, am, exporter)
    finally:
        await asyncio.to_thread(stack.close)
        await exporter.close()
        await _drop_pg_database(database)


async def test_alert_from_prometheus_through_alertmanager_gets_one_investigated_thread_silence_and_resolution(
    world: World,
) -> None:
    slack = world.slack
    root = await slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("channel") == CHANNEL and not c.args.get("thread_ts"), timeout=60
    )
    ts = root.response["ts"]
    blob = root.text_blob()
    assert "Firing: CheckoutErrorRate — checkout" in blob
    assert "checkout serves 20% errors" in blob
    assert "https://wiki.example/runbooks/checkout|Runbook" in blob
    # the investigation's answer replaces its placeholder in the thread; it asked the real Prometheus
    answer = await slack.wait_for(
        "chat.update",
        lambda c: c.args.get("ts") != ts and "CheckoutErrorRate (critical) firing since" in c.text_blob(),
        timeout=60,
    )
    assert "metrics ✓" in answer.text_blob()
    # Alertmanager re-sends the firing group every repeat_interval (3 s): a few more deliveries change nothing
    deliveries = await world.bot.metric("srebot_alerts_received_total", status="firing")
    await _until(lambda: world.bot.metric("srebot_alerts_received_total", status="firing"), deliveries + 2, 30)
    assert len(world.roots()) == 1
    assert len(slack.calls_to("chat.postMessage", lambda c: c.args.get("thread_ts") == ts
                              and "Looking at firing alerts" in c.text_blob())) == 1
    assert await world.bot.metric("srebot_alerts_investigated_total") == 1
    assert await world.bot.metric("srebot_alerts_deduplicated_total") >= 2

    # "Silence 1h", pressed by Alice, approved by Bob: the silence is in Alertmanager, created by Alice
    group_id = next(b for b in root.args["blocks"] if b["type"] == "actions")["elements"][0]["value"]
    assert await world.click("alert_silence", group_id, "U0ALICE", ts) == 200
    approval = await slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "Approval needed" in c.text_blob(), timeout=30
    )
    approval_id = next(b for b in approval.args["blocks"] if b["type"] == "actions")["elements"][0]["value"]
    assert world.am.silences() == []
    assert await world.click("approval_approve", approval_id, "U0BOB", approval.response["ts"], ts) == 200
    await slack.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "silence" in c.text_blob()
                         and "done" in c.text_blob(), timeout=30)
    (silence,) = world.am.silences()
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == "U0ALICE"
    matchers = {m["name"]: m["value"] for m in silence["matchers"]}
    assert matchers == {"alertname": "CheckoutErrorRate", "namespace": "shop", "service": "checkout",
                        "severity": "critical", "instance": world.exporter.address, "job": "shop"}

    # the operator lifts the silence; the series recovers; the group resolves in place
    await asyncio.to_thread(_expire, world.am, silence["id"])
    world.exporter.value = 0.0
    resolved = await slack.wait_for(
        "chat.update", lambda c: c.args.get("ts") == ts and "Resolved: CheckoutErrorRate" in c.text_blob(), timeout=60
    )
    assert "Resolved*" in resolved.text_blob()
    await slack.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "Resolved at" in c.text_blob(),
                         timeout=10)
    assert len(world.roots()) == 1
    assert await world.bot.metric("srebot_alerts_investigated_total") == 1


async def test_alert_from_a_real_alertmanager_routed_to_teams_gets_a_channel_thread_silence_and_resolution(
    tmp_path: Path, connector: BotConnectorFake, login: Any
) -> None:
    from integrations.teams.alerts import ALERT_VERB
    from integrations.teams.cards import DECIDE_VERB

    database = await _create_pg_database()
    config = tmp_path / "srebot.toml"
    config.write_text(ALERTS_BASE.replace('slack_channel = "CALERTS"', f'teams_conversation = "{CHANNEL_ID}"\n'
                                     f'teams_service_url = "{connector.url}"\nteams_tenant_id = "{TENANT_ID}"'))
    am_port, prometheus_port = free_port(), free_port()
    env = auth_env(database, login, connector.url, SREBOT_CONFIG=str(config),
                   SREBOT_ALERTS_TOKEN=TOKEN, ALERTMANAGER_URL=f"http://127.0.0.1:{am_port}",
                   PROMETHEUS_URL=f"http://127.0.0.1:{prometheus_port}", SREBOT_APPROVERS=BOB.aad_object_id,
                   SREBOT_KUBERNETES="off", SREBOT_COST="off")
    stack = ExitStack()
    exporter = await Exporter().start()
    try:
        async with serve_srebot(env, login=login) as srebot:
            webhook = str(srebot.client.make_url("/alerts/alertmanager"))
            am = await asyncio.to_thread(
                stack.enter_context,
                alertmanager(tmp_path / "am", webhook_url=webhook, token=TOKEN, port=am_port, group_wait="1s",
                             group_interval="2s", repeat_interval="3s"),
            )
            await asyncio.to_thread(
                stack.enter_context,
                prometheus_alerting(tmp_path / "prometheus", am.url, target=exporter.address, rules=RULES,
                                    port=prometheus_port),
            )
            root = await connector.wait_for(lambda c: c.kind == "send" and c.conversation_id == CHANNEL_ID, timeout=60)
            assert "Firing: CheckoutErrorRate — checkout" in root.text and "checkout serves 20% errors" in root.text
            thread = thread_conversation_id(root.response_id or "")
            answer = await connector.wait_for(
                lambda c: c.conversation_id == thread and "CheckoutErrorRate (critical) firing since" in c.text, timeout=60)
            assert answer.card is not None
            # a few re-sends by Alertmanager change nothing
            received = metric("srebot_alerts_received_total", source="alertmanager", status="firing")
            await _until(_now(lambda: metric("srebot_alerts_received_total", source="alertmanager", status="firing")),
                         received + 2, 30)
            assert len([c for c in connector.calls if c.kind == "send" and c.conversation_id == CHANNEL_ID]) == 1

            # Alice presses "Silence 1h" on the card, Bob approves on the approval card in the thread
            group_id = root.card["actions"][0]["data"]["group_id"]  # type: ignore[index]
            press = card_action(connector.url, ALERT_VERB, {"srebot": "alert", "group_id": group_id, "button": "silence"},
                                user=ALICE, conversation_id=thread)
            status, body = await srebot.request(press)
            assert status == 200 and "someone else approves it" in str(body["value"])
            (approval,) = await srebot.runtime.store.approvals()
            await connector.wait_for(lambda c: c.conversation_id == thread and approval.id in c.text)
            decide = card_action(connector.url, DECIDE_VERB, {"srebot": "approval", "approval_id": approval.id,
                                                              "decision": "approve"}, user=BOB, conversation_id=thread)
            assert (await srebot.request(decide))[0] == 200
            await connector.wait_for(lambda c: c.conversation_id == thread and "done (approved by Bob Example)" in c.text,
                                     timeout=30)
            (silence,) = am.silences()
            assert silence["createdBy"] == ALICE.aad_object_id and silence["status"]["state"] == "active"

            # lifted, recovered: the root card is updated in place, and said in the thread
            await asyncio.to_thread(_expire, am, silence["id"])
            exporter.value = 0.0
            update = await connector.wait_for(lambda c: c.kind == "update" and c.activity_id == root.response_id
                                              and "Resolved: CheckoutErrorRate" in c.text, timeout=60)
            assert update.conversation_id == thread
            await connector.wait_for(lambda c: c.conversation_id == thread and "Resolved at" in c.text, timeout=10)
    finally:
        await asyncio.to_thread(stack.close)
        await exporter.close()
        await _drop_pg_database(database)


def _now(read: Any) -> Any:
    """An in-process reading as the awaitable `_until` polls."""

    async def reading() -> float:
        return read()

    return reading


def _expire(am: Alertmanager, silence_id: str) -> None:
    import urllib.request

    request = urllib.request.Request(f"{am.url}/api/v2/silence/{silence_id}", method="DELETE")
    urllib.request.urlopen(request, timeout=5).close()


async def _until(read: Any, at_least: float, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await read() < at_least:
            await asyncio.sleep(0.5)
