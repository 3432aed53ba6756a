"""The Gemini agent through the real google-adk runner: tools against loopback backends, redaction,
confirmation -> approval rows, ADK sessions persisted in the bot's database, limits and fallbacks,
and the real google-genai client against a fake Gemini REST API."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.actions import REGISTRY, Actions
from bot.answer import Action, Answer, Finding, Recommendation, RuledOut, ToolStatus
from bot.approvals import Approvals
from bot.policy import Policy
from bot.config import Settings
from bot.engine.agent import Agent
from bot.telemetry import LLM_TOKENS
from bot.ports import Request
from bot.toolbox import Toolbox
from sessions.store import Conversation, ConversationKey, Origin, Store
from tests.fakes.gemini import FakeGemini, ScriptedLlm, Sleep, call, rest_call, rest_text, text
from tests.fakes.kube import KubeFake, load_shop_scenario
from tests.helpers import RecordingPort

SECRET = "hunter2"
API_KEY = "AIzaSyFAKE-test-key-0123456789abcdefghij"


# --- the world the agent runs in ----------------------------------------------------------------


class FakePrometheus:
    """Prometheus' instant-query API with one series whose labels leak a credential."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    async def _query(self, request: web.Request) -> web.Response:
        self.queries.append(request.query["query"])
        series = {
            "metric": {"__name__": "up", "job": "checkout", "dsn": f"postgres://app:{SECRET}@db.shop:5432/app"},
            "value": [datetime.now(UTC).timestamp(), "0"],
        }
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": [series]}})


@dataclass
class World:
    settings: Settings
    store: Store
    toolbox: Toolbox
    actions: Actions
    kube: KubeFake
    prometheus: FakePrometheus

    async def conversation(self, thread: str = "1717000000.000100") -> Conversation:
        key = ConversationKey("slack", "T1", "C1", thread)
        found = await self.store.get_session(await self.store.session_id_for(key))
        assert found is not None
        return found

    def request(self, conversation: Conversation, text_: str, user: str = "U1") -> Request:
        return Request(key=conversation.key, user=user, text=text_, port=RecordingPort())

    def agent(self, model: Any = None, **kwargs: Any) -> Agent:
        return Agent(self.settings, self.toolbox, self.actions, model=model, **kwargs)


async def make_world(url: str, kube: KubeFake, prometheus: FakePrometheus, **overrides: Any) -> World:
    settings = Settings(
        database_url=url,
        prometheus_url=prometheus.url,
        kubeconfig=kube.kubeconfig_path,
        kube_context=kube.context,
        services={"checkout": {"namespace": "shop", "aliases": ["checkout-api"]}},
        approvers=["U2"],
        **overrides,
    )
    store = Store(url)
    await store.upgrade()
    toolbox = Toolbox.from_settings(settings)
    policy = Policy(None, approvers=["U2"], kinds=REGISTRY)
    approvals = Approvals(store, lambda approval: actions.execute(approval), policy=policy, ttl_seconds=1800, notifiers={})
    actions = Actions(toolbox, approvals)
    return World(settings, store, toolbox, actions, kube, prometheus)


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with KubeFake() as fake:
        shop = load_shop_scenario(fake)
        crashed = shop["new_pods"][0]["metadata"]["name"]
        status = fake.pods[("shop", crashed)]["status"]["containerStatuses"][0]
        # a termination message is not redacted by the Kubernetes tool: the agent must do it
        status["lastState"]["terminated"]["message"] = f"panic: cannot login to db with password={SECRET}"
        yield fake


@pytest.fixture
async def prometheus() -> AsyncIterator[FakePrometheus]:
    fake = FakePrometheus()
    await fake._server.start_server()
    try:
        yield fake
    finally:
        await fake._server.close()


@pytest.fixture
async def world(sqlite_url: Callable[..., str], kube: KubeFake, prometheus: FakePrometheus) -> AsyncIterator[World]:
    built = await make_world(sqlite_url(), kube, prometheus)
    yield built
    await built.toolbox.aclose()
    await built.store.close()


