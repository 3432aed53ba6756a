"""What a person reads first, the same for Slack and Teams: the verdict (never a success mark on a sick service or
on "nothing could be checked"), a short headline, three key evidence lines, actions that say what they change,
backend failures as something to act on; and every rendered payload of the eval corpus within the platforms'
limits, the first message fitting one phone screen."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.answer import Action, Answer, Finding, Recommendation, RuledOut, Table, ToolStatus
from bot.policy import NO_APPROVERS_HINT
from bot.chart import draw
from bot.presentation import HEADLINE_CHARS, present, steps_of, when
from devtools.eval import run_world
from devtools.world import scenario_dirs
from integrations.slack import blocks
from integrations.teams import cards as teams_cards
from integrations.teams.cards import CARD_BUDGET, CHART_COLOURS, CHART_HEIGHT, CHART_WIDTH, answer_cards, payload_size
from tools.base import exception_error

EVAL = Path(__file__).resolve().parent.parent / "eval" / "scenarios"
NOW = datetime(2026, 12, 3, 10, 56, tzinfo=UTC)
SUCCESS_MARKS = ("✅", "✔", "☑", "🟢")


def diagnosis(*findings: Finding, tools: list[ToolStatus] | None = None, **extra) -> Answer:
    return Answer(intent="diagnose", service="checkout", namespace="shop", summary="s.", findings=list(findings),
                  tools=tools if tools is not None else [ToolStatus(name="metrics", ok=True, ms=80)], **extra)


CRITICAL = Finding(severity="critical", source="kubernetes", title="3 of 3 pods CrashLoopBackOff")
WARNING = Finding(severity="warning", source="metrics", title="p99 latency 1.3 s (warning > 500 ms)")


@pytest.mark.parametrize(
    ("answer", "header"),
    [
        (diagnosis(CRITICAL), "🔴 Failing · shop/checkout"),
        (diagnosis(WARNING), "🟠 Degraded · shop/checkout"),
        (diagnosis(), "🟢 Healthy · shop/checkout"),
        (diagnosis(tools=[ToolStatus(name="metrics", ok=True), ToolStatus(name="logs", ok=False, error="timeout: x")]),
         "🟢 Healthy in what could be checked · shop/checkout"),
        (diagnosis(tools=[ToolStatus(name="metrics", ok=False, error="unreachable: m (connection refused)")]),
         "⚪ Inconclusive · shop/checkout"),
        (diagnosis(tools=[]), "⚪ Inconclusive · shop/checkout"),
        (diagnosis(CRITICAL, verdict="degraded"), "🟠 Degraded · shop/checkout"),  # the engine's verdict wins
        (Answer.failure("Timed out after 120 s while working on “diagnose checkout”. Request req_1."),
         "⚠️ Could not answer: Timed out after 120 s while working on “diagnose checkout”."),
        (Answer.failure("Cancelled “diagnose checkout”.", status="cancelled"), "⏹ Cancelled"),
        (Answer(intent="cost", service="checkout", summary="checkout cost $1,204 in the last 7 days."), "🔵 Cost · checkout"),
    ],
    ids=["failing", "degraded", "healthy", "healthy-partly", "nothing-checked", "no-tools", "engine-verdict",
         "failed-request", "cancelled", "not-a-health-question"],
)
def test_the_verdict_is_the_header(answer: Answer, header: str) -> None:
    shown = present(answer, NOW)
    assert shown.verdict.text == header
    if shown.verdict.key != "healthy":
        assert not any(mark in shown.verdict.text for mark in SUCCESS_MARKS)


def test_short_first_headline_evidence_and_actions() -> None:
    long_summary = ("checkout is failing, most likely because of the v2.1.0 rollout (revision 7 at 10:42 UTC by alice): "
                    + "; ".join(f"clause {i} with a number {i}.{i}%" for i in range(40)) + ". Ruled out: OOM.")
    answer = diagnosis(
        Finding(severity="info", source="kubernetes", title="Old news: a pod restarted 3 days ago; not the cause"),
        CRITICAL, WARNING,
        Finding(severity="critical", source="metrics", title="Error rate 8.3% (critical > 5%)"),
        Finding(severity="warning", source="logs", title="1,204 × NullPointerException"),
        since=NOW - timedelta(minutes=12),
        recommendations=[
            Recommendation(title="Roll back checkout to v2.0.3 (revision 6)", approval_id="apr_1",
                           action=Action(kind="rollback", target="shop/checkout")),
            Recommendation(title="Check the payments dependency"),
        ],
    ).model_copy(update={"summary": long_summary + " Recommended: roll back (approval apr_1)."})
    shown = present(answer, NOW)
    assert len(shown.headline) <= HEADLINE_CHARS and shown.headline.startswith("checkout is failing")
    assert "apr_" not in shown.headline
    assert shown.since == "10:44 UTC (12 min ago)"
    assert shown.evidence == ["3 of 3 pods CrashLoopBackOff", "Error rate 8.3% (critical > 5%)",
                              "p99 latency 1.3 s (warning > 500 ms)"]
    [action] = shown.actions
    assert (action.label, action.approval_id) == ("Roll back checkout to v2.0.3 (revision 6)", "apr_1")
    assert shown.next_step == "Check the payments dependency"
    assert shown.has_details


def test_a_long_headline_keeps_whole_clauses() -> None:
    summary = ("No problems found in catalog: error rate 0.3%, p99 latency 180 ms, CPU at 30% of its limit and 0 "
               "restarts; 2/2 pods ready on v1.4.2 (revision 3, rolled out 2 days ago); 298 error-looking log lines "
               "in the last 15m (top “cache miss for key=product:<num>, fetching from origin (will retry)” ×298), "
               "noise while the signals stay within thresholds.")
    shown = present(Answer(intent="diagnose", service="catalog", summary=summary), NOW)
    assert shown.headline == ("No problems found in catalog: error rate 0.3%, p99 latency 180 ms, CPU at 30% of its "
                              "limit and 0 restarts; 2/2 pods ready on v1.4.2 (revision 3, rolled out 2 days ago); …")
    assert shown.has_details  # the rest is one press away


def test_no_approvers_is_said_up_front() -> None:
    answer = diagnosis(CRITICAL, recommendations=[
        Recommendation(title="Restart checkout", approval_id="apr_2", action=Action(kind="restart", target="shop/c"))])
    answer = answer.model_copy(update={"summary": f"checkout is failing. {NO_APPROVERS_HINT}"})
    assert present(answer, NOW).next_step == NO_APPROVERS_HINT


def test_backend_failures_read_as_what_to_do_without_python() -> None:
    error = exception_error(ConnectionRefusedError(111, "Connection refused"), "logs query_range")
    assert str(error) == "unreachable: logs query_range: cannot connect (connection refused)"
    odd = exception_error(KeyError("data"), "metrics query")
    assert "KeyError" not in str(odd) and "details in the log" in str(odd)
    answer = diagnosis(CRITICAL, tools=[ToolStatus(name="metrics", ok=True),
                                        ToolStatus(name="logs", ok=False, error=str(error)),
                                        ToolStatus(name="kubernetes", ok=False, error="timeout: kubernetes: no answer"),
                                        ToolStatus(name="cost", ok=False, error="not configured")])
    assert present(answer, NOW).warning_text == (
        "I could not reach Loki (connection refused); the Kubernetes API did not answer in time; "
        "AWS Cost Explorer is not configured — `srebot check` shows each backend's state")


def test_times_are_utc_and_relative() -> None:
    assert when(NOW - timedelta(hours=2, minutes=5), NOW) == "08:51 UTC (2 h 5 min ago)"
    assert when(NOW + timedelta(minutes=30), NOW) == "11:26 UTC (in 30 min)"
    assert when(NOW - timedelta(days=3), NOW) == "2026-11-30 10:56 UTC (3 days ago)"


def test_progress_lines_read_as_steps() -> None:
    title, steps = steps_of("Checking metrics, Kubernetes, logs of checkout…")
    assert title == "Checking metrics, Kubernetes, logs of checkout…" and steps == []
    _, steps = steps_of("metrics ✓ 120 ms · logs ✗ unreachable · waiting for kubernetes, control_plane…")
    assert [(s.id, s.status) for s in steps] == [("metrics", "complete"), ("logs", "error"),
                                                 ("kubernetes", "in_progress"), ("control_plane", "in_progress")]
    _, steps = steps_of("metrics: Error rate 8.3% (critical > 5%) · kubernetes: 3 of 3 pods CrashLoopBackOff")
    assert [(s.id, s.output) for s in steps] == [("metrics", "Error rate 8.3% (critical > 5%)"),
                                                 ("kubernetes", "3 of 3 pods CrashLoopBackOff")]


# --- the eval corpus, rendered ---------------------------------------------------------------------
PHONE_BLOCKS = 12  # header, headline, a warning, evidence, next step, up to 3 action rows, details, footer, feedback
PHONE_CHARS = 1_500  # what a phone shows in one screen of a Slack thread, roughly
TEAMS_CARD_BYTES = 28_000  # Teams' documented card size (UTF-8 JSON); the budget we split at is stricter in UTF-16


def visible(blocks_: list[dict]) -> str:
    texts = []
    for block in blocks_:
        if "text" in block and isinstance(block["text"], dict):
            texts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element, dict) and isinstance(element.get("text"), (str, dict)):
                texts.append(element["text"] if isinstance(element["text"], str) else element["text"]["text"])
    return "\n".join(texts)


def assert_slack_limits(message: blocks.SlackMessage) -> None:
    assert len(message.blocks) <= blocks.BLOCKS_PER_MESSAGE and len(message.text) <= blocks.TEXT_LIMIT
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= blocks.SECTION_LIMIT
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= blocks.HEADER_LIMIT
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element["text"]["text"]) <= 75 and len(element.get("value", "")) <= 2000
    tables = [b for b in message.blocks if b["type"] == "table"]
    assert len(tables) <= 1  # Slack refuses a second table in one message
    for table in tables:
        assert 1 <= len(table["rows"]) <= blocks.TABLE_ROWS and len(table.get("column_settings", [])) <= 20
        assert all(1 <= len(row) <= blocks.TABLE_COLUMNS for row in table["rows"])
        assert len({len(row) for row in table["rows"]}) == 1  # every row has every column
        texts = [c["text"] if c["type"] == "raw_text" else c["elements"][0]["elements"][0]["text"]
                 for row in table["rows"] for c in row]
        assert all(texts) and sum(map(len, texts)) <= blocks.TABLE_CHARS


def teams_grids(card: dict) -> list[dict]:
    return [e for e in card["body"] if e["type"] == "ColumnSet"]


def pods_table(rows: int, columns: int = 5) -> Table:
    titles = ["Pod", "State", "Restarts", "Age", "Node"] + [f"extra {i}" for i in range(columns - 5)]
    return Table(title="Pods of shop/checkout (0/150 ready)", columns=titles, numeric=[2, 3],
                 rows=[[f"checkout-7c9f8d6b5d-{i:05d}", "CrashLoopBackOff", str(i), "12 min", f"node-{i % 7}"]
                       + [f"x{i}"] * (columns - 5) for i in range(rows)])


def test_a_table_reads_as_a_table_within_both_platforms_limits() -> None:
    big = Answer(intent="diagnose", service="checkout", namespace="shop", summary="shop/checkout: 0/150 ready.",
                 findings=[CRITICAL], table=pods_table(150, columns=8), tools=[ToolStatus(name="kubernetes", ok=True)],
                 ruled_out=[RuledOut(cause="OOM", why="no container was OOMKilled")])
    # with a request id the details wait behind their button; without one they follow inline, with their own
    # table of backends: two tables, so two messages
    for answer in (big.model_copy(update={"request_id": "req_1"}), big):
        rendered = blocks.render_answer(answer)
        for message in rendered.messages:
            assert_slack_limits(message)
        [table] = [b for m in rendered.messages[:1] for b in m.blocks if b["type"] == "table"]
        assert [c["elements"][0]["elements"][0]["text"] for c in table["rows"][0][:3]] == ["Pod", "State", "Restarts"]
        assert table["rows"][1][0] == {"type": "raw_text", "text": "checkout-7c9f8d6b5d-00000"}
        assert table["column_settings"][2] == {"align": "right"}
        assert sum(b["type"] == "table" for m in rendered.messages for b in m.blocks) == (2 if answer.request_id is None else 1)
        cards = answer_cards(answer)
        assert all(payload_size(card) <= CARD_BUDGET for card in cards)
        [grid] = teams_grids(cards[0])
        assert len(grid["columns"]) == 8 and all(len(c["items"]) == teams_cards.TABLE_ROWS + 1 for c in grid["columns"])
        assert grid["columns"][2]["items"][1]["horizontalAlignment"] == "Right"
        assert "…and 130 more not shown" in json.dumps(cards[0], ensure_ascii=False)
    wide = blocks.table([f"c{i}" for i in range(25)], [["x" * 300] * 25] * 150, [{"align": "right"}] * 25)
    assert {len(r) for r in wide["rows"]} == {blocks.TABLE_COLUMNS} and len(wide["column_settings"]) == 20
    assert len(wide["rows"][1][0]["text"]) == blocks.CELL_CHARS and len(wide["rows"]) == 3  # 10,000 characters
    many = blocks.table(["n"], [[str(i)] for i in range(500)], [None])
    assert len(many["rows"]) == blocks.TABLE_ROWS
    # the facts the table shows are not repeated as evidence lines, problems still are
    assert present(big, NOW).evidence == [CRITICAL.title]
    info = Finding(severity="info", source="cost", title="checkout: USD 1,204.00 (+12.00, +1%)")
    cost = Answer(intent="cost", summary="Spend in the last 7 days: USD 1,204.00.", findings=[info],
                  table=Table(title="Cost by service", columns=["Service", "Spend"], rows=[["checkout", "1,204.00"]]))
    assert present(cost, NOW).evidence == []


def asked_again(world: Path, question: str, into: Path) -> Path:
    """A copy of a corpus world asked another question (e.g. for its pods, which answer with a table)."""
    shutil.copytree(world, into)
    spec = into / "scenario.yaml"
    spec.write_text(re.sub(r"(?m)^question: .*$", f"question: {question}", spec.read_text()))
    return into


@pytest.mark.integration  # every corpus world, each with a real Prometheus
async def test_eval_corpus_answers_render_within_the_limits_and_fit_a_phone(tmp_path: Path) -> None:
    answers = []
    pods = asked_again(EVAL / "01-bad-rollout", "pods checkout", tmp_path / "pods")
    for path in [*scenario_dirs(EVAL), pods]:
        result = await run_world(path)
        assert result.answers, f"{path.name}: {result.reasons}"
        answers += [a.model_copy(update={"request_id": "req_" + "0" * 24}) for a in result.answers]
    answers.sort(key=lambda a: len(json.dumps(a.to_json())), reverse=True)
    longest = answers[0]
    assert longest.chart is not None and len(longest.findings) >= 5  # the corpus has real diagnoses in it
    assert any(a.table is not None for a in answers)  # and a table (the pods of a workload)
    for answer in answers:
        rendered = blocks.render_answer(answer)
        [first] = rendered.messages  # short first: always one message
        assert_slack_limits(first)
        assert len(first.blocks) <= PHONE_BLOCKS + (3 if answer.table else 0)  # a table's title, rows, "…and N more"
        assert len(visible(first.blocks)) <= PHONE_CHARS
        for message in blocks.render_details(answer).messages:
            assert_slack_limits(message)
        png = draw(answer.chart, width=CHART_WIDTH, height=CHART_HEIGHT, colours=CHART_COLOURS) if answer.chart else None
        cards = answer_cards(answer, png)
        for card in cards:
            assert payload_size(card) <= CARD_BUDGET
            assert len(json.dumps(card, ensure_ascii=False).encode()) <= TEAMS_CARD_BYTES
        if png is not None:  # in the answer's card, or in one of its own when it does not fit beside the details
            assert any(b["type"] == "Image" for card in cards[:2] for b in card["body"])
