"""The Teams integration's pure parts: mention stripping, session keys, the serviceUrl allow-list, and the Adaptive Cards."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from microsoft_agents.activity import Activity

from bot.answer import Answer, Chart, Finding, Link, Recommendation, ToolStatus
from bot.chart import draw
from integrations.teams.auth import ServiceUrls, same_service_url
from integrations.teams.bot import conversation_key, strip_bot_mention, user_of
from integrations.teams.cards import (
    CARD_BUDGET,
    CHART_COLOURS,
    CHART_HEIGHT,
    CHART_WIDTH,
    DECIDE_VERB,
    MAX_PARTS,
    REFRESH_VERB,
    ApprovalView,
    answer_cards,
    approval_card,
    payload_size,
)
from sessions.store import ApprovalRecord, utcnow
from tests.fakes.bot_connector import (
    ALICE,
    BOB,
    BOT_ID,
    card_text,
    channel_message,
    personal_message,
    thread_reply,
)

SERVICE_URL = "http://connector.invalid/"


def activity(data: dict) -> Activity:
    return Activity.model_validate(data)


# --- pure helpers --------------------------------------------------------------------------------
def test_mention_stripping_is_literal_and_keeps_other_mentions() -> None:
    data = channel_message(SERVICE_URL, "diagnose checkout")
    data["text"] = "<at>sre.bot (prod)</at> diagnose checkout &amp; ask <at>Bob</at>&nbsp;"
    data["entities"] = [
        {"type": "mention", "text": "<at>sre.bot (prod)</at>", "mentioned": {"id": BOT_ID, "name": "sre.bot (prod)"}},
        {"type": "mention", "text": "<at>Bob</at>", "mentioned": {"id": BOB.id, "name": "Bob"}},
    ]
    assert strip_bot_mention(activity(data)) == "diagnose checkout & ask <at>Bob</at>"


def test_conversation_key_makes_a_channel_thread_one_session() -> None:
    root = activity(channel_message(SERVICE_URL, "diagnose checkout", activity_id="1700"))
    reply = activity(thread_reply(SERVICE_URL, "and logs?", root_id="1700"))
    assert conversation_key(root) == conversation_key(reply)
    key = conversation_key(reply)
    assert key.platform == "teams" and key.workspace == "tenant-0001"
    assert key.channel == "19:incidents@thread.tacv2" and key.thread == "19:incidents@thread.tacv2;messageid=1700"
    personal = activity(personal_message(SERVICE_URL, "hi"))
    assert conversation_key(personal).channel == conversation_key(personal).thread
    assert user_of(personal) == ALICE.aad_object_id
    del personal.channel_data["tenant"]
    personal.conversation.tenant_id = None
    assert conversation_key(personal).workspace == "default"


# --- cards ---------------------------------------------------------------------------------------
def _approval(**changes) -> ApprovalRecord:
    now = utcnow()
    values = dict(id="apr_1", kind="rollback", target="shop/checkout", params={}, description="Roll back checkout",
                  requester="aad-alice", platform="teams", status="pending", session_id=None, request_id=None,
                  created_at=now, expires_at=now + timedelta(minutes=30))
    values.update(changes)
    return ApprovalRecord(**values)


def test_approval_card_is_a_universal_action_with_a_view_per_person() -> None:
    names = {"aad-alice": "Alice Example", "aad-bob": "Bob Example"}
    card = approval_card(_approval(), names=names, approver_ids=["29:1bob"])
    assert card["version"] == "1.4"
    assert card["refresh"]["userIds"] == ["29:1bob"] and card["refresh"]["action"]["verb"] == REFRESH_VERB
    assert [(a["type"], a["verb"]) for a in card["actions"]] == [("Action.Execute", REFRESH_VERB)]
    text = card_text(card)
    assert "Roll back checkout" in text and "Requested by: Alice Example" in text and "UTC" in text

    approver = approval_card(_approval(), names=names, view=ApprovalView(can_approve=True, can_reject=True))
    assert [a["title"] for a in approver["actions"]] == ["Approve", "Reject"]
    for action, decision in zip(approver["actions"], ("approve", "reject")):
        assert action["type"] == "Action.ShowCard"  # the confirmation step
        [confirm] = action["card"]["actions"]
        assert confirm["verb"] == DECIDE_VERB
        assert confirm["data"] == {"srebot": "approval", "approval_id": "apr_1", "decision": decision}
    watcher = approval_card(_approval(), view=ApprovalView(note="You are not in the approvers list"))
    assert "actions" not in watcher and "You are not in the approvers list" in card_text(watcher)

    decided = approval_card(_approval(status="executed", decided_by="aad-bob", decided_at=utcnow(), result="ok"),
                            names=names, approver_ids=["29:1bob"])
    assert "actions" not in decided and "refresh" not in decided
    assert "Approved by Bob Example" in card_text(decided) and "aad-bob" not in card_text(decided)


def test_service_urls_allow_teams_hosts_and_configured_prefixes_only() -> None:
    urls = ServiceUrls(("http://127.0.0.1:8080/teams/",))
    for allowed in ("https://smba.trafficmanager.net/emea/", "https://smba.trafficmanager.net/amer/x",
                    "https://europe.webchat.botframework.com/", "http://127.0.0.1:8080/teams/",
                    "http://127.0.0.1:8080/teams/v3/"):
        assert urls.allows(allowed), allowed
    for refused in ("http://smba.trafficmanager.net/emea/", "https://smba.trafficmanager.net.evil.example/",
                    "https://evilsmba.trafficmanager.net/", "https://user:pw@smba.trafficmanager.net/",
                    "https://smba.trafficmanager.net:8443/", "http://127.0.0.1:8080/teamsx/",
                    "http://127.0.0.1:8081/teams/", "http://localhost:8080/teams/", "file:///etc/passwd",
                    "not a url", "", None):
        assert not urls.allows(refused), refused
    assert same_service_url("https://SMBA.trafficmanager.net/emea", "https://smba.trafficmanager.net/emea/")
    assert not same_service_url("https://smba.trafficmanager.net/emea/", "https://smba.trafficmanager.net/amer/")


def test_answer_card_is_short_first_with_the_rest_behind_show_details() -> None:
    answer = Answer(
        intent="diagnose", service="checkout", namespace="shop", summary="Errors after the rollout.",
        findings=[Finding(severity="info", source="kubernetes", title="3 pods ready"),
                  Finding(severity="critical", source="metrics", title="Error rate 8.3%",
                          evidence='sum(rate(http_requests_total{pod=~"api-.*",code=~"5.."}[5m]))')],
        recommendations=[Recommendation(title="Roll back checkout", approval_id="apr_1")],
        links=[Link(title="Grafana", url="https://grafana.example/d/abc")],
        tools=[ToolStatus(name="metrics", ok=True, ms=120), ToolStatus(name="cost", ok=False, error="not configured")],
        confidence=0.8, session_id="s_1",
    )
    [card] = answer_cards(answer)
    header = card["body"][0]
    assert header["style"] == "attention" and card_text(header) == "🔴 Failing · shop/checkout"
    assert header["items"][0]["color"] == "Attention"
    [details] = [b for b in card["body"] if b.get("id") == "details"]
    assert details["isVisible"] is False
    assert card["actions"] == [{"type": "Action.ToggleVisibility", "title": "Show details", "targetElements": ["details"]}]
    short = card_text({"body": [b for b in card["body"] if b is not details]})
    assert "Errors after the rollout." in short and "Error rate 8.3%" in short and "Proposed: Roll back checkout" in short
    assert "Critical (1)" not in short and "3 pods ready" not in short  # behind "Show details"
    assert "Cost Explorer is not configured" in short  # what could not be checked, up front
    hidden = card_text(details)
    assert hidden.index("Critical (1)") < hidden.index("Error rate 8.3%") < hidden.index("Info (1)") < hidden.index("3 pods")
    for expected in ("Roll back checkout", "apr_1", "[Grafana](https://grafana.example/d/abc)", "metrics ✓ 120 ms",
                     "cost ✗ AWS Cost Explorer is not configured"):
        assert expected in hidden
    assert "confidence 80%" in short and "session s_1" in short
    # the query is a TextRun in monospace: never read as markdown, so `.*` survives as typed
    [query] = [r for b in details["items"] for r in _runs(b) if "pod=~" in r["text"]]
    assert query["text"] == 'sum(rate(http_requests_total{pod=~"api-.*",code=~"5.."}[5m]))'
    assert query["fontType"] == "Monospace"


def _runs(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "TextRun":
            return [node]
        return [r for value in node.values() for r in _runs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _runs(value)]
    return []


def test_a_chart_is_an_inline_image_in_the_card() -> None:
    answer = Answer(intent="diagnose", service="checkout", summary="checkout is failing.", session_id="s_1",
                    findings=[Finding(severity="critical", source="metrics", title="Error rate 8.3%")],
                    chart=Chart(title="Error rate of checkout", unit="ratio", query="q",
                                points=[(utcnow() - timedelta(minutes=10 - i), 0.08 * (i > 5)) for i in range(10)],
                                warning=0.01, critical=0.05))
    png = draw(answer.chart, width=CHART_WIDTH, height=CHART_HEIGHT, colours=CHART_COLOURS)
    [card] = answer_cards(answer, png)
    [image] = [b for b in card["body"] if b["type"] == "Image"]
    assert image["url"].startswith("data:image/png;base64,") and base64.b64decode(image["url"].split(",", 1)[1]) == png
    assert image["altText"] == "Error rate of checkout over the window"
    assert len(png) < 8_000 and payload_size(card) <= CARD_BUDGET


def test_a_chart_that_does_not_fit_beside_the_details_goes_in_its_own_card_and_the_details_stay_hidden() -> None:
    findings = [Finding(severity="info", source="logs", title=f"finding {i}", evidence="e" * 300) for i in range(10)]
    answer = Answer(intent="diagnose", service="checkout", summary="checkout is failing.", session_id="s_1",
                    findings=[Finding(severity="critical", source="metrics", title="Error rate 8.3%"), *findings],
                    chart=Chart(title="Error rate of checkout", unit="ratio", query="q",
                                points=[(utcnow() - timedelta(minutes=10 - i), 0.08 * (i > 5)) for i in range(10)],
                                warning=0.01, critical=0.05))
    png = draw(answer.chart, width=CHART_WIDTH, height=CHART_HEIGHT, colours=CHART_COLOURS)
    budget = payload_size(answer_cards(answer)[0]) + 1_000  # room for the details, not for the chart beside them
    first, chart = answer_cards(answer, png, budget=budget)
    assert [a["title"] for a in first["actions"]] == ["Show details"]  # the details stay behind the toggle
    assert not [b for b in first["body"] if b["type"] == "Image"]
    assert [b["type"] for b in chart["body"]] == ["Image"]
    assert all(payload_size(c) <= budget for c in (first, chart))


def test_oversized_answers_are_split_and_never_dropped_silently() -> None:
    findings = [Finding(severity="warning", source="logs", title=f"f{i}", evidence="e" * 3000) for i in range(20)]
    cards = answer_cards(Answer(summary="s " * 20_000, findings=findings, session_id="s_1"))
    assert 1 < len(cards) <= MAX_PARTS
    assert all(payload_size(c) <= CARD_BUDGET for c in cards)
    assert "The details follow in the next message." in card_text(cards[0])
    assert "20 more findings in the next message" in card_text(cards[1])
    assert all(f"f{i} · logs" in "".join(card_text(c) for c in cards) for i in range(20))

    huge = [Finding(severity="info", source="logs", title=f"g{i}", evidence="e" * 9000) for i in range(200)]
    cards = answer_cards(Answer(summary="s", findings=huge, session_id="s_1"))
    assert len(cards) == MAX_PARTS
    assert all(payload_size(c) <= CARD_BUDGET for c in cards)
    assert "more findings and further details are not shown" in card_text(cards[-1])