def playbook(conversation: Conversation) -> Answer:
    return Answer(
        intent="diagnose",
        service="checkout",
        namespace="shop",
        summary="checkout is down: the rollout of v2.1.0 crash-loops.",
        findings=[
            Finding(
                severity="critical",
                source="kubernetes",
                title="3/3 pods of revision 7 in CrashLoopBackOff",
                evidence="shop/checkout; Authorization: Bearer abcdefghijklmnopqrstu",
            )
        ],
        recommendations=[
            Recommendation(
                title="Roll back checkout to revision 6", action=Action(kind="rollback", target="shop/checkout")
            )
        ],
        ruled_out=[RuledOut(cause="OOM", why="exit code 1, memory at 35 % of its limit")],
        confidence=0.8,
        tools=[
            ToolStatus(name="kubernetes", ok=True, ms=12),
            ToolStatus(name="logs", ok=False, error="not configured"),
        ],
        session_id=conversation.id,
    )


def _tokens(kind: str) -> float:
    return LLM_TOKENS.labels(kind)._value.get()


# --- 1. read tools: really executed, redacted before the model sees them ------------------------


async def test_read_tools_run_against_the_backends_and_the_model_sees_only_redacted_output(world: World) -> None:
    conversation = await world.conversation()
    final = "Checkout crash-loops since the v2.1.0 rollout (exit code 1); not OOM. Roll back to v2.0.3."
    llm = ScriptedLlm(
        script=[
            [call("deployment_status", service="checkout-api"), call("promql_query", query='up{job="checkout"}')],
            [text(final)],
        ]
    )
    agent = world.agent(llm)
    request = world.request(conversation, "why is checkout failing?")
    prompt_before, completion_before = _tokens("prompt"), _tokens("completion")
    try:
        answer = await agent.answer(request, conversation, None, request.port.progress)
    finally:
        await agent.aclose()

    # the tools reached the loopback backends
    assert ("GET", "/apis/apps/v1/namespaces/shop/deployments/checkout") in world.kube.requests
    assert world.prometheus.queries == ['up{job="checkout"}']
    # and their output reached the model: compact, bounded, redacted
    status = llm.function_responses("deployment_status")[0]
    assert status["ok"] is True
    assert status["data"]["current"]["images"] == ["shop/checkout:v2.1.0"]
    assert "CrashLoopBackOff" in json.dumps(status)
    assert len(json.dumps(status)) < 4500
    promql = llm.function_responses("promql_query")[0]
    assert promql["ok"] is True and promql["data"]["series"][0]["labels"]["job"] == "checkout"
    seen = llm.seen()
    assert SECRET not in seen
    assert "password=[REDACTED]" in seen and "postgres://app:[REDACTED]@db.shop" in seen
    # the model was told who it is and could call the write tools only with confirmation
    assert "srebot" in str(llm.requests[0].config.system_instruction)
    assert {"rollback_deployment", "deployment_status"} <= set(llm.requests[0].tools_dict)

    assert answer.summary == final
    assert answer.intent == "chat" and answer.confidence == 0.5 and answer.status == "completed"
    assert answer.session_id == conversation.id
    assert [t.name for t in answer.tools] == ["llm"] and answer.tools[0].ok and answer.tools[0].error is None
    assert ("progress", "Checking deployment status of checkout-api…") in request.port.events
    assert _tokens("prompt") - prompt_before == 240 and _tokens("completion") - completion_before == 60


