"""Approvals end to end over Slack HTTP: the real srebot app, real tools against the Kubernetes and
control-plane fakes, and the real CLI, on SQLite and PostgreSQL.

A user proposes a write action (`/sre scale checkout 5`, "ack incident INC-101"); the bot posts the
approval message with what will change; approvers click (or decide from the terminal); the tools'
write operation runs exactly once; the message is updated, the outcome posted in the thread and every
step written to the audit log.
"""

from __future__ import annotations

import json

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sessions.store import ApprovalRecord
from tests.fakes.control_plane import API, ControlPlaneFake
from tests.fakes.kube import KubeFake, PatchRecord
from tests.fakes.slack import Call, SlackBot, SlackFake, in_thread
from tests.fakes.shop import Fakes

REQUESTER, BOB, CAROL, OUTSIDER = "U0ALICE", "U0BOB", "U0CAROL", "U0MALLORY"
APPROVERS = f"{BOB},{CAROL}"
CHANNEL = "C0INCIDENT"
SCALE_PATH = "/apis/apps/v1/namespaces/shop/deployments/checkout/scale"
INCIDENT = "INC-101"  # "Checkout error rate above 5%", new, critical
ACK_PATH = f"{API}/incidents/{INCIDENT}/acknowledge"


@dataclass
class World:
    """The fakes one test runs against, and how to start srebot (a replica) on them."""

    slack: SlackFake
    fakes: Fakes
    db_url: str
    tmp_path: Path
    stack: AsyncExitStack

    @property
    def kube(self) -> KubeFake:
        return self.fakes.kube

    @property
    def cp(self) -> ControlPlaneFake:
        return self.fakes.cp

    def env(self, **extra: str) -> dict[str, str]:
        """What srebot reads from the environment (the SlackBot adds the Slack variables)."""
        return {**self.fakes.backends(), "SREBOT_APPROVERS": APPROVERS, **extra}

    async def bot(self, **extra: str) -> SlackBot:
        return await self.stack.enter_async_context(SlackBot(self.slack, self.db_url, env=self.env(**extra)))

    def scale_patches(self) -> list[PatchRecord]:
        return [p for p in self.kube.patches_of("shop", "checkout") if p.resource == "deployments/scale"]


