"""Who may do what over Teams, through the real endpoint: Activity JSON with a token signed by a locally
generated key (validated against the loopback OpenID metadata / JWKS), the real engine and tools against the
Kubernetes fake, the loopback Bot Connector serving the member lookup and 1:1 chats in Teams' wire format.

Guests and people of other tenants read answers but never propose or approve; a member lookup that fails
refuses (fail closed) and says why; refusals reach only the person (a 1:1 chat, an invoke response), or where
that fails a mention in the thread that gives no details; audit rows say tenant, conversation and path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.approvals import NotAllowed
from bot.policy import EXTERNAL_REFUSAL
from bot.wording import NOT_TOLD_PRIVATELY
from integrations.teams.cards import DECIDE_VERB
from integrations.teams.members import LOOKUP_FAILED
from tests.fakes.bot_connector import (
    ALICE,
    BOB,
    CHANNEL_ID,
    GUEST,
    TENANT_ID,
    BotConnectorFake,
    ConnectorCall,
    TeamsUser,
    approval_submit,
    card_action,
    channel_message,
    personal_conversation_id,
    thread_conversation_id,
)
from tests.fakes.shop import Fakes
from tests.test_teams import Srebot, auth_env, is_card, login, serve  # noqa: F401 - the `login` fixture

SCALE = "scale checkout 5"
OTHER_TENANT = "99999999-8888-7777-6666-555555555555"


def env(db_file: str, login_, connector: BotConnectorFake, fakes: Fakes, **extra: str) -> dict[str, str]:
    approvers = ",".join(u.aad_object_id for u in (ALICE, BOB, GUEST))  # a guest named an approver still cannot
    return {**auth_env(db_file, login_, connector.url, SREBOT_APPROVERS=approvers, **extra), **fakes.backends()}


@pytest.fixture
async def connector() -> AsyncIterator[BotConnectorFake]:
    async with BotConnectorFake(members=(ALICE, BOB, GUEST)) as fake:
        yield fake


def thread_texts(connector: BotConnectorFake, root_id: str) -> str:
    return "\n".join(c.text for c in connector.calls if c.conversation_id == thread_conversation_id(root_id))


def lookups(connector: BotConnectorFake, user: TeamsUser) -> list[ConnectorCall]:
    return [c for c in connector.calls if c.kind == "member" and c.path.endswith(f"/members/{user.id}")]


async def ask(srebot: Srebot, connector: BotConnectorFake, text: str, **kwargs: Any) -> dict[str, Any]:
    """A channel message mentioning the bot; returns it once the answer card is in its thread."""
    activity = channel_message(connector.url, text, **kwargs)
    assert await srebot.post(activity) == 200
    await connector.wait_for(lambda c: is_card(c) and c.conversation_id == activity["conversation"]["id"], 15)
    return activity


async def test_a_guest_reads_answers_and_is_told_privately_why_nothing_is_proposed(
        db_file: str, login, connector, fakes: Fakes) -> None:
    async with serve(env(db_file, login, connector, fakes), login=login) as srebot:
        asked = await ask(srebot, connector, SCALE, user=GUEST)
        # the thread gets the answer, which says only that the reason went privately
        said = thread_texts(connector, asked["id"])
        assert NotAllowed.PUBLIC in said and EXTERNAL_REFUSAL not in said
        assert await srebot.runtime.store.approvals() == []
        # the reason: in the 1:1 chat the bot opened with her, in her tenant
        private = await connector.wait_for(lambda c: c.kind == "send" and EXTERNAL_REFUSAL in c.text)
        assert private.conversation_id == personal_conversation_id(GUEST)
        [create] = [c for c in connector.calls if c.kind == "create"]
        assert create.body["members"] == [{"id": GUEST.id}] and create.body["tenantId"] == TENANT_ID
        assert create.body["isGroup"] is False
        # her account was looked up once; a second message uses the cached answer
        await ask(srebot, connector, "logs checkout", user=GUEST)
        assert len(lookups(connector, GUEST)) == 1

        # a member of the tenant proposes the same thing in the same channel: the approval card is posted
        asked = await ask(srebot, connector, SCALE, user=ALICE)
        await connector.wait_for(lambda c: is_card(c) and "Approval needed" in c.text
                                 and c.conversation_id == thread_conversation_id(asked["id"]), 15)
        [approval] = await srebot.runtime.store.approvals()
        assert approval.requester == ALICE.aad_object_id


async def test_people_of_another_tenant_cannot_propose_even_with_a_forged_tenant_id(
        db_file: str, login, connector, fakes: Fakes) -> None:
    async with serve(env(db_file, login, connector, fakes), login=login) as srebot:
        # an activity from another tenant (Teams external access / shared channels)
        foreign = channel_message(connector.url, SCALE, user=BOB)
        foreign["channelData"]["tenant"]["id"] = foreign["conversation"]["tenantId"] = OTHER_TENANT
        assert await srebot.post(foreign) == 200
        await connector.wait_for(lambda c: is_card(c) and NotAllowed.PUBLIC in c.text, 15)
        await connector.wait_for(lambda c: c.kind == "send" and EXTERNAL_REFUSAL in c.text)

        # the body claims this tenant, the token says another one: the token wins
        forged = channel_message(connector.url, SCALE, user=ALICE)
        token = login.token(srebot.teams.auth.app_id, connector.url, tid=OTHER_TENANT)
        assert await srebot.post(forged, headers={"Authorization": f"Bearer {token}"}) == 200
        await connector.wait_for(lambda c: is_card(c) and NotAllowed.PUBLIC in c.text
                                 and c.conversation_id == thread_conversation_id(forged["id"]), 15)
        # two tenant ids in one activity contradict each other: not vouched for either
        mixed = channel_message(connector.url, SCALE, user=ALICE)
        mixed["conversation"]["tenantId"] = OTHER_TENANT
        assert await srebot.post(mixed) == 200
        await connector.wait_for(lambda c: is_card(c) and NotAllowed.PUBLIC in c.text
                                 and c.conversation_id == thread_conversation_id(mixed["id"]), 15)
        assert await srebot.runtime.store.approvals() == []
        assert lookups(connector, ALICE) == lookups(connector, BOB) == []  # refused before any lookup
        refused = [r for r in await srebot.runtime.store.audit_log() if r.event == "refused"]
        assert {(r.actor, r.workspace) for r in refused} == {
            (BOB.aad_object_id, OTHER_TENANT), (ALICE.aad_object_id, TENANT_ID)}


async def test_who_may_ask_is_the_same_policy_on_teams_and_a_refusal_is_private(
        tmp_path, login, connector, fakes: Fakes, db_file: str) -> None:
    config = tmp_path / "srebot.toml"
    config.write_text(f'[policy]\nask = ["{ALICE.aad_object_id}"]\n')
    async with serve(env(db_file, login, connector, fakes, SREBOT_CONFIG=str(config)), login=login) as srebot:
        refused = channel_message(connector.url, "logs checkout", user=BOB)
        assert await srebot.post(refused) == 200
        private = await connector.wait_for(lambda c: c.kind == "send" and "You may not ask srebot here" in c.text)
        assert private.conversation_id == personal_conversation_id(BOB)
        await ask(srebot, connector, "logs checkout", user=ALICE)  # answered
        assert thread_texts(connector, refused["id"]) == ""  # nothing at all in Bob's thread


async def test_a_failed_member_lookup_refuses_and_a_failed_private_chat_says_less_in_public(
        db_file: str, login, fakes: Fakes) -> None:
    # the Bot Connector does not know Bob: his lookup fails (404), and so does opening a 1:1 chat with him
    async with BotConnectorFake(members=(ALICE,)) as connector:
        async with serve(env(db_file, login, connector, fakes), login=login) as srebot:
            asked = await ask(srebot, connector, SCALE, user=BOB)
            assert await srebot.runtime.store.approvals() == []
            mention = await connector.wait_for(lambda c: NOT_TOLD_PRIVATELY in c.text)
            assert mention.conversation_id == thread_conversation_id(asked["id"])
            assert mention.body["entities"][0]["mentioned"]["id"] == BOB.id
            said = thread_texts(connector, asked["id"])
            assert LOOKUP_FAILED not in said and NotAllowed.PUBLIC in said
            assert [c.status for c in connector.calls if c.kind in ("member", "create")] == [404, 400]
            # the refusal, with its reason, is in the audit log
            [refused] = [r for r in await srebot.runtime.store.audit_log() if r.event == "refused"]
            assert refused.actor == BOB.aad_object_id and LOOKUP_FAILED in refused.detail


async def test_guests_never_approve_and_teams_audit_rows_say_tenant_conversation_and_path(
        db_file: str, login, connector, fakes: Fakes) -> None:
    async with serve(env(db_file, login, connector, fakes), login=login) as srebot:
        asked = await ask(srebot, connector, SCALE, user=ALICE)
        conversation = thread_conversation_id(asked["id"])
        await connector.wait_for(lambda c: is_card(c) and "Approval needed" in c.text, 15)
        [approval] = await srebot.runtime.store.approvals()
        data = {"srebot": "approval", "approval_id": approval.id, "decision": "approve"}

        # a guest named in SREBOT_APPROVERS presses Approve: refused in her own card (the invoke response)
        status, body = await srebot.request(card_action(connector.url, DECIDE_VERB, data, user=GUEST,
                                                        conversation_id=conversation))
        assert status == 200 and EXTERNAL_REFUSAL in str(body["value"])
        # ... and with the Action.Submit of an older card: told in a 1:1 chat, not in the thread
        assert await srebot.post(approval_submit(connector.url, approval.id, user=GUEST,
                                                 conversation_id=conversation)) == 200
        private = await connector.wait_for(lambda c: c.kind == "send" and EXTERNAL_REFUSAL in c.text)
        assert private.conversation_id == personal_conversation_id(GUEST)
        assert EXTERNAL_REFUSAL not in thread_texts(connector, asked["id"])
        assert (await srebot.runtime.store.get_approval(approval.id)).status == "pending"
        assert fakes.kube.patches_of("shop", "checkout") == []

        # Bob approves: executed
        status, body = await srebot.request(card_action(connector.url, DECIDE_VERB, data, user=BOB,
                                                        conversation_id=conversation))
        assert status == 200
        await connector.wait_for(lambda c: "done (approved by Bob Example)" in c.text, 15)
        assert len(fakes.kube.patches_of("shop", "checkout")) == 1

        rows = [r for r in await srebot.runtime.store.audit_log() if r.approval_id == approval.id]
        assert [(r.event, r.actor, r.platform, r.workspace, r.channel, r.via) for r in rows] == [
            ("proposed", ALICE.aad_object_id, "teams", TENANT_ID, CHANNEL_ID, "message"),
            ("refused", GUEST.aad_object_id, "teams", TENANT_ID, CHANNEL_ID, "card"),
            ("refused", GUEST.aad_object_id, "teams", TENANT_ID, CHANNEL_ID, "card"),
            ("approved", BOB.aad_object_id, "teams", TENANT_ID, CHANNEL_ID, "card"),
            ("executed", BOB.aad_object_id, "teams", TENANT_ID, CHANNEL_ID, "card"),
        ]
