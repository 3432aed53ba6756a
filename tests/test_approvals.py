"""Approvals without Slack: what each action shows before approval, the writes it runs after, the
decision rules, the `chat` prompt and a terminal decision reaching a Teams card (Slack end to end is
in test_approvals_slack.py)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from microsoft_agents.activity import Activity

from bot import chat, cli
from bot.actions import ActionError
from bot.answer import Action
from bot.app import Runtime
from bot.policy import NO_APPROVERS_HINT
from bot.config import load_settings
from sessions.store import ApprovalRecord, ConversationKey, Origin, utcnow
from tests.fakes.bot_connector import ALICE, BOB, BotConnectorFake, personal_message
from tests.fakes.kube import REVISION
from tests.fakes.shop import Fakes

REQUESTER, APPROVER, OUTSIDER = "alice", "bob", "mallory"
SCALE = Action(kind="scale", target="shop/checkout", params={"replicas": 5})
RESTART = Action(kind="restart", target="shop/checkout")
ROLLBACK = Action(kind="rollback", target="shop/checkout")


async def started(env: dict[str, str], stack: AsyncExitStack) -> Runtime:
    runtime = Runtime(load_settings(env=env))
    await runtime.start()
    stack.push_async_callback(runtime.stop)
    return runtime


@pytest.fixture
async def runtime(fakes: Fakes, db_url: str) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as stack:
        yield await started(fakes.env(db_url), stack)


async def proposed(runtime: Runtime, action: Action, requester: str = REQUESTER) -> ApprovalRecord:
    session_id = await runtime.store.session_id_for(ConversationKey("cli", "local", "terminal", "t1"))
    return await runtime.actions.propose(action, Origin(requester, "cli", session_id))


async def audit_of(runtime: Runtime, approval: ApprovalRecord) -> list[tuple[str, str]]:
    return [(r.event, r.actor) for r in await runtime.store.audit_log() if r.approval_id == approval.id]


# --- what will change -----------------------------------------------------------------------------
async def test_each_action_says_exactly_what_will_change(fakes: Fakes, sqlite_url: Callable[..., str]) -> None:
    async with AsyncExitStack() as stack:
        runtime = await started(fakes.env(sqlite_url("a.db")), stack)
        describe = runtime.actions.describe
        assert await describe(SCALE) == "scale shop/checkout: replicas 3 → 5"
        assert await describe(ROLLBACK) == "roll back shop/checkout: image v2.1.0 → v2.0.3 (revision 7 → 6)"
        assert await describe(RESTART) == "restart 3 pods of shop/checkout (rolling restart)"
        assert await describe(Action(kind="ack_incident", target="INC-101")) == (
            "acknowledge incident INC-101 “Checkout error rate above 5%” (critical, new → acknowledged)")
        assert await describe(Action(kind="run_automation", target="flush-cache",
                                     params={"target_resources": ["catalog"], "parameters": {"scope": "all"}})) == (
            "run automation flush-cache on catalog with {'scope': 'all'}")
        for bad, why in [
            (Action(kind="scale", target="shop/checkout"), "replica count"),
            (Action(kind="scale", target="shop/checkout", params={"replicas": -1}), "-1 replicas"),
            (Action(kind="restart", target="checkout"), "not namespace/deployment"),
            (Action(kind="rollback", target="shop/nothing"), "not_found"),
        ]:
            with pytest.raises(ActionError, match=why):
                await runtime.actions.propose(bad, Origin(REQUESTER, "cli"))
        assert await runtime.store.approvals() == []  # nothing proposed that cannot be described

        unconfigured = await started({"DATABASE_URL": sqlite_url("b.db"),
                                      "SREBOT_KUBERNETES": "off"}, stack)
        with pytest.raises(ActionError, match="not_configured"):
            await unconfigured.actions.describe(RESTART)
        with pytest.raises(ActionError, match="not_configured"):
            await unconfigured.actions.describe(Action(kind="ack_incident", target="INC-101"))


# --- the writes -----------------------------------------------------------------------------------
async def test_restart_and_rollback_run_through_the_kubernetes_writes(runtime: Runtime, fakes: Fakes) -> None:
    restart = await proposed(runtime, RESTART)
    decision = await runtime.approvals.decide(restart.id, APPROVER, "approve", platform="cli")
    # a decision typed in a shell says so, with the name the operator gave
    assert decision.accepted and decision.message == f"Approved by {APPROVER} (via CLI) · rollout restarted for shop/checkout"
    [patch] = fakes.kube.patches_of("shop", "checkout")
    assert patch.resource == "deployments"
    annotations = patch.body["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations

    rollback = await proposed(runtime, ROLLBACK)
    decision = await runtime.approvals.decide(rollback.id, APPROVER, "approve", platform="cli")
    assert decision.accepted and "rolled back to revision 6 (v2.0.3)" in decision.message, decision.message
    deployment = fakes.kube.deployments[("shop", "checkout")]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/checkout:v2.0.3"
    assert deployment["metadata"]["annotations"][REVISION] == "7"  # the patch tested the revision it read
    assert [(await runtime.store.get_approval(a.id)).status for a in (restart, rollback)] == ["executed", "executed"]


# --- the rules ------------------------------------------------------------------------------------
async def test_decision_rules_and_their_audit(runtime: Runtime, fakes: Fakes) -> None:
    approvals = runtime.approvals
    assert not (await approvals.decide("apr_nope", APPROVER, "approve", platform="cli")).accepted
    approval = await proposed(runtime, SCALE)
    assert "Unknown decision" in (await approvals.decide(approval.id, APPROVER, "maybe", platform="cli")).message

    refused = await approvals.decide(approval.id, OUTSIDER, "reject", platform="slack")
    assert not refused.accepted and "Only an approver" in refused.message
    refused = await approvals.decide(approval.id, REQUESTER, "approve", platform="cli")
    assert not refused.accepted and "four eyes" in refused.message
    # the requester may withdraw their own request
    withdrawn = await approvals.decide(approval.id, REQUESTER, "reject", platform="cli")
    assert withdrawn.accepted and withdrawn.approval.status == "rejected"
    assert await audit_of(runtime, approval) == [
        ("proposed", REQUESTER), ("refused", OUTSIDER), ("refused", REQUESTER), ("rejected", REQUESTER)]
    refusal = next(r for r in await runtime.store.audit_log() if r.event == "refused")
    assert refusal.detail.startswith("reject:") and refusal.kind == "scale"
    assert (refusal.platform, refusal.via) == ("slack", "button")

    # past its time but not swept yet: a click expires it instead of running it
    late = await proposed(runtime, SCALE)
    await runtime.store.transition_approval(late.id, "pending", "pending", expires_at=utcnow() - timedelta(seconds=1))
    decision = await approvals.decide(late.id, APPROVER, "approve", platform="cli")
    assert not decision.accepted and "Already expired" in decision.message
    assert (await runtime.store.get_approval(late.id)).status == "expired"
    assert fakes.kube.patches == []
    assert await audit_of(runtime, late) == [("proposed", REQUESTER), ("expired", "srebot")]


async def test_a_runtime_given_a_clock_expires_approvals_by_that_clock(fakes: Fakes, db_url: str) -> None:
    now = utcnow()
    settings = load_settings(env=fakes.env(db_url))
    runtime = Runtime(settings, clock=lambda: now)
    await runtime.start()
    try:
        approval = await proposed(runtime, SCALE)
        assert approval.expires_at == now + timedelta(seconds=settings.defaults.approval_ttl_seconds)
        now += timedelta(seconds=settings.defaults.approval_ttl_seconds - 60)
        assert await runtime.approvals.sweep() == 0
        now += timedelta(seconds=120)
        assert await runtime.approvals.sweep() == 1
        decision = await runtime.approvals.decide(approval.id, APPROVER, "approve", platform="cli")
        assert not decision.accepted and "Already expired" in decision.message
        assert fakes.kube.patches == []
    finally:
        await runtime.stop()


async def test_an_approval_cut_off_mid_execution_is_closed_and_said(runtime: Runtime, fakes: Fakes) -> None:
    """A process that died between approved and executed must not leave the approval silent for ever."""
    approval = await proposed(runtime, SCALE)
    long_ago = utcnow() - timedelta(hours=1)
    # as a crashed process leaves it: approved, never finished
    await runtime.store.transition_approval(approval.id, "pending", "approved", decided_by=APPROVER, decided_at=long_ago)
    fresh = await proposed(runtime, RESTART)
    await runtime.store.transition_approval(fresh.id, "pending", "approved", decided_by=APPROVER, decided_at=utcnow())

    assert await runtime.approvals.sweep() == 1
    closed = await runtime.store.get_approval(approval.id)
    assert closed.status == "failed" and "stopped before it reported an outcome" in closed.result
    assert "check shop/checkout" in closed.result
    assert (await runtime.store.get_approval(fresh.id)).status == "approved"  # may still be running
    assert ("failed", "srebot") in await audit_of(runtime, approval)
    assert await runtime.approvals.sweep() == 0  # closed once
    assert fakes.kube.patches == []


async def test_without_approvers_nothing_can_be_approved(
    fakes: Fakes, sqlite_url: Callable[..., str]
) -> None:
    async with AsyncExitStack() as stack:
        runtime = await started(fakes.env(sqlite_url("a.db"), SREBOT_APPROVERS=""), stack)
        approval = await proposed(runtime, SCALE)
        assert approval.description == "scale shop/checkout: replicas 3 → 5"  # the answer says the rest
        for user in (APPROVER, REQUESTER):
            decision = await runtime.approvals.decide(approval.id, user, "approve", platform="cli")
            assert not decision.accepted and decision.message == NO_APPROVERS_HINT
        assert fakes.kube.patches == []
        assert (await runtime.store.get_approval(approval.id)).status == "pending"


# --- srebot chat ------------------------------------------------------------------------------------
def typed(lines: list[str]) -> Callable[[str], Awaitable[str | None]]:
    """A stand-in for the terminal: answers each prompt with the next line, then end of input."""

    async def answer(prompt: str) -> str | None:
        return lines.pop(0) if lines else None

    return answer


async def test_chat_decides_proposed_actions_at_the_prompt(
    fakes: Fakes, sqlite_url: Callable[..., str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with AsyncExitStack() as stack:
        runtime = await started(fakes.env(sqlite_url("a.db")), stack)

        # the real engine proposes "scale checkout 5"; the prompt follows the answer
        lines = [
            "scale checkout 5", "a", REQUESTER,  # approving one's own request: refused, stays pending
            "scale checkout 5", "r", "",  # the second one: withdrawn by the requester (Enter)
        ]
        monkeypatch.setattr(chat, "_input", typed(lines))
        assert await chat.run_chat(runtime, "t-chat", REQUESTER) == 0
        out, err = capsys.readouterr()
        assert "replicas 3 → 5" in out and "four eyes" in err and f"Rejected by {REQUESTER}" in out
        approvals = await runtime.store.approvals()
        assert sorted(a.status for a in approvals) == ["pending", "rejected"]

        # later, in the same thread: an approver decides by id
        pending = next(a for a in approvals if a.status == "pending")
        monkeypatch.setattr(chat, "_input", typed([f"approve {pending.id} as {APPROVER}"]))
        assert await chat.run_chat(runtime, "t-chat", REQUESTER) == 0
        out, err = capsys.readouterr()
        assert f"Approved by {APPROVER} (via srebot chat) · shop/checkout scaled: replicas 3 → 5" in out
        assert len(fakes.kube.patches) == 1 and (await runtime.store.get_approval(pending.id)).status == "executed"


# --- a terminal decision reaches Teams ------------------------------------------------------------------
async def test_a_terminal_decision_updates_the_teams_card(fakes: Fakes, sqlite_url: Callable[..., str]) -> None:
    from integrations.teams import TEAMS
    from integrations.teams.adapter import reference_dict
    from integrations.teams.bot import conversation_key

    async with BotConnectorFake() as connector:
        env = fakes.env(sqlite_url("a.db"), SREBOT_TEAMS="true", SREBOT_TEAMS_INSECURE="local",
                        SREBOT_TEAMS_SERVICE_URLS=connector.url, SREBOT_APPROVERS=BOB.aad_object_id)
        served = Runtime(load_settings(env=env))
        from bot.web import build_app

        app = build_app(served)
        async with TestClient(TestServer(app)):
            activity = Activity.model_validate(personal_message(connector.url, "scale checkout 5"))
            reference = reference_dict(activity)
            session_id = await served.store.session_id_for(conversation_key(activity), reference)
            approval = await served.actions.propose(SCALE, Origin(ALICE.aad_object_id, "teams", session_id))
            await app[TEAMS].bot.port(reference).ask_approval(approval)
            card = await connector.wait_for(lambda c: c.card is not None and "replicas 3 → 5" in c.text)

            # `srebot approve ID --user aad-bob`, in this process: a runtime that serves nothing
            args = argparse.Namespace(approval_id=approval.id, user=BOB.aad_object_id, command="approve")
            assert await cli.cmd_decide(load_settings(env=env), args) == cli.EXIT_OK
            update = await connector.wait_for(lambda c: c.kind == "update" and c.activity_id == card.response_id)
            assert "Approved by aad-bob" in update.text and "actions" not in update.card
            await connector.wait_for(lambda c: c.kind == "send" and "done (approved by aad-bob)" in c.text)
            assert len(fakes.kube.patches) == 1