@pytest.fixture
async def world(fakes: Fakes, db_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with AsyncExitStack() as stack:
        slack = await stack.enter_async_context(SlackFake())
        yield World(slack, fakes, db_url, tmp_path, stack)


def buttons(call: Call) -> list[dict[str, Any]]:
    return [e for b in call.args.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]


@dataclass
class Proposed:
    """An approval as a user sees it in Slack: the thread, the approval message and its row."""

    world: World
    bot: SlackBot
    thread: str
    message: Call
    approval: ApprovalRecord

    async def click(self, action_id: str, user: str, bot: SlackBot | None = None) -> None:
        status, _ = await (bot or self.bot).click(
            action_id, self.approval.id, user=user, message_ts=self.message.response["ts"], thread_ts=self.thread
        )
        assert status == 200

    async def row(self) -> ApprovalRecord:
        stored = await self.bot.runtime.store.get_approval(self.approval.id)
        assert stored is not None
        return stored

    def updates(self) -> list[Call]:
        return self.world.slack.calls_to("chat.update", lambda c: c.args.get("ts") == self.message.response["ts"])

    async def wait_update(self, text: str, timeout: float = 10.0) -> Call:
        ts = self.message.response["ts"]
        return await self.world.slack.wait_for(
            "chat.update", lambda c: c.args.get("ts") == ts and text in c.text_blob(), timeout
        )

    async def wait_in_thread(self, text: str, timeout: float = 10.0) -> Call:
        return await self.world.slack.wait_for(
            "chat.postMessage", lambda c: in_thread(self.thread)(c) and text in c.text_blob(), timeout
        )

    def ephemerals_to(self, user: str) -> list[Call]:
        return self.world.slack.calls_to("chat.postEphemeral", lambda c: c.args.get("user") == user)

    async def audit(self) -> list[tuple[str, str]]:
        rows = await self.bot.runtime.store.audit_log()
        return [(r.event, r.actor) for r in rows if r.approval_id == self.approval.id]


async def propose(world: World, bot: SlackBot, text: str) -> Proposed:
    """`/sre TEXT` as the requester: the engine proposes the action, the dispatcher posts the answer
    and then the approval message (with the buttons) in the command's thread."""
    posted = len(world.slack.calls_to("chat.postMessage", lambda c: bool(buttons(c))))
    status, ack = await bot.command(text, user=REQUESTER, channel=CHANNEL)
    assert status == 200, ack
    messages = await world.slack.wait_for_count("chat.postMessage", posted + 1, lambda c: bool(buttons(c)), 15)
    await bot.idle()
    message = messages[posted]
    approval = await bot.runtime.store.get_approval(buttons(message)[0]["value"])
    assert approval is not None
    return Proposed(world, bot, message.args["thread_ts"], message, approval)


SCALE = "scale checkout 5"
ACK = f"ack incident {INCIDENT}"


async def scale_proposed(world: World, **env: str) -> Proposed:
    bot = await world.bot(**env)
    return await propose(world, bot, SCALE)


# --- 1. an approver's click ----------------------------------------------------------------------
async def test_an_approvers_click_scales_once_updates_the_message_and_reports_in_the_thread(world: World) -> None:
    proposed = await scale_proposed(world)
    # exactly what will change, before anyone clicks
    assert "replicas 3 → 5" in proposed.message.text_blob()
    assert [(b["action_id"], b["value"]) for b in buttons(proposed.message)] == [
        ("approval_approve", proposed.approval.id), ("approval_reject", proposed.approval.id)]
    assert world.scale_patches() == []
    assert (proposed.approval.kind, proposed.approval.target, proposed.approval.params) == (
        "scale", "shop/checkout", {"replicas": 5})
    assert (proposed.approval.requester, proposed.approval.platform, proposed.approval.status) == (
        REQUESTER, "slack", "pending")
    assert proposed.approval.session_id is not None

    await proposed.click("approval_approve", BOB)
    await proposed.bot.idle()

    [patch] = world.scale_patches()
    assert patch.body == {"spec": {"replicas": 5}}
    assert world.kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 5
    row = await proposed.row()
    assert (row.status, row.decided_by) == ("executed", BOB)
    assert row.decided_at is not None and row.finished_at is not None and row.finished_at >= row.decided_at
    final = proposed.updates()[-1]
    assert f"Approved by <@{BOB}> {row.decided_at:%H:%M} UTC" in final.text_blob()
    assert f"Approved by <@{BOB}>" in final.args["text"]  # the notification fallback mentions, too
    assert "replicas 3 → 5" in final.text_blob() and not buttons(final)
    await proposed.wait_in_thread(f"done (approved by <@{BOB}>)")
    assert await proposed.audit() == [("proposed", REQUESTER), ("approved", BOB), ("executed", BOB)]
    assert proposed.ephemerals_to(BOB) == []


async def test_a_diagnosis_recommends_a_rollback_and_a_restart_is_asked_for_both_run_once_approved(
    world: World,
) -> None:
    bot = await world.bot()
    rollback = await propose(world, bot, "diagnose checkout")  # the playbook's recommendation, proposed
    assert (rollback.approval.kind, rollback.approval.target) == ("rollback", "shop/checkout")
    assert "image v2.1.0 → v2.0.3 (revision 7 → 6)" in rollback.message.text_blob()
    restart = await propose(world, bot, "restart checkout")
    assert "restart 3 pods of shop/checkout" in restart.message.text_blob()
    assert world.kube.patches == []

    await rollback.click("approval_approve", BOB)
    await bot.idle()
    await rollback.wait_in_thread("rolled back to revision 6 (v2.0.3)")
    await restart.click("approval_approve", CAROL)  # after: a rollback puts back the whole pod template
    await bot.idle()
    await restart.wait_in_thread("rollout restarted for shop/checkout")
    await restart.wait_update(f"Approved by <@{CAROL}>")
    patches = world.kube.patches_of("shop", "checkout")
    assert len(patches) == 2 and {p.resource for p in patches} == {"deployments"}
    template = world.kube.deployments[("shop", "checkout")]["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "shop/checkout:v2.0.3"
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    assert [(await p.row()).status for p in (rollback, restart)] == ["executed", "executed"]


# --- 2. the requester's own click ----------------------------------------------------------------
async def test_the_requesters_click_is_refused_privately_and_changes_nothing(world: World) -> None:
    proposed = await scale_proposed(world, SREBOT_APPROVERS=f"{REQUESTER},{BOB}")  # even an approver
    await proposed.click("approval_approve", REQUESTER)
    await proposed.click("approval_approve", OUTSIDER)
    await proposed.bot.idle()

    [to_requester] = proposed.ephemerals_to(REQUESTER)
    assert "someone else has to approve it (four eyes)" in to_requester.args["text"]
    assert to_requester.args["channel"] == CHANNEL and to_requester.args["thread_ts"] == proposed.thread
    assert "not in the approvers list" in proposed.ephemerals_to(OUTSIDER)[0].args["text"]
    assert world.scale_patches() == [] and proposed.updates() == []
    assert (await proposed.row()).status == "pending"
    assert sorted(await proposed.audit()) == [("proposed", REQUESTER), ("refused", REQUESTER), ("refused", OUTSIDER)]


# --- 3. reject -----------------------------------------------------------------------------------
async def test_reject_changes_nothing_and_updates_the_message(world: World) -> None:
    proposed = await scale_proposed(world)
    await proposed.click("approval_reject", CAROL)
    await proposed.bot.idle()

    update = await proposed.wait_update(f"Rejected by <@{CAROL}>")
    assert not buttons(update)
    await proposed.wait_in_thread("was rejected by")
    assert world.scale_patches() == []
    assert world.kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 3
    row = await proposed.row()
    assert (row.status, row.decided_by) == ("rejected", CAROL)
    # a late approve changes nothing and says why
    await proposed.click("approval_approve", BOB)
    await proposed.bot.idle()
    assert "Already rejected" in proposed.ephemerals_to(BOB)[0].args["text"]
    assert world.scale_patches() == []
    assert await proposed.audit() == [("proposed", REQUESTER), ("rejected", CAROL)]


# --- 4. two approvers at once, on two replicas ---------------------------------------------------
async def test_concurrent_approvals_on_two_replicas_patch_once(world: World) -> None:
    proposed = await scale_proposed(world)
    replica = await world.bot()
    clicks = [(BOB, proposed.bot), (CAROL, replica), (BOB, replica), (CAROL, proposed.bot)]
    await asyncio.gather(*(proposed.click("approval_approve", user, bot) for user, bot in clicks))
    await asyncio.gather(proposed.bot.idle(), replica.idle())

    assert len(world.scale_patches()) == 1
    row = await proposed.row()
    assert row.status == "executed" and row.decided_by in (BOB, CAROL)
    told = world.slack.calls_to("chat.postEphemeral")
    assert len(told) == 3 and all("Already" in c.args["text"] for c in told)
    assert len(world.slack.calls_to("chat.postMessage", lambda c: "done (approved by" in c.text_blob())) == 1
    events = [event for event, _ in await proposed.audit()]
    assert events == ["proposed", "approved", "executed"]


# --- 5. expiry -----------------------------------------------------------------------------------
async def test_an_unanswered_approval_expires_and_later_clicks_do_nothing(world: World) -> None:
    config = world.tmp_path / "srebot.toml"
    config.write_text('[defaults]\napproval_ttl = "1s"\n')
    proposed = await scale_proposed(world, SREBOT_CONFIG=str(config), SREBOT_APPROVAL_SWEEP_SECONDS="0.2")
    assert proposed.bot.runtime.approvals.sweep_seconds == 0.2

    # the background sweeper, not the test, marks it expired and updates the message
    update = await proposed.wait_update("Expired", timeout=15)
    assert not buttons(update)
    await proposed.wait_in_thread("expired without a decision")
    assert (await proposed.row()).status == "expired"

    await proposed.click("approval_approve", BOB)
    await proposed.bot.idle()
    assert "Already expired" in proposed.ephemerals_to(BOB)[0].args["text"]
    assert world.scale_patches() == [] and (await proposed.row()).status == "expired"
    assert await proposed.audit() == [("proposed", REQUESTER), ("expired", "srebot")]


# --- 6. a control-plane write through the same path ----------------------------------------------
async def test_acknowledging_an_incident_goes_through_the_same_approval(world: World) -> None:
    bot = await world.bot()
    proposed = await propose(world, bot, ACK)
    assert f"acknowledge incident {INCIDENT} “Checkout error rate above 5%”" in proposed.message.text_blob()
    await proposed.click("approval_approve", REQUESTER)  # four eyes here too
    await bot.idle()
    assert world.cp.actions_on(ACK_PATH) == []

    await proposed.click("approval_approve", CAROL)
    await bot.idle()
    [ack] = world.cp.actions_on(ACK_PATH)
    assert ack.method == "POST" and ack.body["acknowledged_by"] == CAROL
    assert world.cp.incidents[0]["status"] == "acknowledged"
    assert (await proposed.row()).status == "executed"
    await proposed.wait_update(f"Approved by <@{CAROL}>")
    await proposed.wait_in_thread(f"{INCIDENT} acknowledged")


# --- 7. the terminal ------------------------------------------------------------------------------
async def srebot_cli(world: World, *args: str) -> tuple[int, str, str]:
    """`python -m bot ARGS` on the test's database, configured like the served bot."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SREBOT_", "SLACK_", "CONTROL_PLANE", "MICROSOFT"))}
    env.update(world.env(), DATABASE_URL=world.db_url, SLACK_BOT_TOKEN=world.slack.bot_token,
               SLACK_SIGNING_SECRET=world.slack.signing_secret, SLACK_API_URL=world.slack.api_url, SREBOT_TEAMS="false")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env=env, cwd=world.tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.integration  # srebot approve/reject/audit in child processes
async def test_deciding_from_the_terminal_updates_the_slack_message(world: World) -> None:
    proposed = await scale_proposed(world)
    code, _, err = await srebot_cli(world, "approve", proposed.approval.id, "--user", REQUESTER)
    assert code == 1 and "four eyes" in err and world.scale_patches() == []

    code, out, err = await srebot_cli(world, "approve", proposed.approval.id, "--user", CAROL)
    assert code == 0, err
    assert f"Approved by {CAROL}" in out and "replicas 3 → 5" in out
    assert len(world.scale_patches()) == 1
    # the thread and the message say the decision was typed in a shell, under the name given
    await proposed.wait_update(f"Approved by <@{CAROL}> (via CLI)")
    await proposed.wait_in_thread(f"done (approved by <@{CAROL}> (via CLI))")

    # reject from the terminal likewise
    other = await propose(world, proposed.bot, SCALE)
    code, out, _ = await srebot_cli(world, "reject", other.approval.id, "--user", BOB)
    assert code == 0 and f"Rejected by {BOB}" in out
    await other.wait_update(f"Rejected by <@{BOB}>")
    await other.wait_in_thread("was rejected by")
    assert len(world.scale_patches()) == 1 and (await other.row()).status == "rejected"

    code, out, _ = await srebot_cli(world, "audit", "--since", "1h")
    assert code == 0
    lines = [line for line in out.splitlines() if proposed.approval.id in line]
    assert [line.split()[2] for line in lines] == ["proposed", "refused", "approved", "executed"]
    assert any(f"approved  {CAROL}" in line and "via cli" in line for line in lines)
    assert any(f"rejected  {BOB}" in line and other.approval.id in line for line in out.splitlines())
    assert "scale shop/checkout" in lines[0] and "replicas 3 → 5" in lines[0]


# --- 8. no approvers configured -----------------------------------------------------------------
async def test_without_approvers_the_answer_says_how_to_configure_them(world: World) -> None:
    proposed = await scale_proposed(world, SREBOT_APPROVERS="")
    assert "replicas 3 → 5" in proposed.message.text_blob() and buttons(proposed.message)
    # the answer (the thread's placeholder, replaced) says why nobody can approve and how to change that
    # (up front, next to the button that proposes the change)
    answer = [c for c in world.slack.calls if c.method in ("chat.postMessage", "chat.update")
              and c.args.get("blocks") and c.args["blocks"][0]["type"] == "header"
              and proposed.approval.id in [b["value"] for b in buttons(c)]]
    shown = json.dumps(answer[-1].args["blocks"], ensure_ascii=False)
    assert answer and "No approvers are configured" in shown
    assert "set SREBOT_APPROVERS to a comma-separated list of user ids" in shown
    await proposed.click("approval_approve", BOB)
    await proposed.click("approval_approve", CAROL)
    await proposed.bot.idle()
    for user in (BOB, CAROL):
        [told] = proposed.ephemerals_to(user)
        assert "No approvers are configured" in told.args["text"] and "SREBOT_APPROVERS" in told.args["text"]
    assert world.scale_patches() == [] and (await proposed.row()).status == "pending"


# --- 9. a failing write -------------------------------------------------------------------------
async def test_a_failed_execution_is_reported_with_its_error(world: World) -> None:
    proposed = await scale_proposed(world)
    world.kube.fail("PATCH", SCALE_PATH, 403)
    await proposed.click("approval_approve", BOB)
    await proposed.bot.idle()

    row = await proposed.row()
    assert row.status == "failed" and row.result and "injected failure 403" in row.result
    update = await proposed.wait_update("failed")
    assert f"Approved by <@{BOB}>" in update.text_blob() and "injected failure 403" in update.text_blob()
    await proposed.wait_in_thread("injected failure 403")
    assert world.kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 3
    events = await proposed.audit()
    assert events == [("proposed", REQUESTER), ("approved", BOB), ("failed", BOB)]

