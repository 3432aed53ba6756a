"""The one decision path for proposed write actions: propose, four-eyes decide, execute once, expire, audit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.metrics import APPROVALS
from bot.ports import Notifier
from sessions.store import ApprovalRecord, Store, utcnow

log = logging.getLogger("srebot.approvals")

# Runs an approved action through the tools' write operations; returns the outcome a person reads,
# raises on failure. Built by the composition root (bot.actions) so this module needs no tool.
Executor = Callable[[ApprovalRecord], Awaitable[str]]

NO_APPROVERS_HINT = (
    "No approvers are configured, so this cannot be approved yet: set SREBOT_APPROVERS to a "
    "comma-separated list of user ids (Slack U…, Teams AAD object ids, terminal names)."
)


@dataclass
class Decision:
    accepted: bool
    message: str  # what the person who clicked is told (privately when refused)
    approval: ApprovalRecord | None = None


class Approvals:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        approvers: list[str],
        ttl_seconds: float,
        notifiers: Mapping[str, Notifier],
        sweep_seconds: float = 15.0,
    ):
        self.store = store
        self.executor = executor
        self.approvers = set(approvers)
        self.ttl_seconds = ttl_seconds
        self.notifiers = notifiers
        self.sweep_seconds = sweep_seconds
        self._sweeper: asyncio.Task[None] | None = None

    # --- propose ---------------------------------------------------------------------------------
    async def propose(
        self,
        *,
        kind: str,
        target: str,
        params: dict[str, Any],
        description: str,
        requester: str,
        platform: str,
        session_id: str | None = None,
        request_id: str | None = None,
    ) -> ApprovalRecord:
        approval = await self.store.create_approval(
            kind=kind,
            target=target,
            params=params,
            description=description,
            requester=requester,
            platform=platform,
            ttl_seconds=self.ttl_seconds,
            session_id=session_id,
            request_id=request_id,
        )
        APPROVALS.labels("pending").inc()
        await self.store.audit(
            "proposed", requester, approval_id=approval.id, kind=kind, target=target, detail=description
        )
        return approval

    @property
    def configured(self) -> bool:
        return bool(self.approvers)

    # --- decide ----------------------------------------------------------------------------------
    async def decide(self, approval_id: str, user: str, decision: str, *, platform: str) -> Decision:
        """Approve or reject on behalf of `user`. Refusals change nothing; an approval executes once."""
        approval = await self.store.get_approval(approval_id)
        if approval is None:
            return Decision(False, f"There is no approval {approval_id}.")
        if approval.status != "pending":
            return Decision(False, _already(approval), approval)
        if decision == "approve":
            refusal = self._refusal(approval, user)
            if refusal:
                await self.store.audit(
                    "refused", user, approval_id=approval.id, kind=approval.kind, target=approval.target, detail=refusal
                )
                return Decision(False, refusal, approval)
            return await self._approve(approval, user)
        if decision == "reject":
            if user != approval.requester and user not in self.approvers:
                return Decision(False, "Only an approver or the requester can reject this.", approval)
            decided = await self.store.transition_approval(
                approval.id, "pending", "rejected", decided_by=user, decided_at=utcnow(), finished_at=utcnow()
            )
            if decided is None:
                return Decision(False, _already(await self.store.get_approval(approval.id)), approval)
            APPROVALS.labels("rejected").inc()
            await self.store.audit("rejected", user, approval_id=approval.id, kind=approval.kind, target=approval.target)
            await self._changed(decided)
            return Decision(True, f"Rejected by {user}; nothing was changed.", decided)
        return Decision(False, f"Unknown decision {decision!r}: approve or reject.")

    def _refusal(self, approval: ApprovalRecord, user: str) -> str | None:
        if not self.approvers:
            return NO_APPROVERS_HINT
        if user == approval.requester:
            return "You requested this action, so someone else has to approve it (four eyes)."
        if user not in self.approvers:
            return "You are not in the approvers list (SREBOT_APPROVERS), so you cannot approve this."
        return None

    async def _approve(self, approval: ApprovalRecord, user: str) -> Decision:
        # The conditional UPDATE is the lock: of two clicks (or two replicas) only one gets a row back.
        approved = await self.store.transition_approval(
            approval.id, "pending", "approved", decided_by=user, decided_at=utcnow()
        )
        if approved is None:
            current = await self.store.get_approval(approval.id)
            if current is not None and current.status == "pending":  # expired between read and update
                await self._expire(current)
                current = await self.store.get_approval(approval.id)
            return Decision(False, _already(current), current)
        APPROVALS.labels("approved").inc()
        await self.store.audit("approved", user, approval_id=approval.id, kind=approval.kind, target=approval.target)
        await self._changed(approved)
        try:
            outcome = await self.executor(approved)
        except Exception as exc:  # the error is what the thread needs to see
            detail = f"{exc.__class__.__name__}: {exc}" if not str(exc).startswith(exc.__class__.__name__) else str(exc)
            final = await self.store.transition_approval(
                approval.id, "approved", "failed", result=detail[:1000], finished_at=utcnow()
            )
            APPROVALS.labels("failed").inc()
            await self.store.audit(
                "failed", user, approval_id=approval.id, kind=approval.kind, target=approval.target, detail=detail
            )
            await self._changed(final or approved)
            return Decision(True, f"Approved by {user}, but it failed: {detail}", final or approved)
        final = await self.store.transition_approval(
            approval.id, "approved", "executed", result=outcome[:1000], finished_at=utcnow()
        )
        APPROVALS.labels("executed").inc()
        await self.store.audit(
            "executed", user, approval_id=approval.id, kind=approval.kind, target=approval.target, detail=outcome
        )
        await self._changed(final or approved)
        return Decision(True, f"Approved by {user} · {outcome}", final or approved)

    # --- expiry ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="approval-sweeper")

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    async def sweep(self) -> int:
        """Expire pending approvals past their time; returns how many this call expired."""
        count = 0
        for approval in await self.store.due_for_expiry():
            if await self._expire(approval):
                count += 1
        return count

    async def _expire(self, approval: ApprovalRecord) -> bool:
        expired = await self.store.transition_approval(
            approval.id, "pending", "expired", finished_at=utcnow(), result="expired without a decision"
        )
        if expired is None:
            return False
        APPROVALS.labels("expired").inc()
        await self.store.audit("expired", "srebot", approval_id=approval.id, kind=approval.kind, target=approval.target)
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


def _already(approval: ApprovalRecord | None) -> str:
    if approval is None:
        return "That approval no longer exists."
    who = f" by {approval.decided_by}" if approval.decided_by else ""
    when = f" at {approval.decided_at:%H:%M} UTC" if approval.decided_at else ""
    return f"Already {approval.status}{who}{when}; nothing was changed."
