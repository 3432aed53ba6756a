"""Answers in Slack: Block Kit layout, Slack's size limits (split or file snippet), 429 retries, failures."""

from __future__ import annotations

import json
import logging

from bot.answer import (
    Action,
    Answer,
    Finding,
    Link,
    Recommendation,
    RuledOut,
    ToolStatus,
)
from integrations.slack import blocks
from tests.fakes.slack import Call, SlackBot, SlackFake, in_thread
from tests.helpers import ScriptedEngine

SEVERITIES = ("critical", "warning", "info")


def many_findings(count: int, evidence_size: int = 40) -> list[Finding]:
    return [
        Finding(severity=SEVERITIES[i % 3], source="metrics", title=f"finding-{i:04d} error ratio <high> & rising",
                evidence=f"sum(rate(x{{i=\"{i}\"}}[5m])) " + "e" * evidence_size)
        for i in range(count)
    ]


def answer_with(findings: list[Finding]):
    def build(request, session) -> Answer:
        return Answer(intent="diagnose", service="checkout", namespace="shop", summary="Lots found.",
                      findings=findings, session_id=session.id)

    return build


def messages_in(slack: SlackFake, thread: str, placeholder_ts: str) -> list[Call]:
    """The answer's messages: the update of the placeholder, then the posts after it."""
    update = slack.calls_to("chat.update", lambda c: c.args["ts"] == placeholder_ts)[-1]
    posts = [c for c in slack.calls_to("chat.postMessage", in_thread(thread)) if c.at >= update.at]
    return [update, *posts]


