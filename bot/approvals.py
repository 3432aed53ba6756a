"""The one decision path for proposed write actions: propose, four-eyes decide, execute once, expire, audit."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from collections.abc import Awaitable, Callable, Mapping

from bot.policy import VIA_OF_PLATFORM, Policy, outsider
from bot.telemetry import APPROVALS
from bot.ports import Decision, Notifier
from sessions.store import Actor, ApprovalRecord, ApprovalState, ConversationKey, Proposal, Store

log = logging.getLogger("srebot.approvals")

# Runs an approved action through the tools' write operations; returns the outcome a person reads,
# raises on failure. Built by the composition root (bot.actions) so this module needs no tool.
Executor = Callable[[ApprovalRecord], Awaitable[str]]

# An approved action is one API call with a timeout of seconds; one still unfinished after this long
# was cut off by a crash and must not stay silent.
STUCK_AFTER_SECONDS = 600

# srebot's own steps in the audit log
EXPIRY = Actor("srebot", "srebot", via="expiry")
SWEEPER = Actor("srebot", "srebot", via="sweeper")


class ActionFailed(Exception):
    """Raised by an executor when the action did not happen; the message is for the thread as it is."""


class NotAllowed(ActionFailed):
    """The policy refuses the proposal; the message says why, for the person who asked (privately: the
    engine tells them through their port, and the thread says only `PUBLIC`)."""

    PUBLIC = "you may not propose it here; I told you why in a private message"


class Approvals:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        policy: Policy,
        ttl_seconds: float,
        notifiers: Mapping[str, Notifier],
        sweep_seconds: float = 15.0,
    ):
        self.store = store
        self.executor = executor
        self.policy = policy
        self.ttl_seconds = ttl_seconds
        self.notifiers = notifiers
        self.sweep_seconds = sweep_seconds
        self._sweeper: asyncio.Task[None] | None = None

    # --- propose ---------------------------------------------------------------------------------
    async def propose(self, proposal: Proposal) -> ApprovalRecord:
        """A pending approval row for `proposal` in its session's conversation; raises NotAllowed when the
        policy refuses its origin's actor this kind of action there."""
        actor = proposal.origin.who
        refusal = await self.policy.refusal(actor, "propose", proposal.kind, where=await self._where(proposal.origin.session_id))
        if refusal is not None:
            await self.store.audit("refused", actor.user, kind=proposal.kind, target=proposal.target,
                                   detail=f"propose: {refusal}", **_context(actor))
            raise NotAllowed(refusal)
        approval = await self.store.create_approval(proposal, self.ttl_seconds)
        APPROVALS.labels(ApprovalState.PENDING).inc()
        await self._audit("proposed", actor, approval, proposal.description)
        return approval

    @property
    def configured(self) -> bool:
        return self.policy.has_approvers()

    # --- decide ----------------------------------------------------------------------------------
    async def decide(
        self, approval_id: str, user: str | Actor, decision: str, *, platform: str | None = None
    ) -> Decision:
        """Approve or reject on behalf of `user` (an Actor, or a user id deciding on `platform` by its usual
        path: Slack button, Teams card, CLI), whichever platform the approval was posted on. The policy of
        the approval's conversation decides who may; four eyes and "the requester may withdraw" hold
        everywhere. Refusals change nothing but the audit log; an approval executes once."""
        actor = _actor(user, platform or "")
        if decision not in ("approve", "reject"):
            return Decision(False, f"Unknown decision {decision!r}: approve or reject.")
        approval = await self.store.get_approval(approval_id)
        if approval is None:
            return Decision(False, f"There is no approval {approval_id}.")
        if approval.status == ApprovalState.PENDING and approval.expires_at <= self.store.clock():
            await self._expire(approval)  # the sweeper has not come round yet
            approval = await self.store.get_approval(approval_id) or approval
        if approval.status != ApprovalState.PENDING:
            return Decision(False, _already(approval), approval)
        refusal = await self.refusal(approval, actor, decision)
        if refusal:
            await self._audit("refused", actor, approval, f"{decision}: {refusal}")
            return Decision(False, refusal, approval)
        if decision == "approve":
            return await self._approve(approval, actor)
        return await self._reject(approval, actor)

    async def refusal(
        self, approval: ApprovalRecord, user: str | Actor, decision: str, *, platform: str | None = None
    ) -> str | None:
        """Why `user` (an Actor, or a user id on `platform`) may not make `decision` on a pending approval, or
        None when they may; lets a platform show each person only the buttons they can use."""
        actor = _actor(user, platform or approval.platform)
        if outside := outsider(actor):
            return outside
        where = await self._where(approval.session_id)
        if actor.user == approval.requester:
            if decision == "reject":
                return None  # the requester withdraws their own request
            return self.policy.nobody_approves(approval.kind, where) or (
                "You requested this action, so someone else has to approve it (four eyes)."
            )
        refusal = await self.policy.refusal(actor, "approve", approval.kind, where=where)
        if refusal is not None and decision == "reject":
            return f"Only an approver or the requester can reject this. {refusal}"
        return refusal

    async def _where(self, session_id: str | None) -> ConversationKey | None:
        conversation = await self.store.get_session(session_id) if session_id else None
        return conversation.key if conversation else None

    async def _reject(self, approval: ApprovalRecord, actor: Actor) -> Decision:
        now = self.store.clock()
        rejected = await self.store.transition_approval(
            approval.id, ApprovalState.PENDING, ApprovalState.REJECTED, decided_by=actor.user, decided_via=actor.via,
            decided_at=now, finished_at=now,
        )
        if rejected is None:
            current = await self.store.get_approval(approval.id)
            return Decision(False, _already(current), current)
        APPROVALS.labels(ApprovalState.REJECTED).inc()
        await self._audit("rejected", actor, approval)
        await self._changed(rejected)
        return Decision(True, f"Rejected by {rejected.decider}; nothing was changed.", rejected)

    async def _approve(self, approval: ApprovalRecord, actor: Actor) -> Decision:
        # The conditional UPDATE is the lock: of two clicks (or two replicas) only one gets a row back.
        approved = await self.store.transition_approval(
            approval.id,
            ApprovalState.PENDING,
            ApprovalState.APPROVED,
            decided_by=actor.user,
            decided_via=actor.via,
            decided_at=self.store.clock(),
        )
        if approved is None:
            current = await self.store.get_approval(approval.id)
            if current is not None and current.status == ApprovalState.PENDING:  # expired between read and update
                await self._expire(current)
                current = await self.store.get_approval(approval.id)
            return Decision(False, _already(current), current)
        APPROVALS.labels(ApprovalState.APPROVED).inc()
        await self._audit("approved", actor, approval)
        await self._changed(approved)
        try:
            outcome = await self.executor(approved)
        except Exception as exc:  # noqa: BLE001 - any failure is the action's outcome; the thread needs its error
            detail = _error_text(exc, approved)
            final = await self._finish(approved, ApprovalState.FAILED, detail, actor)
            return Decision(True, f"Approved by {approved.decider}, but it failed: {detail}", final or approved)
        final = await self._finish(approved, ApprovalState.EXECUTED, outcome, actor)
        return Decision(True, f"Approved by {approved.decider} · {outcome}", final or approved)

    async def _finish(
        self, approved: ApprovalRecord, status: ApprovalState, result: str, actor: Actor
    ) -> ApprovalRecord | None:
        """approved → executed | failed, with the outcome in the row, the audit log and the thread;
        None when someone else finished it first."""
        final = await self.store.transition_approval(
            approved.id, ApprovalState.APPROVED, status, result=result[:1000], finished_at=self.store.clock()
        )
        if final is None:
            return None
        APPROVALS.labels(status).inc()
        await self._audit(status, actor, approved, result)
        await self._changed(final)
        return final

    async def _audit(self, event: str, actor: Actor, approval: ApprovalRecord, detail: str | None = None) -> None:
        await self.store.audit(
            event, actor.user, approval_id=approval.id, kind=approval.kind, target=approval.target, detail=detail,
            **_context(actor),
        )

    # --- expiry ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="approval-sweeper")

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    async def sweep(self) -> int:
        """Expire pending approvals past their time, and close approvals whose execution was cut off;
        returns how many this call closed."""
        count = 0
        for approval in await self.store.due_for_expiry():
            if await self._expire(approval):
                count += 1
        for approval in await self.store.stuck_approvals(self.store.clock() - timedelta(seconds=STUCK_AFTER_SECONDS)):
            outcome = (
                "the srebot process running it stopped before it reported an outcome; "
                f"check {approval.target} before proposing it again"
            )
            if await self._finish(approval, ApprovalState.FAILED, outcome, SWEEPER) is not None:
                count += 1
        return count

    async def _expire(self, approval: ApprovalRecord) -> bool:
        expired = await self.store.transition_approval(
            approval.id,
            ApprovalState.PENDING,
            ApprovalState.EXPIRED,
            finished_at=self.store.clock(),
            result="expired without a decision",
        )
        if expired is None:
            return False
        APPROVALS.labels(ApprovalState.EXPIRED).inc()
        await self._audit("expired", EXPIRY, approval, f"no decision within {_duration(self.ttl_seconds)}")
        await self._changed(expired)
        return True

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except Exception:  # a database blip: the next sweep tries again
                log.exception("approval sweep failed")

    async def _changed(self, approval: ApprovalRecord) -> None:
        notifier = self.notifiers.get(approval.platform)
        if notifier is None:
            return
        conversation = await self.store.get_session(approval.session_id) if approval.session_id else None
        try:
            await notifier.approval_changed(approval, conversation)
        except Exception:
            log.exception("could not update the approval message")


