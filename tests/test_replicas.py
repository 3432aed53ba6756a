"""Scale-out (DESIGN 6): two real `srebot serve` processes on one PostgreSQL behave like one bot.

Both replicas are subprocesses (`python -m bot serve`) wired to one SlackFake, one KubeFake and one
Loki fake running in the test process, like two pods behind the Slack Request URL:

- one signed event delivered to both (and Slack's second copy of a channel mention, the `message`
  event, to both too) is answered once: one placeholder, one answer, one turn;
- one Approve click sent to both executes the action once: exactly one PATCH reaches Kubernetes;
- a "cancel" in a thread, delivered only to B, stops the request A is running there (B flags the
  turn in the database, A cancels it on its next heartbeat);
- a thread started on A continues on B: the follow-up without a mention, delivered only to B, is
  answered in the thread, in the same session, about the same service.

The processes, the database and the fakes are shared by the tests of this module (each test uses
its own channel), which keeps the module at a few seconds of process start-up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from sessions.store import FINAL_TURN, ConversationKey, Store, TurnRecord
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.fakes.kube import KubeFake, load_shop_scenario
from tests.fakes.loki import FakeLoki
from tests.fakes.serve import (
    ServeProcess,
    ThreadMessage,
    answers,
    eventually,
    is_placeholder,
    thread_messages,
    wait_for_thread,
)
from tests.fakes.slack import Call, SlackFake

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.integration]  # srebot in child processes

CONFIG = """
[defaults]
namespace = "shop"
approval_ttl = "30m"

[services.checkout]
namespace = "shop"
deployment = "checkout"