async def test_the_playbook_result_is_the_models_context_and_the_answer_keeps_its_evidence(world: World) -> None:
    conversation = await world.conversation()
    context = playbook(conversation)
    written = "The v2.1.0 rollout of checkout crash-loops; OOM is ruled out. Roll back to revision 6."
    llm = ScriptedLlm(script=[[text(written)]])
    agent = world.agent(llm)
    try:
        answer = await agent.answer(world.request(conversation, "diagnose checkout"), conversation, context, _quiet)
    finally:
        await agent.aclose()

    prompt = llm.requests[0].contents[-1].parts[0].text
    assert context.summary in prompt and "3/3 pods of revision 7 in CrashLoopBackOff" in prompt
    assert "OOM" in prompt and '"name":"logs","ok":false,"error":"not configured"' in prompt
    assert "abcdefghijklmnopqrstu" not in llm.seen()

    assert answer.summary == written
    assert (answer.intent, answer.service, answer.namespace, answer.confidence) == ("diagnose", "checkout", "shop", 0.8)
    assert answer.findings == context.findings and answer.ruled_out == context.ruled_out
    assert answer.recommendations == context.recommendations
    assert [t.name for t in answer.tools] == ["kubernetes", "logs", "llm"]


# --- 2. write tools: confirmation -> approval row, nothing executed --------------------------------


async def test_a_write_tool_call_becomes_an_approval_and_nothing_is_executed(world: World) -> None:
    conversation = await world.conversation()
    context = playbook(conversation)

    def summary(request: Any) -> list[Any]:
        proposed = [
            p.function_response.response for c in request.contents for p in c.parts or [] if p.function_response
        ]
        rollback = next(r for r in proposed if r.get("approval_id"))
        return [text(f"Rollback of checkout proposed as {rollback['approval_id']}; an approver must approve it.")]

    llm = ScriptedLlm(
        script=[
            # catalog has no previous revision: that one cannot even be proposed
            [
                call("rollback_deployment", service="checkout"),
                call("rollback_deployment", service="catalog", namespace="shop"),
            ],
            [call("rollback_deployment", service="checkout")],  # asked again: the same approval, no second row
            summary,
        ]
    )
    agent = world.agent(llm)
    request = world.request(conversation, "roll back checkout please", user="U1")
    try:
        answer = await agent.answer(request, conversation, context, request.port.progress)
    finally:
        await agent.aclose()

    rows = await world.store.approvals()
    assert len(rows) == 1
    approval = rows[0]
    assert (approval.kind, approval.target, approval.requester, approval.status) == (
        "rollback",
        "shop/checkout",
        "U1",
        "pending",
    )
    assert (approval.platform, approval.session_id, approval.request_id) == (
        "slack",
        conversation.id,
        request.request_id,
    )
    assert "v2.1.0 → v2.0.3" in approval.description
    assert world.kube.patches == []

    # the model learnt what became of each call
    responses = llm.function_responses("rollback_deployment")
    assert [r["status"] for r in responses] == [
        "proposed, awaiting approval",
        "not proposed",
        "proposed, awaiting approval",
    ]
    assert responses[0]["approval_id"] == responses[2]["approval_id"] == approval.id
    assert "requires confirmation" not in json.dumps(responses)

    # one recommendation per action: the playbook's, now carrying the approval
    rollbacks = [r for r in answer.recommendations if r.action and r.action.kind == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0].approval_id == approval.id
    assert rollbacks[0].title == "Roll back checkout to revision 6"
    assert approval.id in answer.summary
    assert answer.tools[-1].name == "llm" and answer.tools[-1].ok


async def test_a_proposal_without_playbook_becomes_a_new_recommendation(world: World) -> None:
    conversation = await world.conversation()
    llm = ScriptedLlm(script=[[call("scale_deployment", service="checkout", replicas=5)], [text("Proposed scaling.")]])
    agent = world.agent(llm)
    try:
        answer = await agent.answer(world.request(conversation, "scale checkout to 5"), conversation, None, _quiet)
    finally:
        await agent.aclose()
    (approval,) = await world.store.approvals()
    assert (approval.kind, approval.target, approval.params) == ("scale", "shop/checkout", {"replicas": 5})
    (recommendation,) = answer.recommendations
    assert recommendation.approval_id == approval.id
    assert recommendation.action == Action(kind="scale", target="shop/checkout", params={"replicas": 5})
    assert recommendation.title.startswith("Scale shop/checkout: replicas 3 → 5")
    assert world.kube.patches == []


