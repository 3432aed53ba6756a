"""Who may do what, where: the one policy Slack, Teams, the terminal and alert threads ask before a person
asks for diagnosis, proposes a write action or decides an approval.

    policy = runtime.policy                    # bot.ports.Core.policy for an integration
    actor = Actor(user="U0BOB", platform="slack", workspace="T1", channel="C1", via="button")  # sessions.store
    refusal = await policy.refusal(actor, "approve", kind="rollback", where=conversation_key)
    if refusal is not None: ...   # tell `actor` privately; nothing happens

Verbs: "ask" (diagnosis and every read), "propose" (a write action of `kind`), "approve" (decide an approval
of `kind`, either way; the requester withdrawing their own request and four eyes are `Approvals`' rules).
`where` is the conversation the request or the approval belongs to: its channel decides which rules apply.
The `actor` is who acts and how (the path goes to the audit log): `external` marks a person of another
organisation (Slack Connect, a Teams guest or external tenant), who may read answers but never propose or
approve, and `unverified` says why a person's organisation could not be checked (the same, fail closed); `groups` are group ids the platform vouches for (e.g. Teams AAD groups from the token).

Configuration (DESIGN 3.4, README "Security"): lists of user ids, group ids or "*" (anyone of this
organisation). Slack user groups (S…) are resolved to their members by the directory the Slack
integration registers (`add_directory`). Without a `[policy]` table the pre-policy behaviour holds: anyone
asks and proposes anywhere, and SREBOT_APPROVERS approve. With one, a channel not listed (and without a
`"*"` entry) is read-only. SREBOT_APPROVERS stays "these may approve" wherever the policy names no approvers.

Alert threads: srebot itself investigates and proposes there, as `Actor("alertmanager", platform, workspace,
channel, via="alert")`; such an actor may always ask, and may propose wherever the channel is not read-only
(the propose lists name people); approving stays with the people the policy names. Proposals reach the policy
through `Approvals.propose` (give the Proposal's Origin an `actor`), decisions through `Approvals.decide`.
A person pressing a button of an alert thread is an ordinary actor with via="alert_thread": "Investigate again"
asks, "Silence" and "Acknowledge incident" propose their kind there (`button_refusal`), and nobody of another
organisation presses them at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal, Protocol

from bot.config import ConfigError, Grants, PolicyConfig
from sessions.store import Actor, ConversationKey

log = logging.getLogger("srebot.policy")

Verb = Literal["ask", "propose", "approve"]
ANYONE = "*"
ALERT = "alert"  # the path of srebot's own work in alert threads
ALERT_THREAD = "alert_thread"  # the path of a person pressing a button of an alert thread's root message
# how a decision or a proposal reached the bot, as written to the audit log
VIA_OF_PLATFORM = {"slack": "button", "teams": "card", "cli": "cli"}

EXTERNAL_REFUSAL = (
    "You are in another organisation (a shared channel or a guest account): you can read srebot's answers here, "
    "but not propose or approve changes."
)
NO_APPROVERS_HINT = (
    "No approvers are configured, so this cannot be approved yet: set SREBOT_APPROVERS to a "
    "comma-separated list of user ids (Slack U…, Teams AAD object ids, terminal names)."
)


class Directory(Protocol):
    """Resolves a platform's group ids to members (Slack user groups via usergroups.users.list)."""

    async def members(self, group: str) -> frozenset[str] | None:
        """The members of `group`, or None when `group` is not a group id this directory knows."""


