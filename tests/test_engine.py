"""The diagnostic engine end to end: `srebot ask` (a real process) and the in-process runtime against a real
Prometheus, the Kubernetes, Loki and control-plane fakes, and moto for cost (tests/fakes/scenario.py)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr

from bot.answer import Answer
from bot.app import Runtime
from bot.cli import main
from bot.config import load_settings
from bot.ports import Request
from sessions.store import ConversationKey
from tests.fakes.aws import MotoServer, cost_and_usage
from tests.fakes.prometheus import MetricsServer, free_port
from tests.fakes.scenario import Shop, shop_backends
from tests.helpers import ANSWER_SCHEMA, RecordingPort

_OURS = ("SLACK_", "SREBOT_", "PROMETHEUS", "LOKI", "CONTROL_PLANE", "GOOGLE_", "MICROSOFT_", "AWS_", "KUBECONFIG",
         "GRAFANA", "DATABASE_URL")


@pytest.fixture
async def shop(prometheus_server: MetricsServer, tmp_path: Path) -> AsyncIterator[Shop]:
    async with shop_backends(prometheus_server, tmp_path) as backends:
        yield backends


async def ask(
    *words: str, env: dict[str, str], thread: str | None = None, as_json: bool = True
) -> tuple[int, Any, str]:
    """`srebot ask` in a child process; the fakes keep serving on this event loop meanwhile."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    args = ["-m", "bot", "ask", *words] + (["--json"] if as_json else []) + (["--thread", thread] if thread else [])
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, env={**clean, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    body = json.loads(out) if as_json and out.strip() else out.decode()
    if as_json:
        jsonschema.validate(body, ANSWER_SCHEMA)
    return process.returncode, body, err.decode()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`srebot ask … --json` in this process (bot.cli.main, in a worker thread with its own event loop, while the
    fakes serve on this one): the command's exact path without a process start."""

    async def run(*words: str, env: dict[str, str]) -> tuple[int, Any]:
        for key in list(os.environ):
            if key.startswith(_OURS):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        code = await asyncio.to_thread(main, ["ask", *words, "--json"])
        answer = json.loads(capsys.readouterr().out)
        jsonschema.validate(answer, ANSWER_SCHEMA)
        return code, answer

    return run


def text_of(answer: dict[str, Any]) -> str:
    parts = [answer["summary"]]
    parts += [f"{f['title']} {f.get('evidence') or ''}" for f in answer["findings"]]
    parts += [r["title"] for r in answer["recommendations"]]
    return "\n".join(parts)


# --- through `srebot ask` ------------------------------------------------------------------------
async def test_bad_rollout_is_diagnosed_with_its_evidence_and_a_rollback_is_proposed(shop: Shop) -> None:
    code, answer, err = await ask("why is checkout failing?", env={**shop.env, "SREBOT_APPROVERS": "bob"})

    assert code == 0, err
    assert answer["status"] == "completed" and answer["intent"] == "diagnose"
    assert (answer["service"], answer["namespace"]) == ("checkout", "shop")
    titles = {f["source"]: [] for f in answer["findings"]}
    for finding in answer["findings"]:
        titles[finding["source"]].append(finding["title"])
    # the error rate, with its value and threshold, from the real Prometheus
    assert any(t.startswith("Error rate ") and "(warning > 1%)" in t for t in titles["metrics"]), titles
    # the failing pods and why
    assert any("CrashLoopBackOff" in t and "exit code 1" in t for t in titles["kubernetes"]), titles
    # the new version and when it rolled out, correlated with the errors
    rollout = f"{shop.rollout:%H:%M} UTC"
    assert f"Errors rose 2 min after checkout v2.1.0 rolled out at {rollout} by alice" in titles["engine"]
    assert "v2.1.0" in answer["summary"] and rollout in answer["summary"]
    # the log pattern
    assert any("panic: nil pointer dereference in cart.Total" in t for t in titles["logs"])
    assert "nil pointer dereference" in answer["summary"]
    # ranked: critical first
    severities = [f["severity"] for f in answer["findings"]]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)
    assert severities[0] == "critical"
    # the rollback is proposed as an approval
    rollback = next(r for r in answer["recommendations"] if r["action"] and r["action"]["kind"] == "rollback")
    assert rollback["action"]["target"] == "shop/checkout"
    assert rollback["approval_id"] and rollback["approval_id"].startswith("apr_")
    assert "Roll back checkout to revision 6 (image v2.0.3)" == rollback["title"]
    assert "roll back shop/checkout: image v2.1.0 → v2.0.3 (revision 7 → 6)" in err  # the approval prompt
    # the new incident is proposed for acknowledgement
    assert any(r["action"] and r["action"]["kind"] == "ack_incident" and r["action"]["target"] == "INC-101"
               for r in answer["recommendations"])
    # what was ruled out, and the old pod is old news
    causes = {r["cause"]: r["why"] for r in answer["ruled_out"]}
    assert causes["OOM"].startswith("exit code 1 (Error); memory at")
    assert {"Image pull", "Node", "Quota"} <= set(causes)
    assert any(f["title"].startswith("Old news: pod checkout-5b8d7c6f4a-q9r2s of revision 6 is terminating")
               and f["severity"] == "info" for f in answer["findings"])
    # four sources agree
    assert answer["confidence"] >= 0.85
    assert [(t["name"], t["ok"]) for t in answer["tools"]] == [
        ("metrics", True), ("kubernetes", True), ("logs", True), ("control_plane", True)
    ]
    assert {link["title"] for link in answer["links"]} == {"checkout dashboard", "checkout runbook"}
    # the password in the crashed container's log never reaches the answer
    assert "s3cr3t" not in json.dumps(answer)