# only the cancel test asks about it: a logs request no earlier test has cached (tools cache for 15 s)
[services.search]
namespace = "shop"
"""

REQUESTER, APPROVER = "U0ALICE", "U0BOB"


@dataclass
class Cluster:
    slack: SlackFake
    kube: KubeFake
    loki: FakeLoki
    store: Store  # the test's own view of the replicas' database
    a: ServeProcess
    b: ServeProcess

    @property
    def replicas(self) -> tuple[ServeProcess, ServeProcess]:
        return self.a, self.b

    async def total(self, name: str, **labels: str) -> float:
        values = await asyncio.gather(*(r.metric(name, **labels) for r in self.replicas))
        return sum(values)

    def key(self, channel: str, thread_ts: str) -> ConversationKey:
        return ConversationKey("slack", self.slack.team_id, channel, thread_ts)

    async def turns(self, channel: str, thread_ts: str) -> list[TurnRecord]:
        session_id = await self.store.find_session_id(self.key(channel, thread_ts))
        return await self.store.recent_turns(session_id, limit=100) if session_id else []

    async def final_turns(self, channel: str, thread_ts: str, count: int, timeout: float = 30.0) -> list[TurnRecord]:
        """Wait until the thread has `count` turns, all final (the answer is posted just before the
        turn row is closed, so a moment may pass between the two)."""

        async def check() -> list[TurnRecord] | None:
            turns = await self.turns(channel, thread_ts)
            return turns if len(turns) >= count and all(t.status in FINAL_TURN for t in turns) else None

        return await eventually(check, timeout, f"{count} final turn(s) in {channel}/{thread_ts}")

    async def instance_of(self, request_id: str) -> str:
        async with self.store.engine.connect() as conn:
            return (
                await conn.execute(text("SELECT instance_id FROM turns WHERE request_id = :r"), {"r": request_id})
            ).scalar_one()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    workdir: Path = tmp_path_factory.mktemp("replicas")
    (workdir / "srebot.toml").write_text(CONFIG)
    url = await _create_pg_database()
    store = Store(url)
    try:
        async with SlackFake() as slack, KubeFake() as kube:
            load_shop_scenario(kube)
            loki = FakeLoki()
            now = datetime.now(UTC)
            loki.add(
                {"namespace": "shop", "app": "checkout", "pod": "checkout-7c9f8d6b5d-x2k9p"},
                [(now - timedelta(seconds=30 * i), f"ERROR panic: nil pointer dereference in cart.Total (#{i})")
                 for i in range(1, 20)],
            )
            await loki.start()
            env = {
                "DATABASE_URL": url,
                "SREBOT_CONFIG": str(workdir / "srebot.toml"),
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_SIGNING_SECRET": slack.signing_secret,
                "SLACK_API_URL": slack.api_url,
                "KUBECONFIG": kube.kubeconfig_path,
                "SREBOT_KUBE_CONTEXT": kube.context,
                "LOKI_URL": loki.url,
                "SREBOT_COST": "off",
                "SREBOT_APPROVERS": f"{APPROVER},U0CAROL",
                "SREBOT_TOOL_TIMEOUT": "20",
                "SREBOT_HEARTBEAT_SECONDS": "0.5",  # how soon a cancel flagged by the other replica lands
            }
            a = ServeProcess(env, cwd=workdir, name="replica-a")
            b = ServeProcess(env, cwd=workdir, name="replica-b")
            try:
                await asyncio.gather(a.start(), b.start())  # both migrate at once: the advisory lock serialises
                yield Cluster(slack, kube, loki, store, a, b)
                codes = await asyncio.gather(a.stop(), b.stop())
                assert codes == [0, 0], f"replicas exited with {codes}:\n{a.log()}\n{b.log()}"
            finally:
                await asyncio.gather(a.kill(), b.kill(), return_exceptions=True)
                await loki.close()
    finally:
        await store.close()
        await _drop_pg_database(url)


def _approve_button(call: Call) -> str | None:
    for block in call.args.get("blocks") or []:
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("action_id") == "approval_approve":
                return element.get("value")
    return None


async def test_one_event_delivered_to_both_replicas_is_answered_once(cluster: Cluster) -> None:
    slack, channel = cluster.slack, "C0DEDUPE"
    mention = slack.app_mention("<@UBOT> diagnose checkout", channel=channel)
    # Slack sends a channel mention twice (app_mention and message, other event ids, one ts); a load
    # balancer in front of the replicas, or a redelivery, can hand each copy to either replica.
    copy = slack.message("<@UBOT> diagnose checkout", channel=channel, ts=mention["ts"])
    bodies = [slack.event_body(mention), slack.event_body(copy)]
    duplicates = await cluster.total("srebot_events_dropped_total", platform="slack", reason="duplicate")

    delivered = await asyncio.gather(*(slack.deliver(r.events_url, body) for body in bodies for r in cluster.replicas))
    assert [status for status, _ in delivered] == [200, 200, 200, 200]

    # every copy was taken by a replica: one went on to the dispatcher, three were dropped as duplicates
    await eventually(
        lambda: _equals(cluster.total("srebot_events_dropped_total", platform="slack", reason="duplicate"),
                        duplicates + 3),
        what="three of the four copies dropped as duplicates",
    )
    (turn,) = await cluster.final_turns(channel, mention["ts"], 1)
    assert turn.status == "completed", turn
    assert turn.service == "checkout"

    messages = thread_messages(slack, channel, mention["ts"])
    placeholders = [m for m in messages if _first_is_placeholder(m)]
    assert len(placeholders) == 1, [m.text[:120] for m in messages]
    answered = [m for m in answers(messages) if _approve_button(m.posted) is None]
    assert len(answered) == 1, [m.text[:120] for m in answered]
    assert answered[0] is placeholders[0]  # the placeholder became the answer (chat.update)
    assert "checkout" in answered[0].text
    # exactly one turn in the database for that message
    assert len(await cluster.turns(channel, mention["ts"])) == 1


async def test_one_approval_clicked_on_both_replicas_executes_once(cluster: Cluster) -> None:
    slack, kube, channel = cluster.slack, cluster.kube, "C0APPROVE"
    patches = len(kube.patches)

    # /sre restart checkout on A: "On it" at once, "@alice asked: …" in the channel, whose thread gets
    # the answer and the approval message with its buttons
    status, body = await slack.deliver(cluster.a.events_url, slack.slash_command("restart checkout", channel=channel,
                                                                                 user=REQUESTER))
    assert status == 200 and "On it" in body
    asked = await slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("channel") == channel and not c.args.get("thread_ts"), timeout=30
    )
    thread = asked.response["ts"]
    request = await slack.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("channel") == channel and c.args.get("thread_ts") == thread and _approve_button(c),
        timeout=30,
    )
    approval_id = _approve_button(request)
    assert approval_id
    approval = await cluster.store.get_approval(approval_id)
    assert approval is not None and (approval.kind, approval.target, approval.status) == (
        "restart", "shop/checkout", "pending")
    assert approval.requester == REQUESTER
    assert len(kube.patches) == patches  # proposing changed nothing

    # the approver's one click reaches both replicas at once
    click = slack.block_actions("approval_approve", approval_id, user=APPROVER, channel=channel,
                                message_ts=request.response["ts"], thread_ts=thread)
    delivered = await asyncio.gather(*(slack.deliver(r.events_url, click) for r in cluster.replicas))
    assert [s for s, _ in delivered] == [200, 200]

    # the winner runs it and reports in the thread; the loser tells the clicker privately that it is decided
    outcome = await slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread and "done (approved by" in c.text_blob(),
        timeout=30,
    )
    assert "restart" in outcome.text_blob() and "shop/checkout" in outcome.text_blob()
    refused = await slack.wait_for(
        "chat.postEphemeral", lambda c: c.args.get("channel") == channel and c.args.get("user") == APPROVER,
        timeout=30,
    )
    assert "Already" in refused.text_blob() and "nothing was changed" in refused.text_blob()

    new = kube.patches[patches:]
    assert len(new) == 1, new
    assert (new[0].namespace, new[0].name, new[0].resource) == ("shop", "checkout", "deployments")
    assert "kubectl.kubernetes.io/restartedAt" in json.dumps(new[0].body)
    final = await cluster.store.get_approval(approval_id)
    assert final is not None and final.status == "executed" and final.decided_by == APPROVER
    events = [(r.event, r.actor) for r in await cluster.store.audit_log() if r.approval_id == approval_id]
    assert events == [("proposed", REQUESTER), ("approved", APPROVER), ("executed", APPROVER)]
    # one outcome line, never two
    assert len([c for c in slack.calls_to("chat.postMessage", lambda c: c.args.get("thread_ts") == thread)
                if "done (approved by" in c.text_blob()]) == 1


async def test_cancel_delivered_to_one_replica_stops_the_request_on_the_other(cluster: Cluster) -> None:
    slack, loki, channel = cluster.slack, cluster.loki, "C0CANCEL"
    queries = len(loki.requests)
    cancelled_on_a = await cluster.a.metric("srebot_requests_total", status="cancelled")
    loki.delay = 10.0  # the logs request stays in flight at the backend, far longer than a heartbeat
    try:
        mention = slack.app_mention("<@UBOT> logs search", channel=channel)
        status, _ = await slack.deliver(cluster.a.events_url, slack.event_body(mention))
        assert status == 200

        async def queried() -> bool:
            return len(loki.requests) > queries

        await eventually(queried, what="A queries Loki")

        cancel = slack.message("cancel", channel=channel, thread_ts=mention["ts"])
        status, _ = await slack.deliver(cluster.b.events_url, slack.event_body(cancel))
        assert status == 200
        # B's answer to the cancel and A's cancelled answer, in either order
        messages = await wait_for_thread(
            slack, channel, mention["ts"],
            lambda ms: any("Cancelled “logs search”" in m.text for m in ms) and any(
                "Cancelling “logs search” (it is running on another srebot replica; it stops within 0.5 s)"
                in m.text for m in ms),
            timeout=8,  # well inside Loki's delay: the request was cancelled, it did not finish
        )
    finally:
        loki.delay = 0.0
    assert not any(m.placeholder for m in messages)
    (turn,) = await cluster.final_turns(channel, mention["ts"], 1)
    assert turn.status == "cancelled", turn
    assert await cluster.a.metric("srebot_requests_total", status="cancelled") == cancelled_on_a + 1


async def test_a_thread_started_on_one_replica_continues_on_the_other(cluster: Cluster) -> None:
    slack, channel = cluster.slack, "C0FOLLOW"
    mention = slack.app_mention("<@UBOT> diagnose checkout", channel=channel)
    status, _ = await slack.deliver(cluster.a.events_url, slack.event_body(mention))
    assert status == 200
    (first,) = await cluster.final_turns(channel, mention["ts"], 1)
    assert first.status == "completed" and first.service == "checkout"
    requests_on_b = await cluster.b.metric("srebot_requests_total")

    # a follow-up in the thread, no mention, and only B hears about it
    follow_up = slack.message("and its logs?", channel=channel, thread_ts=mention["ts"])
    status, _ = await slack.deliver(cluster.b.events_url, slack.event_body(follow_up))
    assert status == 200

    turns = await cluster.final_turns(channel, mention["ts"], 2)
    assert turns[0].request_id == first.request_id
    second = turns[1]
    assert second.session_id == first.session_id  # same thread, same session, across replicas
    assert second.text == "and its logs?" and second.status == "completed", second
    assert second.service == "checkout"  # the session's service answers "its"
    assert second.intent == "logs"
    assert await cluster.instance_of(first.request_id) != await cluster.instance_of(second.request_id)
    await eventually(lambda: _equals(cluster.b.metric("srebot_requests_total"), requests_on_b + 1),
                     what="B finished one request")

    messages = await wait_for_thread(slack, channel, mention["ts"],
                                     lambda ms: len([m for m in answers(ms) if _approve_button(m.posted) is None]) >= 2)
    answered = [m for m in answers(messages) if _approve_button(m.posted) is None]
    assert len(answered) == 2
    assert "logs" in answered[1].text and "checkout" in answered[1].text


def _first_is_placeholder(message: ThreadMessage) -> bool:
    return is_placeholder(message.posted.args)


async def _equals(value: Any, expected: float) -> bool:
    return (await value) == expected
