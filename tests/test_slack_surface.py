"""Slack's surface around an answer, through signed requests to the real app: the chart uploaded into the
thread, feedback buttons stored with the turn (and listed by `srebot feedback`), the App Home with recent alerts,
open investigations and pending approvals (approvable there), and suggested prompts in new assistant threads."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from bot.answer import Action, Answer, Chart, ChartMark, Finding, Recommendation
from bot.cli import main
from integrations.slack import blocks
from sessions.store import Proposal, utcnow
from tests.fakes.slack import SlackBot, SlackFake, in_thread
from tests.helpers import ScriptedEngine

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REQUESTER, APPROVER = "U0ALICE", "U0BOB"


def failing(request, session) -> Answer:
    now = utcnow()
    return Answer(
        intent="diagnose", service="checkout", namespace="shop", summary="checkout is failing.", session_id=session.id,
        findings=[Finding(severity="critical", source="metrics", title="Error rate 8.3% (critical > 5%)")],
        chart=Chart(title="Error rate of checkout", unit="ratio", query="sum(rate(x[5m]))",
                    points=[(now - timedelta(minutes=15 - i), 0.08 if i > 9 else 0.001) for i in range(16)],
                    warning=0.01, critical=0.05,
                    marks=[ChartMark(at=now - timedelta(minutes=6), label="v2.1.0 rolled out"),
                           ChartMark(at=now - timedelta(minutes=5), label="onset", kind="onset")]),
    )


async def asked(slack: SlackFake, bot: SlackBot, user: str = REQUESTER) -> tuple[str, str]:
    """A mention answered; returns the thread and the answer's request id (from its feedback buttons)."""
    mention = slack.app_mention("<@UBOT> diagnose checkout", user=user)
    await bot.event(mention)
    await bot.idle()
    answer = [c for c in slack.calls if c.method in ("chat.postMessage", "chat.update")
              and any(b["type"] == "context_actions" for b in c.args.get("blocks", []))][-1]
    feedback = next(b for b in answer.args["blocks"] if b["type"] == "context_actions")["elements"][0]
    return mention["ts"], feedback["positive_button"]["value"].split(" ", 1)[1]


async def test_a_diagnosis_chart_is_uploaded_into_the_thread(slack: SlackFake, db_file: str) -> None:
    async with SlackBot(slack, db_file, engine=ScriptedEngine(answer=failing)) as bot:
        thread, _ = await asked(slack, bot)
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == "C0INCIDENT" and complete.args["thread_ts"] == thread
    [upload] = slack.uploads
    assert upload.filename == "checkout-error-rate.png" and upload.data.startswith(PNG_MAGIC)
    assert complete.args["files"][0]["title"] == "Error rate of checkout"
    answer = slack.calls_to("chat.update")[-1]
    assert answer.at < complete.at  # the answer first, the picture after it