async def test_a_healthy_service_raises_no_alarm(shop: Shop, cli) -> None:
    code, answer = await cli("is catalog healthy?", env=shop.env)

    assert code == 0
    assert answer["summary"].startswith("No problems found in catalog: ")
    assert not [f for f in answer["findings"] if f["severity"] in ("critical", "warning")], answer["findings"]
    # the noisy but harmless error log is said, as noise
    assert any(f["source"] == "logs" and f["severity"] == "info" for f in answer["findings"])
    assert "2/2 pods ready on v1.4.2" in answer["summary"] and "noise" in answer["summary"]
    assert not [r for r in answer["recommendations"] if r["action"] and r["action"]["kind"] != "ack_incident"]


async def test_a_backend_that_is_down_gives_a_partial_answer_that_names_it(shop: Shop, cli) -> None:
    env = {**shop.env, "LOKI_URL": f"http://127.0.0.1:{free_port()}"}
    code, answer = await cli("why is checkout failing?", env=env)

    assert code == 0
    logs = next(t for t in answer["tools"] if t["name"] == "logs")
    assert logs["ok"] is False and logs["error"].startswith("unreachable")
    assert "Could not check logs (unreachable" in answer["summary"]
    # the rest of the answer is still there
    assert all(t["ok"] for t in answer["tools"] if t["name"] != "logs")
    assert {"metrics", "kubernetes"} <= {f["source"] for f in answer["findings"]}
    assert any(r["action"] and r["action"]["kind"] == "rollback" for r in answer["recommendations"])


async def test_a_follow_up_after_a_restart_is_about_the_thread_s_service(shop: Shop) -> None:
    code, first, err = await ask("why is checkout failing?", env=shop.env, thread="inc-42")
    assert code == 0, err

    # a new process: the service comes from the session in the database
    code, follow_up, err = await ask("and its logs?", env=shop.env, thread="inc-42")

    assert code == 0, err
    assert follow_up["session_id"] == first["session_id"]
    assert (follow_up["intent"], follow_up["service"]) == ("logs", "checkout")
    assert "panic: nil pointer dereference in cart.Total" in follow_up["summary"]
    assert [t["name"] for t in follow_up["tools"]] == ["logs"]