async def test_an_action_the_playbook_already_proposed_is_not_proposed_twice(world: World) -> None:
    conversation = await world.conversation()
    rollback = Action(kind="rollback", target="shop/checkout")
    filed = await world.actions.propose(rollback, Origin("U1", "slack", conversation.id))
    context = playbook(conversation)
    context.recommendations = [Recommendation(title="Roll back checkout", action=rollback, approval_id=filed.id)]
    llm = ScriptedLlm(script=[[call("rollback_deployment", service="checkout")], [text("Approve the rollback.")]])
    agent = world.agent(llm)
    try:
        answer = await agent.answer(world.request(conversation, "fix it"), conversation, context, _quiet)
    finally:
        await agent.aclose()
    assert [a.id for a in await world.store.approvals()] == [filed.id]
    assert llm.function_responses("rollback_deployment")[0]["approval_id"] == filed.id
    assert answer.recommendations == context.recommendations and answer.summary == "Approve the rollback."


# --- 3. ADK sessions persist in the bot's database ----------------------------------------------


async def test_a_follow_up_after_a_restart_sees_the_earlier_turn(
    db_url: str, kube: KubeFake, prometheus: FakePrometheus
) -> None:
    world = await make_world(db_url, kube, prometheus)
    try:
        conversation = await world.conversation()
        first = world.agent(ScriptedLlm(script=[[text("Bad rollout: v2.1.0 crash-loops with exit code 1.")]]))
        await first.answer(world.request(conversation, "why is checkout failing?"), conversation, None, _quiet)
        await first.aclose()

        llm = ScriptedLlm(script=[[text("Its logs show a nil pointer dereference.")]])
        second = world.agent(llm)  # a new process: nothing in memory
        try:
            answer = await second.answer(
                world.request(conversation, "and its logs?", user="U1"), conversation, None, _quiet
            )
        finally:
            await second.aclose()
    finally:
        await world.toolbox.aclose()
        await world.store.close()

    history = [(c.role, p.text) for c in llm.requests[0].contents for p in c.parts or [] if p.text]
    assert history[0] == (
        "user",
        "U1 asks: why is checkout failing?\nAnswer the question; check facts with the read tools.",
    )
    assert history[1] == ("model", "Bad rollout: v2.1.0 crash-loops with exit code 1.")
    assert history[2][1].startswith("U1 asks: and its logs?")
    assert answer.summary == "Its logs show a nil pointer dereference."


# --- 4. LLM problems fall back to the deterministic answer ---------------------------------------


@pytest.mark.parametrize(
    ("script", "options", "reason"),
    [
        ([RuntimeError("backend said 503")], {}, "the model call failed"),  # its text goes to the log only
        ([Sleep(5.0)], {"timeout": 0.3}, "timed out after 0.3 s"),
        (
            [[call("deployment_status", service="checkout")], [text("never asked")]],
            {"budget": True},
            "token budget of 1000",
        ),
        ([[call("list_deployments")] for _ in range(10)], {"max_tool_calls": 2}, "tool call limit of 2 reached"),
    ],
    ids=["error", "timeout", "token-budget", "tool-calls"],
)
async def test_llm_problems_fall_back_to_the_deterministic_answer(
    world: World, script: list[Any], options: dict[str, Any], reason: str
) -> None:
    conversation = await world.conversation()
    context = playbook(conversation)
    llm = ScriptedLlm(script=script)
    if options.pop("budget", False):
        world.settings = world.settings.model_copy(update={"llm_token_budget": 1000})
        llm.prompt_tokens = 990  # with 30 completion tokens the first call spends the budget: no second call
    agent = world.agent(llm, **options)
    try:
        answer = await agent.answer(world.request(conversation, "diagnose checkout"), conversation, context, _quiet)
    finally:
        await agent.aclose()

    assert answer.summary.startswith("LLM unavailable (")
    assert reason in answer.summary
    assert answer.summary.endswith("this is the deterministic answer. " + context.summary)
    assert "backend said 503" not in answer.model_dump_json()  # a raised exception's text is logged, never said
    llm_status = answer.tools[-1]
    assert llm_status.name == "llm" and llm_status.ok is False and reason in (llm_status.error or "")
    assert answer.findings == context.findings and answer.recommendations == context.recommendations
    assert answer.intent == "diagnose" and answer.status == "completed" and answer.confidence == 0.8
    if reason.startswith("token budget"):
        assert len(llm.requests) == 1


