"""Alert-driven investigations (DESIGN 3.9) through the real web app: POST /alerts/alertmanager with Alertmanager's
payloads, Slack as the loopback fake, the database deciding. The end-to-end proof with a real Prometheus and a real
Alertmanager is tests/test_alerts_e2e.py; here the payloads are written by hand to reach every edge."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlencode
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from bot.alerts.payload import AlertGroup, WebhookPayload
from bot.alerts.routing import destination, find_service, workload
from bot.alerts.view import view
from bot.answer import Answer
from bot.config import load_settings
from bot.policy import ALERT_THREAD, EXTERNAL_REFUSAL
from sessions.alerts import AlertGroupRecord
from sessions.store import Actor
from tests.helpers import ScriptedEngine
from tests.fakes.slack import (  # noqa: F401 - fixtures
    Call,
    SlackBot,
    SlackFake,
    db_file_fixture,
    in_thread,
    metric,
    slack_fixture,
)

TOKEN = "am-webhook-secret-0123456789"
CHANNEL = "CALERTS"
# the catalog and default alert channel every alert test starts from; each adds its own routes
ALERTS_BASE = """
[defaults]
namespace = "shop"

[services.checkout]
namespace = "shop"
runbook = "https://wiki.example/runbooks/checkout"
dashboard = "https://grafana.example/d/abc/checkout"