class Policy:
    def __init__(self, config: PolicyConfig | None, *, approvers: Iterable[str], kinds: Iterable[str]):
        self.config = config
        self.approvers = list(approvers)
        self.directories: dict[str, Directory] = {}
        if config is not None:
            _check_kinds(config, set(kinds))

    @property
    def configured(self) -> bool:
        """A [policy] table exists (channels not listed are read-only)."""
        return self.config is not None

    def add_directory(self, platform: str, directory: Directory) -> None:
        self.directories[platform] = directory

    def has_approvers(self) -> bool:
        """Someone somewhere may approve (otherwise answers say how to configure approvers)."""
        if self.approvers:
            return True
        config = self.config
        if config is None:
            return False
        grants = [config, *config.channels.values()]
        return any(g.approve for g in grants) or any(k.approve for g in grants for k in g.kinds.values())

    async def refusal(
        self, actor: Actor, verb: Verb, kind: str | None = None, *, where: ConversationKey | None = None
    ) -> str | None:
        """None when `actor` may `verb` (a `kind` of action) in the conversation `where`; otherwise what to
        tell them, privately."""
        if verb != "ask" and (outside := outsider(actor)):
            return outside
        allowed, source = self._who(verb, kind, where)
        if verb != "ask" and (nobody := _nobody(verb, allowed)):
            return nobody
        assert allowed is not None
        if actor.via == ALERT and verb != "approve":
            return None  # srebot's own investigation of an alert, in a channel that allows it
        if await self._matches(allowed, actor, where):
            return None
        what = {"ask": "ask srebot here", "propose": f"propose a {kind} here", "approve": ""}[verb]
        if verb == "approve":
            return f"You are not in the approvers list for a {kind} here ({source}), so you cannot approve this."
        return f"You may not {what} ({source})."

    async def button_refusal(
        self, actor: Actor, verb: Verb, kind: str | None = None, *, where: ConversationKey | None = None
    ) -> str | None:
        """`refusal` for a person pressing a button of a thread srebot opened (an alert thread): the button acts
        in srebot's name in that thread, so someone of another organisation (or not checked to be of this one) may
        not press it, even to ask."""
        if outside := outsider(actor):
            return outside
        return await self.refusal(actor, verb, kind, where=where)

    def nobody_approves(self, kind: str, where: ConversationKey | None) -> str | None:
        """Why no one at all may approve a `kind` in `where` (read-only, no approvers), or None."""
        return _nobody("approve", self._who("approve", kind, where)[0])

    # --- rules -----------------------------------------------------------------------------------
    def _who(self, verb: Verb, kind: str | None, where: ConversationKey | None) -> tuple[list[str] | None, str]:
        """Who may `verb` a `kind` in `where`, and the setting that says so; None when read-only."""
        config = self.config
        if config is None:
            return (list(self.approvers), "SREBOT_APPROVERS") if verb == "approve" else ([ANYONE], "")
        channel = _channel(where)
        listed = config.channels.get(channel) if channel else None
        name = f'[policy.channels."{channel}"]'
        if listed is None:
            listed, name = config.channels.get(ANYONE), '[policy.channels."*"]'
        if verb == "ask":
            for grants, source in ((listed, name), (config, "[policy]")):
                if grants is not None and grants.ask is not None:
                    return grants.ask, f"{source} ask"
            return [ANYONE], ""
        if listed is None:
            return None, ""
        for grants, source in ((listed, name), (config, "[policy]")):
            for scope, label in ((grants.kinds.get(kind or ""), f" kinds.{kind}"), (grants, "")):
                value = getattr(scope, verb) if scope is not None else None
                if value is not None:
                    return value, f"{source}{label} {verb}"
        if verb == "approve":
            return list(self.approvers), "SREBOT_APPROVERS"
        return [ANYONE], ""

    async def _matches(self, allowed: list[str], actor: Actor, where: ConversationKey | None) -> bool:
        if ANYONE in allowed or actor.user in allowed or actor.groups.intersection(allowed):
            return True
        # groups are resolved by the directory of the platform the conversation is on (a terminal decision on
        # a Slack approval names a Slack user)
        directory = self.directories.get(where.platform if where else actor.platform)
        if directory is None:
            return False
        for entry in allowed:
            members = await directory.members(entry)
            if members is not None and actor.user in members:
                return True
        return False


def outsider(actor: Actor) -> str | None:
    """Why `actor` may read but never propose or approve: another organisation's person, or one whose
    organisation could not be checked (the reason says which); None for a person of this organisation."""
    if actor.external:
        return EXTERNAL_REFUSAL
    return actor.unverified or None


def _nobody(verb: Verb, allowed: list[str] | None) -> str | None:
    if allowed is None:  # the channel is not listed: read-only
        return (
            "srebot is read-only in this conversation: write actions are proposed and approved only where "
            "[policy.channels] lists them (README, Security)."
        )
    if verb == "approve" and not allowed:
        return NO_APPROVERS_HINT
    return None


def _channel(where: ConversationKey | None) -> str:
    """The channel a rule names: a Teams channel thread's conversation id without its `;messageid=`."""
    return where.channel.split(";", 1)[0] if where is not None else ""


def _check_kinds(config: PolicyConfig, kinds: set[str]) -> None:
    grants: list[tuple[str, Grants]] = [("[policy]", config)]
    grants += [(f'[policy.channels."{name}"]', g) for name, g in config.channels.items()]
    for where, g in grants:
        unknown = sorted(set(g.kinds) - kinds)
        if unknown:
            raise ConfigError(f"{where} kinds: unknown action kind {', '.join(unknown)} (known: {', '.join(sorted(kinds))})")