def _actor(user: str | Actor, platform: str) -> Actor:
    """`user` as an Actor: a bare user id acts on `platform` by its usual path (button, card, CLI)."""
    return user if isinstance(user, Actor) else Actor(user, platform, via=VIA_OF_PLATFORM.get(platform, ""))


def _context(actor: Actor) -> dict[str, str | None]:
    """An actor's where and how, as audit columns."""
    return {"platform": actor.platform or None, "workspace": actor.workspace or None,
            "channel": actor.channel or None, "via": actor.via or None}


def _already(approval: ApprovalRecord | None) -> str:
    if approval is None:
        return "That approval no longer exists."
    who = f" by {approval.decider}" if approval.decided_by else ""
    when = f" at {approval.decided_at:%H:%M} UTC" if approval.decided_at else ""
    return f"Already {approval.status}{who}{when}; nothing was changed."


def _error_text(exc: Exception, approval: ApprovalRecord) -> str:
    """An action's failure as the thread reads it: an ActionFailed says it for the thread; anything else is a bug
    or a library's error, whose text goes to the log under the approval and request ids, never into chat."""
    if isinstance(exc, ActionFailed):
        return str(exc) or "the action failed"
    log.error("an approved action raised", exc_info=exc,
              extra={"approval_id": approval.id, "request_id": approval.request_id})
    return f"it stopped on an unexpected error (in srebot's log under approval {approval.id})"


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