[alerts]
slack_channel = "CALERTS"
cooldown = "30m"
"""
CONFIG = ALERTS_BASE + """
[[alerts.routes]]
match = { namespace = "payments", severity = "critical" }
slack_channel = "CPAY"
"""


def alert(
    name: str = "HighErrorRate", *, fingerprint: str = "fp-1", status: str = "firing", severity: str = "critical",
    starts: str = "2026-12-03T10:42:00Z", ends: str = "0001-01-01T00:00:00Z", **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, "service": "checkout", "namespace": "shop", **labels},
        "annotations": {"summary": f"{name} on checkout"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], status: str | None = None, key: str = '{}:{alertname="HighErrorRate"}',
            truncated: int = 0) -> dict[str, Any]:
    alerts = alerts or (alert(),)
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    return {
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": truncated,
        "status": status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved"),
        "receiver": "srebot",
        "groupLabels": {k: common[k] for k in ("alertname",) if k in common},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def settings(tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "srebot.toml"
    path.write_text(CONFIG + extra)
    return load_settings(env={"SREBOT_CONFIG": str(path)})


class Alerting:
    """A bot with alerts on, wired to the Slack fake; `post` delivers a payload like Alertmanager does."""

    def __init__(self, slack: SlackFake, bot: SlackBot, engine: ScriptedEngine | None):
        self.slack = slack
        self.bot = bot
        self.engine = engine

    async def post(self, body: Any, *, token: str | None = TOKEN, headers: dict[str, str] | None = None,
                   url: str | None = None) -> tuple[int, str]:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        sent = dict(headers or {})
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        async with aiohttp.ClientSession() as http, http.post(
            (url or self.bot.url) + "/alerts/alertmanager", data=data, headers=sent
        ) as response:
            return response.status, await response.text()

    async def settle(self, *bots: SlackBot) -> None:
        for bot in bots or (self.bot,):
            await bot.runtime.alerts.idle()
            await bot.idle()

    def roots(self) -> list[Call]:
        return self.slack.calls_to("chat.postMessage", lambda c: c.args.get("channel") == CHANNEL and not c.args.get("thread_ts"))

    def investigations(self, engine: ScriptedEngine | None = None) -> list[Any]:
        return [r for r in (engine or self.engine).requests if r.alert is not None]  # type: ignore[union-attr]


def bot_env(tmp_path: Path, **more: str) -> dict[str, str]:
    path = tmp_path / "srebot.toml"
    path.write_text(CONFIG)
    return {"SREBOT_CONFIG": str(path), "SREBOT_ALERTS_TOKEN": TOKEN, "SREBOT_APPROVERS": "U0BOB", **more}


@pytest.fixture
async def alerting(slack: SlackFake, db_file: str, tmp_path: Path) -> AsyncIterator[Alerting]:
    engine = ScriptedEngine()
    async with SlackBot(slack, db_file, engine=engine, env=bot_env(tmp_path)) as bot:
        yield Alerting(slack, bot, engine)


def person(user: str) -> Actor:
    """Someone of this organisation pressing a button of an alert thread in CALERTS."""
    return Actor(user, "slack", "T0TEAM", CHANNEL, via=ALERT_THREAD)


async def group_rows(bot: SlackBot) -> list[dict[str, Any]]:
    async with bot.runtime.store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT status, deliveries, thread, service FROM alert_groups"))
        return [dict(r._mapping) for r in rows]


# --- payload, routing and view: no I/O -------------------------------------------------------------
def test_payload_edge_cases_truncated_missing_labels_and_zero_end_time(tmp_path: Path) -> None:
    bare = alert(fingerprint="fp-9")
    bare["labels"] = {"alertname": "DiskFull"}  # no severity, no service, no namespace
    bare.pop("generatorURL")
    body = payload(alert(), bare, truncated=7)
    group = AlertGroup.from_webhook(WebhookPayload.model_validate(body))
    assert group.alerts[0].ends_at is None  # 0001-01-01 means "no end"
    assert group.labels == {}  # nothing common to both
    assert group.truncated == 7
    record = _record(group)
    shown = view(settings(tmp_path), record)
    assert shown.names == ["HighErrorRate", "DiskFull"]
    assert shown.severity == "critical"
    assert shown.service is None and not shown.service_known  # labels in common name no service
    assert shown.lines[-1] == "…and 7 more alerts in this group"
    assert "Service: unknown (not in the catalog)" in shown.text()


def test_service_from_labels_in_configured_order_then_catalog(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert find_service(s, {"service": "checkout", "job": "node"}).name == "checkout"
    # a pod's name leads to its Deployment, which the catalog knows
    match = find_service(s, {"pod": "checkout-7c9f8d6b5d-x2k9p", "namespace": "shop"})
    assert (match.name, match.candidates) == ("checkout", ("shop", "checkout"))
    unknown = find_service(s, {"job": "node-exporter", "instance": "10.0.0.1:9100"})
    assert (unknown.name, unknown.shown) == (None, "node-exporter")
    assert workload("kafka-2") == "kafka" and workload("checkout") == "checkout"
    custom = settings(tmp_path, extra='')
    custom.alerts.service_labels = ["team"]
    assert find_service(custom, {"service": "checkout", "team": "checkout"}).candidates == ("checkout",)


def test_routes_first_match_wins_else_default(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert destination(s.alerts, {"namespace": "payments", "severity": "critical"}).channel == "CPAY"  # type: ignore[union-attr]
    assert destination(s.alerts, {"namespace": "payments", "severity": "warning"}).channel == CHANNEL  # type: ignore[union-attr]
    s.alerts.slack_channel = None
    assert destination(s.alerts, {"namespace": "shop"}) is None


def test_route_config_errors_name_the_key(tmp_path: Path) -> None:
    from bot.config import ConfigError

    path = tmp_path / "bad.toml"
    path.write_text('[alerts]\ncooldown = "soon"\n[[alerts.routes]]\nmatch = {}\nslack_channel = "C1"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(env={"SREBOT_CONFIG": str(path)})
    assert "alerts.cooldown" in str(error.value) and "alerts.routes.0" in str(error.value)


def _record(group: AlertGroup) -> AlertGroupRecord:
    now = datetime.now(UTC)
    return AlertGroupRecord(
        id="alg_1", group_key=group.key, source=group.source, status=group.status, version=0, digest=group.digest,
        labels={"common": group.labels, "annotations": group.common_annotations},
        alerts={"items": [a.to_json() for a in group.alerts], "truncated": group.truncated},
        service=None, platform="slack", channel=CHANNEL, thread=None, session_id=None, opening_at=None,
        started_at=group.since, resolved_at=None, first_seen_at=now, last_seen_at=now, deliveries=1,
        investigated_at=None, investigated=None,
    )


# --- the endpoint ----------------------------------------------------------------------------------
async def test_endpoint_is_404_without_a_configured_token(slack: SlackFake, db_file: str, tmp_path: Path) -> None:
    env = bot_env(tmp_path)
    env.pop("SREBOT_ALERTS_TOKEN")
    async with SlackBot(slack, db_file, env=env) as bot:
        status, _ = await Alerting(slack, bot, None).post(payload())
    assert status == 404


async def test_wrong_or_missing_credentials_are_401_and_nothing_is_stored(alerting: Alerting) -> None:
    assert (await alerting.post(payload(), token=None))[0] == 401
    assert (await alerting.post(payload(), token="wrong"))[0] == 401
    basic_wrong = base64.b64encode(b"alertmanager:wrong").decode()
    assert (await alerting.post(payload(), token=None, headers={"Authorization": f"Basic {basic_wrong}"}))[0] == 401
    await alerting.settle()
    assert await group_rows(alerting.bot) == []
    assert alerting.roots() == []


async def test_basic_auth_with_the_token_as_password_is_accepted(alerting: Alerting) -> None:
    basic = base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
    status, _ = await alerting.post(payload(), token=None, headers={"Authorization": f"Basic {basic}"})
    await alerting.settle()
    assert status == 200 and len(alerting.roots()) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not JSON"),
        ("[]", "Input should be a valid dictionary"),
        ({**payload(), "groupKey": None}, "groupKey"),
        ({**payload(), "version": "3"}, "version"),
        ({**payload(), "alerts": []}, "alerts"),
        ({**payload(), "status": "burning"}, "status"),
        ({**payload(), "alerts": [{**alert(), "startsAt": "yesterday"}]}, "alerts.0.startsAt"),
        ({**payload(), "alerts": [{k: v for k, v in alert().items() if k != "fingerprint"}]}, "alerts.0.fingerprint"),
    ],
)
async def test_malformed_payload_is_400_with_the_reason_and_nothing_stored(
    alerting: Alerting, body: Any, reason: str
) -> None:
    status, answer = await alerting.post(body)
    await alerting.settle()
    assert status == 400
    assert reason in json.loads(answer)["error"]
    assert await group_rows(alerting.bot) == []
    assert alerting.roots() == []


async def test_oversized_payload_is_refused(alerting: Alerting) -> None:
    big = payload(*(alert(fingerprint=f"fp-{i}", pod="x" * 2000) for i in range(600)))
    status, _ = await alerting.post(big)
    assert status == 413
    data = json.dumps(big).encode()
    # chunked, without Content-Length: the size is found while reading (over our cap, and over the app's)
    for body in (data[: 1536 * 1024], data + data):
        async with aiohttp.ClientSession() as http, http.post(
            alerting.bot.url + "/alerts/alertmanager", data=_chunked(body), headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 413
    assert await group_rows(alerting.bot) == []


async def _chunked(data: bytes) -> Any:
    for start in range(0, len(data), 65536):
        yield data[start:start + 65536]


async def test_answer_is_immediate_and_the_work_comes_after(slack: SlackFake, db_file: str, tmp_path: Path) -> None:
    gate = asyncio.Event()
    engine = ScriptedEngine(gate=gate)
    async with SlackBot(slack, db_file, engine=engine, env=bot_env(tmp_path)) as bot:
        alerting = Alerting(slack, bot, engine)
        # answered while the investigation is held at the gate: an endpoint that waited for it would never answer
        status, _ = await asyncio.wait_for(alerting.post(payload()), 10)
        assert status == 200
        await asyncio.wait_for(engine.started.wait(), 10)  # the investigation runs after the answer
        gate.set()
        await alerting.settle()


# --- one thread per group --------------------------------------------------------------------------
async def test_repeated_and_concurrent_deliveries_on_two_replicas_open_one_thread_and_one_investigation(
    slack: SlackFake, db_url: str, tmp_path: Path
) -> None:
    """An HA pair of Alertmanagers sends each notification twice, and each re-sends every group_interval."""
    engines = (ScriptedEngine(), ScriptedEngine())
    async with SlackBot(slack, db_url, engine=engines[0], env=bot_env(tmp_path)) as a, \
            SlackBot(slack, db_url, engine=engines[1], env=bot_env(tmp_path)) as b:
        alerting = Alerting(slack, a, engines[0])
        deduplicated = metric("srebot_alerts_deduplicated_total", source="alertmanager")
        body = payload(alert(), alert("HighLatency", fingerprint="fp-2"))
        results = await asyncio.gather(*(alerting.post(body, url=bot.url) for bot in (a, b, a, b, a, b)))
        assert [status for status, _ in results] == [200] * 6
        await alerting.settle(a, b)
        for _ in range(3):  # group_interval re-sends, to either replica
            await alerting.post(body, url=b.url)
        await alerting.settle(a, b)
        roots = alerting.roots()
        assert len(roots) == 1
        investigations = alerting.investigations(engines[0]) + alerting.investigations(engines[1])
        assert len(investigations) == 1
        assert investigations[0].text == "why is checkout alerting?"
        assert investigations[0].key.thread == roots[0].response["ts"]
        assert metric("srebot_alerts_deduplicated_total", source="alertmanager") - deduplicated == 8
        rows = await group_rows(a)
        assert len(rows) == 1 and rows[0]["deliveries"] == 9


async def test_root_message_says_what_fires_with_links_and_buttons(alerting: Alerting) -> None:
    await alerting.post(payload(alert(), alert("HighLatency", fingerprint="fp-2", severity="warning")))
    await alerting.settle()
    (root,) = alerting.roots()
    blob = root.text_blob()
    for expected in ("Firing: HighErrorRate and HighLatency — checkout", "Severity* critical", "Service* checkout",
                     "Since* 10:42 UTC", "HighErrorRate (critical) since 10:42 UTC", "HighErrorRate on checkout",
                     "https://wiki.example/runbooks/checkout|Runbook", "https://grafana.example/d/abc/checkout|Dashboard",
                     "http://alertmanager:9093|Alertmanager"):
        assert expected in blob, expected
    actions = next(b for b in root.args["blocks"] if b["type"] == "actions")
    assert [(e["action_id"], e["text"]["text"]) for e in actions["elements"]] == [
        ("alert_silence", "Silence 1h"), ("alert_ack", "Acknowledge incident"), ("alert_investigate", "Investigate again"),
    ]


async def test_a_group_that_keeps_firing_is_not_reinvestigated_unless_its_alerts_change(alerting: Alerting) -> None:
    await alerting.post(payload(alert()))
    await alerting.settle()
    await alerting.post(payload(alert()))
    await alerting.settle()
    assert len(alerting.investigations()) == 1
    # a new alert joins the group: the root message lists it and it is investigated again, at once
    await alerting.post(payload(alert(), alert(fingerprint="fp-2", pod="checkout-7c9f8d6b5d-x2k9p")))
    await alerting.settle()
    assert len(alerting.investigations()) == 2
    (root,) = alerting.roots()
    updates = alerting.slack.calls_to("chat.update", lambda c: c.args.get("ts") == root.response["ts"])
    assert "pod=checkout-7c9f8d6b5d-x2k9p" in updates[-1].text_blob()
    # one alert of the two resolves (the group still fires): the message changes, nothing is re-investigated
    await alerting.post(payload(alert(), alert(fingerprint="fp-2", status="resolved", ends="2026-12-03T10:50:00Z")))
    await alerting.settle()
    assert len(alerting.investigations()) == 2


async def test_after_the_cooldown_a_still_firing_group_is_investigated_again(
    slack: SlackFake, db_file: str, tmp_path: Path
) -> None:
    engine = ScriptedEngine()
    env = bot_env(tmp_path)
    async with SlackBot(slack, db_file, engine=engine, env=env) as bot:
        alerting = Alerting(slack, bot, engine)
        bot.runtime.settings.alerts.cooldown = "1s"
        await alerting.post(payload())
        await alerting.settle()
        await alerting.post(payload())
        await alerting.settle()
        assert len(alerting.investigations()) == 1
        await asyncio.sleep(1.1)
        await alerting.post(payload())
        await alerting.settle()
        assert len(alerting.investigations()) == 2
        assert len(alerting.roots()) == 1


# --- resolved in place -----------------------------------------------------------------------------
async def test_resolved_group_updates_the_root_message_and_says_so_in_the_thread(alerting: Alerting) -> None:
    await alerting.post(payload())
    await alerting.settle()
    (root,) = alerting.roots()
    ts = root.response["ts"]
    resolved = payload(alert(status="resolved", ends="2026-12-03T10:58:30Z"))
    await alerting.post(resolved)
    await alerting.post(resolved)  # the HA copy
    await alerting.settle()
    updates = alerting.slack.calls_to("chat.update", lambda c: c.args.get("ts") == ts)
    assert len(updates) == 1
    assert "Resolved: HighErrorRate — checkout" in updates[0].text_blob()
    assert "Resolved* 10:58 UTC, after 16 min" in updates[0].text_blob()
    lines = alerting.slack.calls_to("chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "Resolved at" in c.text_blob())
    assert len(lines) == 1 and "Resolved at 10:58 UTC, after 16 min" in lines[0].text_blob()
    assert (await group_rows(alerting.bot))[0]["status"] == "resolved"
    # it fires again: same thread, said so, investigated (its alerts were investigated already, but under cooldown
    # the re-fire does not start another investigation)
    await alerting.post(payload(alert(starts="2026-12-03T11:30:00Z")))
    await alerting.settle()
    assert len(alerting.roots()) == 1
    again = alerting.slack.calls_to("chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "Firing again" in c.text_blob())
    assert len(again) == 1 and "11:30 UTC" in again[0].text_blob()


async def test_a_group_first_heard_of_resolved_opens_no_thread(alerting: Alerting) -> None:
    status, _ = await alerting.post(payload(alert(status="resolved", ends="2026-12-03T10:58:30Z")))
    await alerting.settle()
    assert status == 200
    assert alerting.roots() == [] and alerting.investigations() == []
    assert [r["status"] for r in await group_rows(alerting.bot)] == ["resolved"]


async def test_state_survives_a_restart(slack: SlackFake, db_file: str, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    async with SlackBot(slack, db_file, engine=engine, env=bot_env(tmp_path)) as bot:
        await Alerting(slack, bot, engine).post(payload())
        await Alerting(slack, bot, engine).settle()
    restarted = ScriptedEngine()
    async with SlackBot(slack, db_file, engine=restarted, env=bot_env(tmp_path)) as bot:
        alerting = Alerting(slack, bot, restarted)
        await alerting.post(payload())
        await alerting.post(payload(alert(status="resolved", ends="2026-12-03T10:58:30Z")))
        await alerting.settle()
        assert len(alerting.roots()) == 1 and alerting.investigations() == []
        ts = alerting.roots()[0].response["ts"]
        assert alerting.slack.calls_to("chat.update", lambda c: c.args.get("ts") == ts)


# --- the investigation on the real engine ----------------------------------------------------------
async def test_investigation_answer_in_the_thread_and_follow_ups_work(slack: SlackFake, db_file: str, tmp_path: Path) -> None:
    async with SlackBot(slack, db_file, env=bot_env(tmp_path)) as bot:
        alerting = Alerting(slack, bot, None)
        await alerting.post(payload())
        await alerting.settle()
        (root,) = alerting.roots()
        ts = root.response["ts"]
        answers = slack.calls_to("chat.update", lambda c: c.args.get("channel") == CHANNEL and c.args.get("ts") != ts)
        answer = next(c for c in answers if "HighErrorRate (critical) firing since 10:42 UTC" in c.text_blob())
        assert "checkout" in answer.text_blob()
        # the thread is a session like any other: a follow-up without a mention is about the alert's service
        status, _ = await bot.event(slack.message("and its logs?", channel=CHANNEL, thread_ts=ts))
        assert status == 200
        await bot.idle()
        turns = await bot.runtime.store.recent_turns(await bot.runtime.store.find_session_id(
            __import__("sessions.store", fromlist=["ConversationKey"]).ConversationKey("slack", slack.team_id, CHANNEL, ts)))
        assert [(t.text, t.service) for t in turns] == [("why is checkout alerting?", "checkout"), ("and its logs?", "checkout")]


async def test_unknown_service_is_said_with_the_labels_it_tried(slack: SlackFake, db_file: str, tmp_path: Path) -> None:
    async with SlackBot(slack, db_file, env=bot_env(tmp_path)) as bot:
        alerting = Alerting(slack, bot, None)
        node = alert("NodeDiskFull", severity="warning")
        node["labels"] = {"alertname": "NodeDiskFull", "severity": "warning", "job": "node-exporter"}
        await alerting.post(payload(node, key='{}:{alertname="NodeDiskFull"}'))
        await alerting.settle()
        (root,) = alerting.roots()
        assert "node-exporter (not in the catalog)" in root.text_blob()
        said = slack.texts()
        assert "could not tie it to a service: its labels name node-exporter" in said
        assert "known services: checkout" in said


# --- buttons ---------------------------------------------------------------------------------------
async def test_investigate_again_reruns_once_even_when_pressed_twice(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    await alerting.post(payload())
    await alerting.settle()
    (root,) = alerting.roots()
    group_id = root.args["blocks"][-1]["elements"][2]["value"]
    monkeypatch.setattr("bot.alerts.desk.AGAIN_GUARD", timedelta(0))  # the first investigation has just started
    first = await alerting.bot.runtime.alerts.press(group_id, "investigate", person("U0ALICE"))
    monkeypatch.setattr("bot.alerts.desk.AGAIN_GUARD", timedelta(seconds=10))
    second = await alerting.bot.runtime.alerts.press(group_id, "investigate", person("U0CAROL"))
    await alerting.settle()
    assert first.accepted and not second.accepted and "just started" in second.message
    runs = alerting.investigations()
    assert [r.user for r in runs] == ["alertmanager", "U0ALICE"]


async def test_silence_and_ack_buttons_propose_approvals_in_the_thread(alerting: Alerting) -> None:
    await alerting.post(payload())
    await alerting.settle()
    (root,) = alerting.roots()
    ts, group_id = root.response["ts"], root.args["blocks"][-1]["elements"][0]["value"]
    status, _ = await alerting.bot.click("alert_silence", group_id, user="U0ALICE", channel=CHANNEL, message_ts=ts)
    assert status == 200
    await alerting.bot.slack.intake.idle()
    # no ALERTMANAGER_URL here: the person who pressed is told why, privately, and nothing is proposed
    told = await alerting.slack.wait_for("chat.postEphemeral", lambda c: c.args.get("user") == "U0ALICE")
    assert "ALERTMANAGER_URL" in told.text_blob()
    assert await alerting.bot.runtime.store.approvals() == []
    await alerting.bot.click("alert_ack", group_id, user="U0ALICE", channel=CHANNEL, message_ts=ts)
    await alerting.bot.slack.intake.idle()
    told = await alerting.slack.wait_for_count("chat.postEphemeral", 2)
    assert "control plane is not configured" in told[-1].text_blob()


async def test_alert_buttons_ask_the_policy_and_a_refusal_is_private_and_audited(
    slack: SlackFake, db_file: str, tmp_path: Path
) -> None:
    """[policy]: in CALERTS only Alice may propose and only Bob approve. Clicks are signed block_actions through Bolt."""
    path = tmp_path / "policy.toml"
    path.write_text(CONFIG + f'\n[policy.channels.{CHANNEL}]\npropose = ["U0ALICE"]\napprove = ["U0BOB"]\n')
    env = {**bot_env(tmp_path), "SREBOT_CONFIG": str(path), "ALERTMANAGER_URL": "http://127.0.0.1:9"}
    engine = ScriptedEngine()
    async with SlackBot(slack, db_file, engine=engine, env=env) as bot:
        alerting = Alerting(slack, bot, engine)
        await alerting.post(payload())
        await alerting.settle()
        (root,) = alerting.roots()
        ts, group_id = root.response["ts"], root.args["blocks"][-1]["elements"][0]["value"]
        in_thread_before = len(slack.calls_to("chat.postMessage", lambda c: c.args.get("thread_ts") == ts))

        # Carol may not propose here: told privately, nothing proposed or said in the thread, audited
        assert (await bot.click("alert_silence", group_id, user="U0CAROL", channel=CHANNEL, message_ts=ts))[0] == 200
        await bot.idle()
        told = await slack.wait_for("chat.postEphemeral", lambda c: c.args.get("user") == "U0CAROL")
        assert "You may not propose a silence here" in told.text_blob() and told.args["thread_ts"] == ts
        assert await bot.runtime.store.approvals() == []
        assert len(slack.calls_to("chat.postMessage", lambda c: c.args.get("thread_ts") == ts)) == in_thread_before
        refused = [r for r in await bot.runtime.store.audit_log() if r.event == "refused"]
        assert [(r.actor, r.kind, r.platform, r.channel, r.via) for r in refused] == [
            ("U0CAROL", "silence", "slack", CHANNEL, ALERT_THREAD)]

        # someone of another organisation may not even investigate again
        body = slack.block_actions("alert_investigate", group_id, user="U0EXT", channel=CHANNEL, message_ts=ts)
        clicked = json.loads(parse_qs(body)["payload"][0])
        clicked["user"]["team_id"] = "T0OTHERORG"
        assert (await bot.send(urlencode({"payload": json.dumps(clicked)})))[0] == 200
        await bot.idle()
        told = await slack.wait_for("chat.postEphemeral", lambda c: c.args.get("user") == "U0EXT")
        assert EXTERNAL_REFUSAL in told.text_blob().replace("&amp;", "&")
        assert len(alerting.investigations()) == 1

        # Alice may: the approval is asked in the thread, its audit row says it came from the alert thread; Carol, not
        # an approver, cannot approve it
        await bot.click("alert_silence", group_id, user="U0ALICE", channel=CHANNEL, message_ts=ts)
        approval_message = await slack.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == ts
                                                and "Approval needed" in c.text_blob())
        (approval,) = await bot.runtime.store.approvals()
        assert approval.requester == "U0ALICE" and approval.id in approval_message.text_blob()
        proposed = [r for r in await bot.runtime.store.audit_log() if r.event == "proposed"]
        assert [(r.actor, r.kind, r.via) for r in proposed] == [("U0ALICE", "silence", ALERT_THREAD)]
        await bot.click("approval_approve", approval.id, user="U0CAROL", channel=CHANNEL, thread_ts=ts)
        await bot.idle()
        assert (await bot.runtime.store.get_approval(approval.id)).status == "pending"  # type: ignore[union-attr]


async def test_secrets_in_annotations_never_reach_the_thread(alerting: Alerting) -> None:
    leaky = alert()
    leaky["annotations"] = {"summary": "db down: postgres://app:hunter2secret@db:5432/shop",
                            "description": "password=s3cr3t-value", "runbook_url": "https://wiki/x?token=abcdef123456"}
    await alerting.post(payload(leaky))
    await alerting.settle()
    said = alerting.slack.texts()
    assert alerting.roots() and "[REDACTED]" in said
    for secret in ("hunter2secret", "s3cr3t-value", "abcdef123456", TOKEN):
        assert secret not in said


# --- the control plane's alerts, polled into the same flow -----------------------------------------
@pytest.fixture
async def control_plane() -> AsyncIterator[Any]:
    from tests.fakes.control_plane import ControlPlaneFake, load_shop_scenario

    async with ControlPlaneFake() as cp:
        load_shop_scenario(cp)
        yield cp


def plane_env(cp: Any, tmp_path: Path, *, poll: bool) -> dict[str, str]:
    env = bot_env(tmp_path)
    path = tmp_path / "srebot-plane.toml"
    path.write_text(CONFIG.replace('cooldown = "30m"', f'cooldown = "30m"\npoll_control_plane = {str(poll).lower()}\npoll_interval = "1h"'))
    return {**env, "SREBOT_CONFIG": str(path), "CONTROL_PLANE_URL": cp.url,
            "CONTROL_PLANE_TOKEN_URL": cp.token_url, "CONTROL_PLANE_CLIENT_ID": cp.client_id,
            "CONTROL_PLANE_CLIENT_SECRET": cp.client_secret}


async def test_control_plane_polling_is_off_by_default(slack: SlackFake, db_file: str, tmp_path: Path, control_plane: Any) -> None:
    async with SlackBot(slack, db_file, engine=ScriptedEngine(), env=plane_env(control_plane, tmp_path, poll=False)) as bot:
        assert bot.runtime.alert_poller is None
        assert not [r for r in control_plane.requests if "/alerts" in r[1]]


async def test_control_plane_alerts_get_a_thread_once_and_resolve_when_they_stop(
    slack: SlackFake, db_file: str, tmp_path: Path, control_plane: Any
) -> None:
    engine = ScriptedEngine()
    async with SlackBot(slack, db_file, engine=engine, env=plane_env(control_plane, tmp_path, poll=True)) as bot:
        from bot.alerts.poller import ControlPlanePoller
        from tools.control_plane import ControlPlane

        alerting = Alerting(slack, bot, engine)
        # the server's poller polls once at start (then every hour here)
        await slack.wait_for("chat.postMessage", lambda c: c.args.get("channel") == CHANNEL)
        await asyncio.wait_for(engine.finished.wait(), 10)
        # more rounds, as another replica would poll: without the tool's 15 s cache, to see the change at once
        fresh = ControlPlane(control_plane.url, token_url=control_plane.token_url, client_id=control_plane.client_id,
                             client_secret=control_plane.client_secret, cache_ttl=0)
        poller = ControlPlanePoller(bot.runtime.alerts, fresh, 3600)
        assert await poller.poll() == ["duplicate"]
        (root,) = alerting.roots()
        assert "Firing: CheckoutHighErrorRate — checkout" in root.text_blob()
        assert len(alerting.investigations()) == 1
        assert alerting.investigations()[0].alert.source == "control_plane"
        control_plane.alerts[0]["status"] = "resolved"
        assert await poller.poll() == ["resolved"]
        await alerting.settle()
        ts = root.response["ts"]
        assert any("Resolved: CheckoutHighErrorRate" in c.text_blob()
                   for c in slack.calls_to("chat.update", lambda c: c.args.get("ts") == ts))
        # a control-plane alert cannot be silenced in Alertmanager: said, nothing proposed
        group_id = root.args["blocks"][-1]["elements"][0]["value"]
        outcome = await bot.runtime.alerts.press(group_id, "silence", person("U0ALICE"))
        assert not outcome.accepted and "nothing to silence" in outcome.message
        await fresh.aclose()


async def test_acknowledge_incident_from_an_alert_thread_goes_through_four_eyes(
    slack: SlackFake, db_file: str, tmp_path: Path, control_plane: Any
) -> None:
    async with SlackBot(slack, db_file, engine=ScriptedEngine(), env=plane_env(control_plane, tmp_path, poll=False)) as bot:
        alerting = Alerting(slack, bot, bot.engine)
        await alerting.post(payload())
        await alerting.settle()
        (root,) = alerting.roots()
        ts, group_id = root.response["ts"], root.args["blocks"][-1]["elements"][1]["value"]
        await bot.click("alert_ack", group_id, user="U0ALICE", channel=CHANNEL, message_ts=ts)
        approval = await slack.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == ts
                                        and "Approval needed" in c.text_blob())
        assert "acknowledge incident INC-101" in approval.text_blob()
        approval_id = approval.args["blocks"][-1]["elements"][0]["value"]
        await bot.click("approval_approve", approval_id, user="U0ALICE", channel=CHANNEL, thread_ts=ts)  # the requester
        await bot.slack.intake.idle()
        assert not [a for a in control_plane.actions if a.path.endswith("/acknowledge")]
        await bot.click("approval_approve", approval_id, user="U0BOB", channel=CHANNEL, thread_ts=ts)
        await bot.slack.intake.idle()
        (ack,) = [a for a in control_plane.actions if a.path.endswith("/acknowledge")]
        assert "INC-101" in ack.path


async def test_a_teams_destination_is_unrouted_where_teams_is_not_served(slack: SlackFake, db_file: str, tmp_path: Path) -> None:
    env = bot_env(tmp_path)
    path = tmp_path / "teams.toml"
    path.write_text(CONFIG.replace('slack_channel = "CALERTS"', 'teams_conversation = "19:abc@thread.tacv2"\n'
                                   'teams_service_url = "https://smba.trafficmanager.net/emea/"'))
    engine = ScriptedEngine()
    async with SlackBot(slack, db_file, engine=engine, env={**env, "SREBOT_CONFIG": str(path)}) as bot:
        assert await bot.runtime.alerts.receive(AlertGroup.from_webhook(WebhookPayload.model_validate(payload()))) == "unrouted"
        assert [r["status"] for r in await group_rows(bot)] == ["firing"]
        assert engine.requests == []


async def test_alert_groups_of_one_workload_share_one_investigation(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alertmanager grouped by alertname: the error-rate and latency alerts of checkout are two groups, two threads,
    and one investigation of checkout; the second thread says where it is."""
    await asyncio.gather(
        alerting.post(payload(alert())),
        alerting.post(payload(alert("HighLatency", fingerprint="fp-2"), key='{}:{alertname="HighLatency"}')),
    )
    await alerting.settle()
    roots = alerting.roots()
    assert len(roots) == 2
    assert len(alerting.investigations()) == 1
    pointers = alerting.slack.calls_to("chat.postMessage", lambda c: "already being investigated" in c.text_blob())
    assert len(pointers) == 1
    investigated = alerting.investigations()[0].key.thread
    other = next(r for r in roots if r.response["ts"] != investigated)
    assert pointers[0].args["thread_ts"] == other.response["ts"]
    title = next(r for r in roots if r.response["ts"] == investigated).args["blocks"][0]["text"]["text"]
    assert title.split(" ", 1)[1] in pointers[0].text_blob()
    # "Investigate again" in the second thread runs one there
    group_id = other.args["blocks"][-1]["elements"][2]["value"]
    monkeypatch.setattr("bot.alerts.desk.AGAIN_GUARD", timedelta(0))  # the first investigation has just started
    assert (await alerting.bot.runtime.alerts.press(group_id, "investigate", person("U0ALICE"))).accepted
    await alerting.settle()
    assert len(alerting.investigations()) == 2