def assert_within_limits(call: Call) -> None:
    assert len(call.args["text"]) <= blocks.TEXT_LIMIT
    assert len(call.args["blocks"]) <= blocks.BLOCKS_PER_MESSAGE
    for block in call.args["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= blocks.SECTION_LIMIT
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= blocks.HEADER_LIMIT


async def run_mention(slack: SlackFake, db_file: str, engine: ScriptedEngine, *, details: bool = False) -> tuple[str, str]:
    """A mention answered by `engine`; with `details`, "Show details" is pressed on the answer too."""
    async with SlackBot(slack, db_file, engine=engine) as bot:
        mention = slack.app_mention("<@UBOT> diagnose checkout")
        await bot.event(mention)
        placeholder = await slack.wait_for("chat.postMessage", in_thread(mention["ts"]))
        await bot.idle()
        if details:
            answer = slack.calls_to("chat.update", lambda c: c.args["ts"] == placeholder.response["ts"])[-1]
            [request_id] = [b["value"] for b in buttons(answer) if b["action_id"] == blocks.DETAILS_ACTION]
            status, _ = await bot.click(blocks.DETAILS_ACTION, request_id, message_ts=answer.args["ts"],
                                        thread_ts=mention["ts"], block_id="answer_more")
            assert status == 200
            await bot.idle()
    return mention["ts"], placeholder.response.get("ts", "")


def buttons(call: Call) -> list[dict]:
    return [e for b in call.args["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def test_answer_layout_in_block_kit(slack: SlackFake, db_file: str) -> None:
    def build(request, session) -> Answer:
        return Answer(
            intent="diagnose", service="checkout", namespace="shop", confidence=0.8,
            summary="checkout is failing: errors started 2 min after the rollout of v2.1.0. Ruled out: OOM.",
            findings=[
                Finding(severity="info", source="kubernetes", title="3/3 pods ready"),
                Finding(severity="critical", source="metrics", title="Error rate 8.3% (critical > 5%)",
                        evidence='sum(rate(http_requests_total{status=~"5.."}[5m]))'),
                Finding(severity="warning", source="logs", title="1,204 × NullPointerException"),
            ],
            ruled_out=[RuledOut(cause="OOM", why="memory at 35 % of its limit")],
            recommendations=[Recommendation(title="Roll back checkout to revision 6",
                                            action=Action(kind="rollback", target="shop/checkout"))],
            links=[Link(title="Grafana", url="https://grafana.example/d/abc")],
            tools=[ToolStatus(name="metrics", ok=True, ms=120),
                   ToolStatus(name="logs", ok=False, error="unreachable: logs query_range: cannot connect (connection refused)")],
            session_id=session.id,
        )

    thread, placeholder = await run_mention(slack, db_file, ScriptedEngine(answer=build), details=True)
    answer = slack.calls_to("chat.update", lambda c: c.args["ts"] == placeholder)[-1]
    kinds = [b["type"] for b in answer.args["blocks"]]
    # short first: the verdict as the header, never a success mark on a failing service
    assert kinds[0] == "header" and kinds[-1] == "context_actions"
    assert answer.args["blocks"][0]["text"]["text"] == "🔴 Failing · shop/checkout"
    short = json.dumps(answer.args["blocks"], ensure_ascii=False)
    assert "checkout is failing: errors started 2 min after the rollout of v2.1.0." in short
    assert "Ruled out" not in short and "OOM" not in short  # that is in the details
    assert "I could not reach Loki (connection refused) — `srebot check` shows each backend's state" in short
    evidence = [b["text"]["text"] for b in answer.args["blocks"] if b["type"] == "section"]
    assert "• Error rate 8.3% (critical &gt; 5%)\n• 1,204 × NullPointerException" in evidence
    assert "*Next:* Roll back checkout to revision 6" in evidence  # not proposed (no approval): advice only
    assert [b["action_id"] for b in buttons(answer)] == [blocks.DETAILS_ACTION]
    feedback = answer.args["blocks"][-1]["elements"][0]
    assert feedback["type"] == "feedback_buttons" and feedback["positive_button"]["value"].startswith("good req_")
    assert "Error rate 8.3%" in answer.args["text"]  # the plain-text notification fallback
    assert_within_limits(answer)
    # "Show details" posts the rest in the thread: findings by severity, queries as code, ruled out, links, tools
    [details] = [c for c in slack.calls_to("chat.postMessage", in_thread(thread)) if "Details ·" in c.text_blob()]
    body = "\n".join(b["text"]["text"] for b in details.args["blocks"] if b["type"] == "section")
    assert body.index("Critical (1)") < body.index("Warning (1)") < body.index("Info (1)")
    code = [b for b in details.args["blocks"] if b["type"] == "rich_text"]
    assert code[0]["elements"][0]["type"] == "rich_text_preformatted"
    assert code[0]["elements"][0]["elements"][0]["text"] == 'sum(rate(http_requests_total{status=~"5.."}[5m]))'
    assert "*Ruled out*" in body and "OOM" in body and "Roll back checkout to revision 6" in body
    assert "<https://grafana.example/d/abc|Grafana>" in body
    [table] = [b for b in details.args["blocks"] if b["type"] == "table"]
    titles, *rows = table["rows"]
    assert [c["elements"][0]["elements"][0] for c in titles][0] == {"type": "text", "text": "Backend",
                                                                    "style": {"bold": True}}
    assert [row[0]["text"] for row in rows] == ["metrics", "logs"]
    assert_within_limits(details)


async def test_long_details_are_split_and_nothing_is_dropped(slack: SlackFake, db_file: str) -> None:
    findings = many_findings(200)
    thread, placeholder = await run_mention(slack, db_file, ScriptedEngine(answer=answer_with(findings)), details=True)
    answer = slack.calls_to("chat.update", lambda c: c.args["ts"] == placeholder)[-1]
    assert_within_limits(answer)
    assert len(answer.args["blocks"]) <= 12  # the first message stays short whatever the answer's size
    sent = [c for c in slack.calls_to("chat.postMessage", in_thread(thread)) if c.at > answer.at]
    assert len(sent) > 1
    for call in sent:
        assert_within_limits(call)
    text = "\n".join(c.text_blob() for c in sent)
    missing = [f.title for f in findings if blocks.escape(f.title) not in text]
    assert missing == []
    assert not slack.calls_to("files.getUploadURLExternal")


async def test_huge_details_are_attached_as_a_file(slack: SlackFake, db_file: str) -> None:
    findings = many_findings(1500, evidence_size=200)
    thread, placeholder = await run_mention(slack, db_file, ScriptedEngine(answer=answer_with(findings)), details=True)
    first = slack.calls_to("chat.update", lambda c: c.args["ts"] == placeholder)[-1]
    assert_within_limits(first)
    details = [c for c in slack.calls_to("chat.postMessage", in_thread(thread)) if "Details ·" in c.text_blob()]
    assert len(details) == 1 and "attached below as a file" in details[0].text_blob()
    assert_within_limits(details[0])
    complete = slack.calls_to("files.completeUploadExternal")[0]
    assert complete.args["channel_id"] == "C0INCIDENT" and complete.args["thread_ts"] == thread
    content = slack.uploads[0].content
    assert [f.title for f in findings if f.title not in content] == []


async def test_failed_upload_falls_back_to_messages(slack: SlackFake, db_file: str) -> None:
    slack.fail("files.getUploadURLExternal", "missing_scope")
    findings = many_findings(1500, evidence_size=200)
    thread, _ = await run_mention(slack, db_file, ScriptedEngine(answer=answer_with(findings)), details=True)
    posts = slack.calls_to("chat.postMessage", in_thread(thread))
    for call in posts:
        assert_within_limits(call)
    text = "\n".join(c.text_blob() for c in posts)
    assert [f.title for f in findings if blocks.escape(f.title) not in text] == []


async def test_rate_limit_is_retried_after_retry_after(slack: SlackFake, db_file: str) -> None:
    slack.rate_limit(1, retry_after=1, method="chat.postMessage")
    thread, placeholder = await run_mention(slack, db_file, ScriptedEngine())
    attempts = [c for c in slack.calls if c.method == "chat.postMessage"]
    assert [c.status for c in attempts[:2]] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 1.0
    assert attempts[1].args["thread_ts"] == thread
    assert slack.calls_to("chat.update", lambda c: c.args["ts"] == placeholder and "Answer to" in c.text_blob())


async def test_connection_errors_are_retried(slack: SlackFake, db_file: str) -> None:
    slack.disconnect(1, method="chat.update")
    _, placeholder = await run_mention(slack, db_file, ScriptedEngine())
    attempts = [c for c in slack.calls if c.method == "chat.update"]
    assert [c.status for c in attempts] == [0, 200]
    assert "Answer to" in attempts[1].text_blob() and attempts[1].args["ts"] == placeholder


async def test_undeliverable_answer_is_logged_with_the_request_id(slack: SlackFake, db_file: str, caplog) -> None:
    slack.fail("chat.postMessage", "channel_not_found", times=10)
    engine = ScriptedEngine()
    with caplog.at_level(logging.ERROR, logger="srebot.slack"):
        await run_mention(slack, db_file, engine)
    request_id = engine.requests[0].request_id
    failures = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert failures and any(getattr(r, "error", None) == "channel_not_found" for r in failures)


def test_mrkdwn_is_escaped_and_sections_are_packed() -> None:
    rendered = blocks.render_text("<!channel> & <@U123> " + "x" * 7000)
    section_texts = [b["text"]["text"] for m in rendered.messages for b in m.blocks]
    assert section_texts[0].startswith("&lt;!channel&gt; &amp; &lt;@U123&gt;")
    assert all(len(t) <= blocks.SECTION_LIMIT for t in section_texts)
    assert sum(len(t) for t in section_texts) >= 7000