async def test_each_intent_answers_from_its_backend(shop: Shop, aws: MotoServer, cli) -> None:
    first_day = datetime.now(UTC).date() - timedelta(days=14)
    before = [{"Amazon EC2": 10.0, "Amazon RDS": 5.0}] * 7
    period = [{"Amazon EC2": 20.0, "Amazon RDS": 5.0}] * 7
    # cost by service and the forecast's fallback projection each take one (any order)
    aws.queue_cost_and_usage(cost_and_usage(first_day, before + period), cost_and_usage(first_day, before + period))
    cost_env = {
        "SREBOT_COST": "on",
        "AWS_ENDPOINT_URL": aws.url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    questions = {
        "metrics": "metrics checkout",
        "logs": "logs checkout",
        "pods": "pods checkout",
        "cost": "cost 7d",
        "incidents": "incidents",
        "promql": 'promql: sum by (service) (rate(http_requests_total{status="500"}[5m]))',
        "unknown": "why is frobnicator failing?",
        "capacity": "capacity checkout",
        "changes": "what changed in checkout?",
        "alerts": "what's firing?",
    }
    answers = {}
    for name, text in questions.items():
        code, answers[name] = await cli(text, env={**shop.env, **cost_env})
        assert code == 0, name

    metrics = answers["metrics"]
    assert metrics["intent"] == "metrics" and metrics["service"] == "checkout"
    names = [f["title"].split(" ")[0] for f in metrics["findings"]]
    assert {"Error", "p99", "CPU", "Memory", "Request", "Restarts"} <= set(names)
    assert "p99 latency" in metrics["summary"] and "(critical)" in metrics["summary"]

    logs = answers["logs"]
    assert logs["intent"] == "logs"
    assert logs["findings"][0]["title"].startswith("×") and "nil pointer dereference" in logs["findings"][0]["title"]

    pods = answers["pods"]
    assert pods["intent"] == "diagnose" and pods["service"] == "checkout"
    assert {f["source"] for f in pods["findings"]} == {"kubernetes"}
    assert "shop/checkout: 0/3 ready" in pods["summary"] and "CrashLoopBackOff" in pods["summary"]
    assert all(r["approval_id"] is None and r["action"] is None for r in pods["recommendations"])
    assert "say “rollback checkout” to propose it" in text_of(pods)
    table = pods["table"]  # the pods as rows: a person scans state and restarts down a column
    assert table["columns"] == ["Pod", "State", "Restarts", "Age", "Node"]
    assert [row[1] for row in table["rows"]] == ["CrashLoopBackOff"] * 3 + ["Terminating"]  # the broken ones first
    assert [row[2] for row in table["rows"]] == ["4", "4", "4", "0"] and table["rows"][0][4] == "node-1"

    cost = answers["cost"]
    assert cost["intent"] == "cost" and cost["summary"].startswith("Spend in the last 7 days: USD")
    assert "Amazon EC2" in cost["summary"] and "Next 30 days" in cost["summary"]
    assert [t["name"] for t in cost["tools"]] == ["cost"] and cost["tools"][0]["ok"]
    assert cost["table"]["columns"] == ["Service", "Spend", "Change", "%"]
    assert cost["table"]["rows"] == [["Amazon EC2", "140.00", "+70.00", "+100%"], ["Amazon RDS", "35.00", "+0.00", "+0%"]]

    incidents = answers["incidents"]
    assert incidents["intent"] == "incidents"
    assert incidents["summary"].startswith("2 open incidents: INC-101 “Checkout error rate above 5%” (critical, new)")
    assert [f["severity"] for f in incidents["findings"]] == ["critical", "warning"]

    promql = answers["promql"]
    assert promql["intent"] == "metrics" and "checkout" in promql["summary"]
    assert promql["findings"][0]["title"].startswith('{service="checkout"} = ')

    unknown = answers["unknown"]
    assert unknown["summary"] == "I don't know frobnicator; known services: catalog, checkout, ledger."
    assert unknown["status"] == "completed" and unknown["intent"] == "diagnose" and unknown["service"] is None

    capacity = answers["capacity"]
    assert capacity["intent"] == "capacity"
    assert "of its 1 CPU limit" in capacity["summary"] and "of its 512 MiB limit" in capacity["summary"]

    alerts = answers["alerts"]
    assert (alerts["intent"], alerts["service"]) == ("alerts", "checkout")  # the one service involved was diagnosed
    assert alerts["summary"].startswith("1 alert firing: CheckoutHighErrorRate (P1) on checkout — checkout is failing")
    assert alerts["findings"][0]["title"].startswith("CheckoutHighErrorRate (P1) firing on checkout since ")
    assert any(f["title"].startswith("checkout: 3 of 3 pods of v2.1.0") for f in alerts["findings"])

    changes = answers["changes"]
    assert changes["intent"] == "diagnose"
    assert changes["summary"].startswith(
        f"Changes to checkout in the last 24 h: checkout v2.1.0 rolled out at {shop.rollout:%H:%M} UTC"
    )


# --- in process ----------------------------------------------------------------------------------
async def _ask_in_process(runtime: Runtime, text: str, thread: str = "t-1", user: str = "alice") -> tuple[Answer, RecordingPort]:
    port = RecordingPort()
    runtime.dispatcher.submit(Request(key=ConversationKey("cli", "local", "engine-test", thread), user=user, text=text,
                                      port=port))
    await port.wait(60)
    await runtime.dispatcher.wait_idle()
    return port.answers[0], port


@pytest.fixture
async def runtime(shop: Shop) -> AsyncIterator[Runtime]:
    rt = Runtime(load_settings(env={**shop.env, "SREBOT_APPROVERS": "bob"}))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_diagnose_runs_the_tools_concurrently_and_reports_each_as_it_finishes(shop: Shop, runtime: Runtime) -> None:
    await _ask_in_process(runtime, "pods checkout", thread="warm-up")  # the Kubernetes client's first use
    shop.loki.delay = shop.cp.delay = shop.kube.delay = 0.4

    # catalog: healthy, so nothing is proposed after the tools (a proposal reads the cluster again)
    answer, port = await _ask_in_process(runtime, "diagnose catalog")

    ms = {t.name: t.ms for t in answer.tools}
    assert set(ms) == {"metrics", "kubernetes", "logs", "control_plane"} and all(t.ok for t in answer.tools)
    assert all(value is not None and value >= 400 for name, value in ms.items() if name != "metrics"), ms
    # one after the other would take the sum; together it takes about the slowest
    assert max(ms.values()) <= answer.elapsed_ms < sum(ms.values())  # type: ignore[arg-type]
    progress = [text for kind, text in port.events if kind == "progress"]
    assert progress[0] == "Looking into catalog…"
    assert progress[1] == "Checking metrics, Kubernetes, logs, changes and incidents of catalog…"
    finished, results = progress[2:6], progress[6:]
    assert all("✓" in line for line in finished)  # one update per finished tool, the last names them all
    assert all(f"{name} ✓" in finished[-1] for name in ms) and "waiting" not in finished[-1]
    assert "waiting for" in finished[0]
    # then what each backend said first, in one line (streamed as steps where the platform shows them)
    [said] = results
    assert all(piece.split(": ", 1)[0] in ms for piece in said.split(" · ")), said


async def test_a_slow_backend_times_out_and_the_rest_of_the_answer_comes(shop: Shop, runtime: Runtime) -> None:
    runtime.engine.settings = runtime.engine.settings.model_copy(update={"tool_timeout": 0.8})  # type: ignore[attr-defined]
    shop.cp.delay = 3.0

    answer, _ = await _ask_in_process(runtime, "diagnose catalog")

    control_plane = next(t for t in answer.tools if t.name == "control_plane")
    assert not control_plane.ok and control_plane.error is not None and control_plane.error.startswith("timeout")
    assert "Could not check control_plane (timeout" in answer.summary
    assert answer.summary.startswith("No problems found in catalog in what could be checked")


async def test_unconfigured_backends_are_listed_and_said(tmp_path: Path) -> None:
    settings = load_settings(env={"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "SREBOT_KUBERNETES": "off",
                                  "SREBOT_COST": "off"})
    rt = Runtime(settings)
    await rt.start()
    try:
        answer, _ = await _ask_in_process(rt, "diagnose checkout")
    finally:
        await rt.stop()
    assert [(t.name, t.ok, t.error) for t in answer.tools] == [
        (name, False, "not configured") for name in ("metrics", "kubernetes", "logs", "control_plane")
    ]
    assert answer.summary == (
        "No backend is configured, so nothing could be checked: metrics, kubernetes, logs, control_plane."
    )


async def test_explicit_actions_are_proposed_and_approvers_are_required(shop: Shop, tmp_path: Path) -> None:
    rt = Runtime(load_settings(env={**shop.env, "DATABASE_URL": f"sqlite:///{tmp_path / 'noapp.db'}"}))
    await rt.start()
    try:
        scale, port = await _ask_in_process(rt, "scale checkout to 5")
        rollback, _ = await _ask_in_process(rt, "rollback catalog", thread="t-2")
        restart, _ = await _ask_in_process(rt, "restart frobnicator", thread="t-3")
    finally:
        await rt.stop()
    assert scale.intent == "action" and scale.status == "completed"
    [proposal] = scale.recommendations
    assert proposal.action is not None and (proposal.action.kind, proposal.action.target) == ("scale", "shop/checkout")
    assert proposal.action.params == {"replicas": 5} and proposal.approval_id
    assert "scale shop/checkout: replicas 3 → 5" in scale.summary
    assert "No approvers are configured" in scale.summary  # SREBOT_APPROVERS is empty here
    assert [kind for kind, _ in port.events if kind == "approval"] == ["approval"]
    assert rollback.status == "failed" and "no previous revision to roll back to" in rollback.summary
    assert restart.summary.startswith("I don't know frobnicator; known services:") and restart.intent == "action"


async def test_links_point_at_the_catalog_and_grafana_explore(runtime: Runtime) -> None:
    engine = runtime.engine
    engine.settings = engine.settings.model_copy(update={"grafana_url": "https://grafana.example"})  # type: ignore[attr-defined]

    answer, _ = await _ask_in_process(runtime, "metrics checkout")

    titles = {link.title: link.url for link in answer.links}
    assert titles["checkout dashboard"] == "https://grafana.example/d/abc/checkout"
    explore = titles["Grafana Explore: metrics"]
    assert explore.startswith("https://grafana.example/explore?left=")
    left = json.loads(urllib.parse.unquote(explore.split("left=", 1)[1]))
    assert left["queries"][0]["expr"].startswith('(sum(rate(http_requests_total{service="checkout",status=~"5.."}[15m]))')
    assert left["range"] == {"from": "now-15m", "to": "now"}


class _StubAgent:
    """Stands in for the Gemini agent (bot/engine/agent.py): records what the engine hands it."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, Answer | None]] = []
        self.fail = fail

    async def answer(self, request: Request, session: Any, context: Answer | None, progress: Any) -> Answer:
        self.calls.append((request.text, context))
        if self.fail:
            raise RuntimeError("model unavailable")
        base = context or Answer(intent="chat", summary="-", session_id=session.id)
        return base.model_copy(update={"summary": "LLM: " + base.summary})


async def test_the_agent_writes_diagnoses_and_chat_when_an_llm_is_configured(shop: Shop, runtime: Runtime) -> None:
    engine = runtime.engine
    assert engine.agent is None  # type: ignore[attr-defined]  # no GOOGLE_API_KEY: never constructed
    engine.settings = engine.settings.model_copy(update={"google_api_key": SecretStr("test-key")})  # type: ignore[attr-defined]
    engine.agent = agent = _StubAgent()  # type: ignore[attr-defined]

    diagnosis, _ = await _ask_in_process(runtime, "diagnose catalog")
    chat, _ = await _ask_in_process(runtime, "tell me a story about the on-call", thread="t-2")
    logs, _ = await _ask_in_process(runtime, "logs catalog", thread="t-3")

    assert diagnosis.summary.startswith("LLM: No problems found in catalog")
    assert [text for text, _ in agent.calls] == ["diagnose catalog", "tell me a story about the on-call"]
    assert agent.calls[0][1] is not None and agent.calls[0][1].intent == "diagnose"  # the playbook is the context
    assert agent.calls[1][1] is None  # a free-form question has none
    assert chat.summary.startswith("LLM:") and not logs.summary.startswith("LLM:")

    engine.agent = _StubAgent(fail=True)  # type: ignore[attr-defined]
    fallback, _ = await _ask_in_process(runtime, "diagnose catalog", thread="t-4")
    assert fallback.summary.startswith("No problems found in catalog")