async def test_a_free_form_question_without_llm_says_it_is_unavailable(world: World) -> None:
    conversation = await world.conversation()
    agent = world.agent()  # no GOOGLE_API_KEY in these settings
    answer = await agent.answer(world.request(conversation, "what should I check?"), conversation, None, _quiet)
    await agent.aclose()
    assert answer.status == "failed" and answer.intent == "chat"
    assert answer.summary.startswith("LLM unavailable (GOOGLE_API_KEY is not set)")
    assert answer.tools == [ToolStatus(name="llm", ok=False, ms=answer.tools[0].ms, error="GOOGLE_API_KEY is not set")]


# --- 5. the real google-genai client against a fake Gemini REST API -------------------------------


async def ask_gemini(world: World, gemini: FakeGemini, conversation: Conversation, question: str) -> Answer:
    """One free-form question through an Agent built from settings alone: Gemini at the fake's URL."""
    world.settings = world.settings.model_copy(
        update={"google_api_key": SecretStr(API_KEY), "google_gemini_base_url": gemini.url}
    )
    agent = world.agent()
    try:
        return await agent.answer(world.request(conversation, question), conversation, None, _quiet)
    finally:
        await agent.aclose()


async def test_a_full_loop_over_the_gemini_rest_api(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    conversation = await world.conversation()

    def after_tool(body: dict[str, Any]) -> list[dict[str, Any]]:
        responses = [p["functionResponse"] for c in body["contents"] for p in c["parts"] if "functionResponse" in p]
        names = [d["name"] for d in responses[0]["response"]["data"]]
        return [rest_text(f"Deployments in shop: {', '.join(sorted(names))}.")]

    async with FakeGemini([[rest_call("list_deployments", namespace="shop")], after_tool]) as gemini:
        answer = await ask_gemini(world, gemini, conversation, "what runs in shop?")

    assert answer.summary == "Deployments in shop: catalog, checkout."
    assert answer.tools[-1].ok, answer.tools
    assert [c.path for c in gemini.calls] == ["/v1beta/models/gemini-2.5-flash:generateContent"] * 2
    first = gemini.calls[0]
    declared = {d["name"] for tool in first.body["tools"] for d in tool.get("functionDeclarations", [])}
    assert {"deployment_status", "rollback_deployment", "run_automation"} <= declared
    assert "srebot" in json.dumps(first.body["systemInstruction"])
    assert first.body["contents"][0]["parts"][0]["text"].startswith("U1 asks: what runs in shop?")
    for recorded in gemini.calls:
        assert recorded.headers.get("x-goog-api-key") == API_KEY
        assert API_KEY not in recorded.path + json.dumps(recorded.query) + json.dumps(recorded.body)
        assert not any(API_KEY in v for k, v in recorded.headers.items() if k.lower() != "x-goog-api-key")
    assert API_KEY not in caplog.text
    assert API_KEY not in answer.model_dump_json()


async def test_a_gemini_api_error_falls_back_without_showing_the_key(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conversation = await world.conversation()
    async with FakeGemini([]) as gemini:  # no step: every call answers with an error
        gemini.error_status = 400
        answer = await ask_gemini(world, gemini, conversation, "hello?")
    assert answer.summary.startswith("LLM unavailable (the model returned error INVALID_ARGUMENT)")
    assert "no step left" not in answer.model_dump_json() and "no step left" in caplog.text  # the API's words: log
    assert answer.status == "failed" and answer.tools[-1].ok is False
    assert API_KEY not in answer.model_dump_json() and API_KEY not in caplog.text


async def _quiet(_: str) -> None:
    return None