async def test_feedback_is_stored_with_the_turn_and_listed(slack: SlackFake, db_file: str, monkeypatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    async with SlackBot(slack, db_file, engine=ScriptedEngine(answer=failing)) as bot:
        thread, request_id = await asked(slack, bot)
        for user, rating in ((REQUESTER, "good"), (APPROVER, "good"), (APPROVER, "bad")):  # a change of mind
            status, _ = await bot.click(blocks.FEEDBACK_ACTION, f"{rating} {request_id}", user=user,
                                        thread_ts=thread, block_id=f"feedback_{request_id}", element="feedback_buttons")
            assert status == 200
            await bot.idle()
        await bot.click(blocks.FEEDBACK_ACTION, "meh req_nonsense", element="feedback_buttons")
        await bot.idle()
        rows = await bot.runtime.store.feedback()
    assert sorted((r.user_id, r.rating) for r in rows) == [(REQUESTER, "good"), (APPROVER, "bad")]
    assert {r.turn.request_id for r in rows} == {request_id} and rows[0].turn.text == "diagnose checkout"
    thanks = slack.calls_to("chat.postEphemeral")
    assert len(thanks) == 3 and "test case" in thanks[-1].args["text"]

    monkeypatch.setenv("DATABASE_URL", db_file)
    assert await asyncio.to_thread(main, ["feedback", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert "👎 U0BOB" in out and "👍 U0ALICE" in out and request_id in out
    assert "“diagnose checkout” → Failing · shop/checkout" in out
    assert await asyncio.to_thread(main, ["feedback", "--since", "1h", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {e["rating"] for e in listed} == {"good", "bad"} and listed[0]["verdict"] == "Failing · shop/checkout"
    assert await asyncio.to_thread(main, ["feedback", "--since", "yesterday-ish"]) != 0


def proposing(runtime_box: list) -> ScriptedEngine:
    async def propose(request, session) -> Answer:
        approval = await runtime_box[0].approvals.propose(
            Proposal("restart", "shop/checkout", {}, "restart 3 pods of shop/checkout (rolling restart)",
                     request.origin(session.id)))
        return Answer(intent="action", service="checkout", summary="A restart should help.", session_id=session.id,
                      recommendations=[Recommendation(title="Restart checkout", approval_id=approval.id,
                                                      action=Action(kind="restart", target="shop/checkout"))])
    return ScriptedEngine(answer=propose)


async def test_app_home_lists_pending_approvals_approvable_by_eligible_approvers(slack: SlackFake, db_file: str) -> None:
    box: list = []
    engine = proposing(box)
    async with SlackBot(slack, db_file, engine=engine, env={"SREBOT_APPROVERS": f"{APPROVER},{REQUESTER}"}) as bot:
        box.append(bot.runtime)
        await asked(slack, bot)
        [approval] = await bot.runtime.store.approvals("pending")
        for user in (REQUESTER, APPROVER):
            await bot.event({"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home",
                             "event_ts": slack.next_ts()})
        await bot.idle()
        views = {c.args["user_id"]: c.args["view"] for c in slack.calls_to("views.publish")}
        assert set(views) == {REQUESTER, APPROVER} and all(v["type"] == "home" for v in views.values())
        text = json.dumps(views[APPROVER], ensure_ascii=False)
        assert "Pending approvals (1)" in text and "Restart 3 pods of shop/checkout (rolling restart)" in text
        assert "Open investigations (0)" in text

        def home_buttons(view: dict) -> list[dict]:
            return [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]

        assert home_buttons(views[REQUESTER]) == []  # the requester cannot approve their own change
        [approve, reject] = home_buttons(views[APPROVER])
        assert (approve["action_id"], approve["value"], reject["action_id"]) == (
            "approval_approve", approval.id, "approval_reject")

        block = next(b["block_id"] for b in views[APPROVER]["blocks"] if b["type"] == "actions")
        status, _ = await bot.click("approval_approve", approval.id, user=APPROVER, block_id=block, home=True)
        assert status == 200
        await bot.idle()
        decided = await bot.runtime.store.get_approval(approval.id)
        assert decided.decided_by == APPROVER and decided.status in ("approved", "executed", "failed")
        again = [c.args["view"] for c in slack.calls_to("views.publish") if c.args["user_id"] == APPROVER][-1]
        assert "Pending approvals (0)" in json.dumps(again, ensure_ascii=False)
        assert "Approved" in json.dumps(again["blocks"][1], ensure_ascii=False)


async def test_new_assistant_threads_get_suggested_prompts(slack: SlackFake, db_file: str) -> None:
    async with SlackBot(slack, db_file, engine=ScriptedEngine()) as bot:
        event = {"type": "assistant_thread_started", "event_ts": slack.next_ts(),
                 "assistant_thread": {"user_id": REQUESTER, "channel_id": "D0ALICE", "thread_ts": "1700000000.000100",
                                      "context": {}}}
        status, _ = await bot.event(event)
        assert status == 200
        await bot.idle()
    [prompts] = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert prompts.args["channel_id"] == "D0ALICE" and prompts.args["thread_ts"] == "1700000000.000100"
    assert 1 <= len(prompts.args["prompts"]) <= 4 and all(p["message"] for p in prompts.args["prompts"])


async def test_app_home_shows_open_investigations_with_secrets_redacted(slack: SlackFake, db_file: str) -> None:
    gate = asyncio.Event()
    engine = ScriptedEngine(gate=gate)
    async with SlackBot(slack, db_file, engine=engine) as bot:
        await bot.event(slack.app_mention("<@UBOT> diagnose checkout password=hunter2secret"))
        await asyncio.wait_for(engine.started.wait(), 10)
        await bot.event({"type": "app_home_opened", "user": APPROVER, "channel": "D0HOME", "tab": "home",
                         "event_ts": slack.next_ts()})
        published = await slack.wait_for("views.publish")
        gate.set()
        await bot.idle()
    text = json.dumps(published.args["view"], ensure_ascii=False)
    assert "Open investigations (1)" in text and "diagnose checkout password=[REDACTED]" in text
    assert "hunter2secret" not in text and "<@U0ALICE>" in text


async def test_app_home_shows_recent_alerts_linked_to_their_threads(slack: SlackFake, db_file: str, tmp_path) -> None:
    from tests.test_alerts import Alerting, alert, bot_env, payload

    async with SlackBot(slack, db_file, engine=ScriptedEngine(), env=bot_env(tmp_path)) as bot:
        alerting = Alerting(slack, bot, None)
        await alerting.post(payload(alert()))
        await alerting.post(payload(alert("DiskFull", fingerprint="fp-9", severity="warning"),
                                    key='{}:{alertname="DiskFull"}'))
        await alerting.settle()
        await alerting.post(payload(alert("DiskFull", fingerprint="fp-9", severity="warning", status="resolved",
                                          ends="2026-12-03T10:50:00Z"), key='{}:{alertname="DiskFull"}'))
        await alerting.settle()
        roots = {c.text_blob().split(":", 1)[1].split("—")[0].strip(): c.response["ts"] for c in alerting.roots()}
        await bot.event({"type": "app_home_opened", "user": APPROVER, "channel": "D0HOME", "tab": "home",
                         "event_ts": slack.next_ts()})
        published = await slack.wait_for("views.publish")
    home = published.args["view"]["blocks"]
    texts = [b["text"]["text"] for b in home if b["type"] == "section"]
    assert texts[0] == "*Recent alerts (1 firing)*"  # what is on fire comes first
    disk, error = texts[1], texts[2]  # the latest news first: DiskFull resolved after HighErrorRate fired
    assert disk.startswith("✅ *Resolved: DiskFull — checkout*\nwarning · resolved ") and "10:50 UTC (" in disk
    assert disk.endswith(f"<https://fake.slack.com/archives/CALERTS/p{roots['DiskFull'].replace('.', '')}|Open the thread>")
    assert error.startswith("🔥 *Firing: HighErrorRate — checkout*\ncritical · since ") and "10:42 UTC (" in error
    assert f"p{roots['HighErrorRate'].replace('.', '')}|Open the thread>" in error
    assert texts.index("*Pending approvals (0)*") < texts.index("*Open investigations (0)*")