def test_silence_is_one_declaration_of_the_action_registry() -> None:
    from bot.actions import REGISTRY, NotProposed, by_tool

    silence = REGISTRY["silence"]
    assert by_tool("silence_alerts") is silence and not silence.needs_service

    def lookup(name: str, namespace: str) -> Any:
        raise AssertionError("a silence names labels, not a service")

    action = silence.from_tool({"labels_json": '{"service": "checkout", "alertname": "HighErrorRate"}', "hours": 2}, lookup)
    assert action.target == 'alertname="HighErrorRate",service="checkout"'
    assert action.params == {"matchers": {"service": "checkout", "alertname": "HighErrorRate"}, "seconds": 7200}
    for bad in ({"labels_json": "{}"}, {"labels_json": "nope"}, {"labels_json": '{"a": "b"}', "hours": 400}):
        with pytest.raises(ValueError):
            silence.from_tool(bad, lookup)
    with pytest.raises(NotProposed):
        asyncio.run(silence.from_chat(None))  # type: ignore[arg-type]


async def test_a_notification_the_database_cannot_store_is_503_so_alertmanager_sends_it_again(
    slack: SlackFake, tmp_path: Path
) -> None:
    from tests.conftest import _drop_pg_database, pg_database

    async with pg_database() as database, SlackBot(slack, database, engine=ScriptedEngine(), env=bot_env(tmp_path)) as bot:
        alerting = Alerting(slack, bot, bot.engine)
        await _drop_pg_database(database)  # the database goes away under the running bot
        status, body = await alerting.post(payload())
        await alerting.settle()
        assert status == 503 and "send it again" in body
        assert alerting.roots() == []
        assert metric("srebot_alerts_rejected_total", reason="unavailable") >= 1
