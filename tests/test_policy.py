"""The policy's rules on their own: who may ask, propose and approve each kind of action, in which channel."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, PolicyConfig
from bot.policy import EXTERNAL_REFUSAL, NO_APPROVERS_HINT, Policy
from sessions.store import Actor, ConversationKey

KINDS = ("restart", "scale", "rollback")
INCIDENTS = ConversationKey("slack", "T1", "C0INC", "1.1")
RANDOM = ConversationKey("slack", "T1", "C0RANDOM", "2.2")
TEAMS_THREAD = ConversationKey("teams", "tenant", "19:abc@thread.tacv2;messageid=42", "")


class Groups:
    def __init__(self, groups: dict[str, set[str]]):
        self.groups = groups
        self.asked: list[str] = []

    async def members(self, group: str) -> frozenset[str] | None:
        self.asked.append(group)
        return frozenset(self.groups[group]) if group in self.groups else None


def policy(config: dict | None, approvers: tuple[str, ...] = ("U0BOB",)) -> Policy:
    return Policy(PolicyConfig.model_validate(config) if config is not None else None, approvers=approvers, kinds=KINDS)


def who(user: str, **kw) -> Actor:
    return Actor(user, "slack", "T1", "C0INC", **kw)


async def test_without_a_policy_table_everyone_proposes_and_the_approvers_approve() -> None:
    p = policy(None)
    assert await p.refusal(who("U0ANY"), "ask", where=RANDOM) is None
    assert await p.refusal(who("U0ANY"), "propose", "rollback", where=RANDOM) is None
    assert await p.refusal(who("U0BOB"), "approve", "rollback", where=RANDOM) is None
    assert "approvers list" in await p.refusal(who("U0ANY"), "approve", "rollback", where=RANDOM)
    assert await policy(None, approvers=()).refusal(who("U0BOB"), "approve", "scale", where=RANDOM) == NO_APPROVERS_HINT


async def test_listed_channels_kinds_and_groups_decide_and_unlisted_ones_are_read_only() -> None:
    p = policy({
        "channels": {
            "C0INC": {"propose": ["*"], "approve": ["S0SRE"], "kinds": {"rollback": {"propose": ["S0SRE"], "approve": ["U0LEAD"]}}},
            "19:abc@thread.tacv2": {"propose": ["aad-group-1"]},
        },
    })
    groups = Groups({"S0SRE": {"U0DAVE"}})
    p.add_directory("slack", groups)
    assert await p.refusal(who("U0ANY"), "propose", "restart", where=INCIDENTS) is None
    assert "propose a rollback" in await p.refusal(who("U0ANY"), "propose", "rollback", where=INCIDENTS)
    assert await p.refusal(who("U0DAVE"), "propose", "rollback", where=INCIDENTS) is None
    assert await p.refusal(who("U0DAVE"), "approve", "restart", where=INCIDENTS) is None
    # a kind's own approvers replace the channel's; SREBOT_APPROVERS do not apply where the policy names some
    assert "approvers list for a rollback" in await p.refusal(who("U0DAVE"), "approve", "rollback", where=INCIDENTS)
    assert "approvers list" in await p.refusal(who("U0BOB"), "approve", "restart", where=INCIDENTS)
    assert await p.refusal(who("U0LEAD"), "approve", "rollback", where=INCIDENTS) is None
    # not listed: read-only, for everyone; reading stays open
    assert "read-only" in await p.refusal(who("U0DAVE"), "propose", "restart", where=RANDOM)
    assert "read-only" in await p.refusal(who("U0LEAD"), "approve", "rollback", where=RANDOM)
    assert await p.refusal(who("U0ANY"), "ask", where=RANDOM) is None
    # a Teams channel thread is its channel; groups the platform vouches for count without a directory
    teams = Actor("aad-user", "teams", "tenant", TEAMS_THREAD.channel, via="card", groups=frozenset({"aad-group-1"}))
    assert await p.refusal(teams, "propose", "scale", where=TEAMS_THREAD) is None
    assert "propose a scale" in await p.refusal(Actor("aad-other", "teams"), "propose", "scale", where=TEAMS_THREAD)
    assert "S0SRE" in groups.asked


async def test_a_star_channel_covers_every_channel_not_listed_and_ask_lists_restrict_reading() -> None:
    p = policy({"ask": ["U0ONE"], "channels": {"*": {"propose": ["*"]}, "C0INC": {"ask": ["*"]}}})
    assert await p.refusal(who("U0ANY"), "propose", "scale", where=RANDOM) is None
    assert await p.refusal(who("U0BOB"), "approve", "scale", where=RANDOM) is None  # SREBOT_APPROVERS by default
    assert "may not ask" in await p.refusal(who("U0ANY"), "ask", where=RANDOM)
    assert await p.refusal(who("U0ANY"), "ask", where=INCIDENTS) is None


async def test_people_of_another_organisation_read_but_never_propose_or_approve() -> None:
    p = policy({"channels": {"C0INC": {"propose": ["*"], "approve": ["*"]}}})
    guest = who("U0BOB", external=True)
    assert await p.refusal(guest, "ask", where=INCIDENTS) is None
    assert await p.refusal(guest, "propose", "restart", where=INCIDENTS) == EXTERNAL_REFUSAL
    assert await p.refusal(guest, "approve", "restart", where=INCIDENTS) == EXTERNAL_REFUSAL
    assert await policy(None).refusal(guest, "approve", "restart", where=INCIDENTS) == EXTERNAL_REFUSAL


async def test_alert_threads_propose_where_the_channel_allows_writes_and_people_approve() -> None:
    p = policy({"ask": ["S0SRE"], "channels": {"C0INC": {"propose": ["S0SRE"]}}})
    alert = Actor("alertmanager", "slack", "T1", "C0INC", via="alert")
    assert await p.refusal(alert, "ask", where=INCIDENTS) is None
    assert await p.refusal(alert, "propose", "restart", where=INCIDENTS) is None
    assert "read-only" in await p.refusal(alert, "propose", "restart", where=RANDOM)
    assert await p.refusal(alert, "approve", "restart", where=INCIDENTS) is not None


def test_an_unknown_kind_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="unknown action kind reboot"):
        policy({"channels": {"C1": {"kinds": {"reboot": {"approve": ["U1"]}}}}})
    with pytest.raises(ValueError):
        PolicyConfig.model_validate({"aprove": ["U1"]})  # a typo is not silently ignored
