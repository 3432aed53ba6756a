"""The one store API over the database: sessions, turns, event dedupe, instances, approvals and audit."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

from cachetools import TTLCache
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from sessions.db import async_url, is_sqlite, make_engine
from sessions.models import (
    ApprovalRow,
    AuditRow,
    ConversationRow,
    InstanceRow,
    ProcessedEventRow,
    TurnRow,
)



class TurnState(StrEnum):
    """Where a request is; str-valued, so stored values and JSON are the plain words."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # a restart or a crash cut it off


ACTIVE_TURN = (TurnState.QUEUED, TurnState.RUNNING)
FINAL_TURN = (TurnState.COMPLETED, TurnState.FAILED, TurnState.CANCELLED, TurnState.INTERRUPTED)


class ApprovalState(StrEnum):
    """pending → approved → executed | failed, or pending → rejected | expired."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTED = "executed"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id(prefix: str) -> str:
    # hex only: ADK session ids must not contain dots
    return f"{prefix}_{secrets.token_hex(12)}"


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass(frozen=True)
class ConversationKey:
    """Where a conversation lives: platform, workspace (team / tenant), channel and thread."""

    platform: str
    workspace: str
    channel: str
    thread: str


@dataclass
class Conversation:
    id: str
    key: ConversationKey
    current_service: str | None
    reference: dict[str, Any] | None
    created_at: datetime
    last_active_at: datetime


@dataclass
class TurnRecord:
    id: int
    session_id: str
    request_id: str
    user_id: str
    text: str
    status: TurnState
    intent: str | None = None
    service: str | None = None
    answer: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime | None = None
    elapsed_ms: int | None = None


@dataclass(frozen=True)
class Origin:
    """Who asks for a change, and from which thread."""

    user: str
    platform: str
    session_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Proposal:
    """A described write action someone asks for: what becomes an approval row."""

    kind: str
    target: str
    params: dict[str, Any]
    description: str  # exactly what will change ("replicas 3 → 5")
    origin: Origin


@dataclass
class ApprovalRecord:
    id: str
    kind: str
    target: str
    params: dict[str, Any]
    description: str
    requester: str
    platform: str
    status: ApprovalState
    session_id: str | None
    request_id: str | None
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    finished_at: datetime | None = None
    result: str | None = None
    message_ref: dict[str, Any] | None = None


@dataclass
class AuditRecord:
    id: int
    at: datetime
    event: str
    actor: str
    approval_id: str | None
    kind: str | None
    target: str | None
    detail: str | None


@dataclass
class Interrupted:
    turn: TurnRecord
    conversation: Conversation


def _conversation(row: ConversationRow) -> Conversation:
    return Conversation(
        id=row.id,
        key=ConversationKey(row.platform, row.workspace, row.channel, row.thread),
        current_service=row.current_service,
        reference=row.reference,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        last_active_at=_aware(row.last_active_at),  # type: ignore[arg-type]
    )


def _turn(row: TurnRow) -> TurnRecord:
    return TurnRecord(
        id=row.id,
        session_id=row.session_id,
        request_id=row.request_id,
        user_id=row.user_id,
        text=row.text,
        status=TurnState(row.status),
        intent=row.intent,
        service=row.service,
        answer=row.answer,
        error=row.error,
        created_at=_aware(row.created_at),
        elapsed_ms=row.elapsed_ms,
    )


def _approval(row: ApprovalRow) -> ApprovalRecord:
    return ApprovalRecord(
        id=row.id,
        kind=row.kind,
        target=row.target,
        params=dict(row.params or {}),
        description=row.description,
        requester=row.requester,
        platform=row.platform,
        status=ApprovalState(row.status),
        session_id=row.session_id,
        request_id=row.request_id,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        expires_at=_aware(row.expires_at),  # type: ignore[arg-type]
        decided_by=row.decided_by,
        decided_at=_aware(row.decided_at),
        finished_at=_aware(row.finished_at),
        result=row.result,
        message_ref=row.message_ref,
    )


class Store:
    """Async access to the database; one instance per process, shared by every platform."""

    def __init__(
        self,
        url: str,
        *,
        cache_size: int = 10_000,
        cache_ttl: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.url = async_url(url)
        self.clock = clock  # the time stamped on rows and compared with expiry and heartbeats
        self.engine: AsyncEngine = make_engine(self.url)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # thread -> session id never changes once created, so caching it is safe across replicas
        self._thread_cache: TTLCache[ConversationKey, str] = TTLCache(maxsize=cache_size, ttl=cache_ttl)
        self._dialect_insert = sqlite.insert if is_sqlite(self.url) else postgresql.insert

    async def close(self) -> None:
        await self.engine.dispose()

    # --- schema ----------------------------------------------------------------------------------
    async def upgrade(self) -> None:
        """Apply Alembic migrations up to head; replicas starting together take turns (advisory lock)."""
        from alembic import command
        from alembic.config import Config

        migrations = Path(__file__).parent / "migrations"

        def run(connection: Any) -> None:
            config = Config()
            config.set_main_option("script_location", str(migrations))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with self.engine.begin() as conn:
            if not is_sqlite(self.url):
                await conn.execute(text("SELECT pg_advisory_xact_lock(7262001)"))
            await conn.run_sync(run)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # --- conversations ---------------------------------------------------------------------------
    async def session_id_for(self, key: ConversationKey, reference: dict[str, Any] | None = None) -> str:
        """The session of a thread, created on first use; concurrent first messages get one session."""
        found = await self.find_session_id(key)
        if found is not None:
            return found
        now = self.clock()
        stmt = (
            self._dialect_insert(ConversationRow)
            .values(
                id=new_id("s"),
                platform=key.platform,
                workspace=key.workspace,
                channel=key.channel,
                thread=key.thread,
                reference=reference,
                created_at=now,
                last_active_at=now,
            )
            .on_conflict_do_nothing(index_elements=["platform", "workspace", "channel", "thread"])
            .returning(ConversationRow.id)
        )
        async with self._sessions.begin() as db:
            found = (await db.execute(stmt)).scalar_one_or_none()
        if found is None:
            found = await self._find_id(key)
            assert found is not None
        self._thread_cache[key] = found
        return found

    async def find_session_id(self, key: ConversationKey) -> str | None:
        """The session of a thread if one exists (a follow-up needs no mention only then)."""
        cached = self._thread_cache.get(key)
        if cached is not None:
            return cached
        found = await self._find_id(key)
        if found is not None:
            self._thread_cache[key] = found
        return found

    async def _find_id(self, key: ConversationKey) -> str | None:
        async with self._sessions() as db:
            return await db.scalar(
                select(ConversationRow.id).where(
                    ConversationRow.platform == key.platform,
                    ConversationRow.workspace == key.workspace,
                    ConversationRow.channel == key.channel,
                    ConversationRow.thread == key.thread,
                )
            )

    async def get_session(self, session_id: str) -> Conversation | None:
        async with self._sessions() as db:
            row = await db.get(ConversationRow, session_id)
            return _conversation(row) if row else None

    async def update_session(
        self,
        session_id: str,
        *,
        current_service: str | None = None,
        reference: dict[str, Any] | None = None,
    ) -> None:
        values: dict[str, Any] = {"last_active_at": self.clock()}
        if current_service is not None:
            values["current_service"] = current_service
        if reference is not None:
            values["reference"] = reference
        async with self._sessions.begin() as db:
            await db.execute(update(ConversationRow).where(ConversationRow.id == session_id).values(**values))

    # --- turns -----------------------------------------------------------------------------------
    async def create_turn(self, session_id: str, request_id: str, text_: str, user_id: str, instance_id: str) -> int:
        async with self._sessions.begin() as db:
            row = TurnRow(
                session_id=session_id,
                request_id=request_id,
                instance_id=instance_id,
                user_id=user_id,
                text=text_,
                status=TurnState.QUEUED,
                created_at=self.clock(),
            )
            db.add(row)
            await db.flush()
            return row.id

    async def start_turn(self, turn_id: int) -> Conversation | None:
        """Mark a turn running and return its conversation; None when it is no longer active."""
        async with self._sessions.begin() as db:
            result = await db.execute(
                update(TurnRow)
                .where(TurnRow.id == turn_id, TurnRow.status.in_(ACTIVE_TURN))
                .values(status=TurnState.RUNNING, started_at=self.clock())
                .returning(TurnRow.session_id)
            )
            session_id = result.scalar_one_or_none()
            if session_id is None:
                return None
            conversation = await db.get(ConversationRow, session_id)
            return _conversation(conversation) if conversation else None

    async def update_turn(
        self,
        turn_id: int,
        status: TurnState,
        *,
        intent: str | None = None,
        service: str | None = None,
        answer: dict[str, Any] | None = None,
        error: str | None = None,
        elapsed_ms: int | None = None,
        remember_service: bool = False,
    ) -> None:
        """Set a turn's status and results; with `remember_service`, `service` also becomes its
        conversation's current service (same transaction)."""
        values: dict[str, Any] = {"status": status}
        now = self.clock()
        if status in FINAL_TURN:
            values["finished_at"] = now
        for name, value in (("intent", intent), ("service", service), ("answer", answer), ("error", error)):
            if value is not None:
                values[name] = value
        if elapsed_ms is not None:
            values["elapsed_ms"] = elapsed_ms
        async with self._sessions.begin() as db:
            # a turn already final (e.g. interrupted by another replica's sweep) is not reopened
            await db.execute(
                update(TurnRow).where(TurnRow.id == turn_id, TurnRow.status.in_(ACTIVE_TURN)).values(**values)
            )
            if remember_service and service:
                owner = select(TurnRow.session_id).where(TurnRow.id == turn_id).scalar_subquery()
                await db.execute(
                    update(ConversationRow)
                    .where(ConversationRow.id == owner)
                    .values(current_service=service, last_active_at=now)
                )

    async def get_turn(self, request_id: str) -> TurnRecord | None:
        async with self._sessions() as db:
            row = await db.scalar(select(TurnRow).where(TurnRow.request_id == request_id))
            return _turn(row) if row else None

    async def recent_turns(self, session_id: str, limit: int = 10) -> list[TurnRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(TurnRow).where(TurnRow.session_id == session_id).order_by(TurnRow.id.desc()).limit(limit)
            )
            return [_turn(r) for r in reversed(list(rows))]

    async def active_turns(self) -> list[TurnRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(select(TurnRow).where(TurnRow.status.in_(ACTIVE_TURN)).order_by(TurnRow.id))
            return [_turn(r) for r in rows]

    async def request_cancel(self, key: ConversationKey) -> TurnRecord | None:
        """Flag the newest running turn of a thread for cancelling and return it; None when nothing runs
        there. The replica running it (`instance_id`) sees the flag on its heartbeat (`cancel_requests`)."""
        newest = (
            select(TurnRow.id)
            .join(ConversationRow, ConversationRow.id == TurnRow.session_id)
            .where(
                ConversationRow.platform == key.platform,
                ConversationRow.workspace == key.workspace,
                ConversationRow.channel == key.channel,
                ConversationRow.thread == key.thread,
                TurnRow.status == TurnState.RUNNING,
            )
            .order_by(TurnRow.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        async with self._sessions.begin() as db:
            row = await db.scalar(
                update(TurnRow)
                .where(TurnRow.id == newest, TurnRow.status == TurnState.RUNNING)
                .values(cancel_requested_at=self.clock())
                .returning(TurnRow)
            )
            return _turn(row) if row else None

    async def cancel_requests(self, instance_id: str) -> list[str]:
        """Request ids of the instance's running turns that a "cancel" on any replica flagged."""
        async with self._sessions() as db:
            return list(
                await db.scalars(
                    select(TurnRow.request_id).where(
                        TurnRow.instance_id == instance_id,
                        TurnRow.status == TurnState.RUNNING,
                        TurnRow.cancel_requested_at.is_not(None),
                    )
                )
            )

    # --- instances and crash recovery ------------------------------------------------------------
    async def heartbeat(self, instance_id: str) -> None:
        now = self.clock()
        stmt = self._dialect_insert(InstanceRow).values(id=instance_id, started_at=now, heartbeat_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now})
        async with self._sessions.begin() as db:
            await db.execute(stmt)

    async def retire(self, instance_id: str) -> None:
        async with self._sessions.begin() as db:
            await db.execute(delete(InstanceRow).where(InstanceRow.id == instance_id))

    async def interrupt_orphans(self, instance_id: str, stale_after: float) -> list[Interrupted]:
        """Mark turns left active by dead instances as interrupted; `instance_id` is the caller, alive.

        An instance is dead when its heartbeat is older than `stale_after` seconds or it has no row.
        The caller's own turns are never taken: it is running them (this runs on every heartbeat).
        Each turn is claimed by one conditional UPDATE, so two replicas never both report it."""
        cutoff = self.clock() - timedelta(seconds=stale_after)
        async with self._sessions() as db:
            alive = set(await db.scalars(select(InstanceRow.id).where(InstanceRow.heartbeat_at >= cutoff)))
            alive.add(instance_id)
            candidates = list(await db.scalars(select(TurnRow).where(TurnRow.status.in_(ACTIVE_TURN))))
        claimed: list[Interrupted] = []
        for row in candidates:
            if row.instance_id in alive:
                continue
            async with self._sessions.begin() as db:
                result = await db.execute(
                    update(TurnRow)
                    .where(TurnRow.id == row.id, TurnRow.status.in_(ACTIVE_TURN))
                    .values(status=TurnState.INTERRUPTED, finished_at=self.clock())
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                conv = await db.get(ConversationRow, row.session_id)
            row.status = TurnState.INTERRUPTED
            if conv is not None:
                claimed.append(Interrupted(_turn(row), _conversation(conv)))
        async with self._sessions.begin() as db:
            await db.execute(delete(InstanceRow).where(InstanceRow.heartbeat_at < cutoff))
        return claimed

    # --- platform event dedupe -------------------------------------------------------------------
    async def claim_event(self, platform: str, *event_ids: str) -> bool:
        """True for the first delivery of an event (on any replica), False for every repeat. Several ids
        of one event (e.g. its id and its channel+ts) are claimed in one statement: True only when none
        was seen before."""
        now = self.clock()
        stmt = (
            self._dialect_insert(ProcessedEventRow)
            .values([{"platform": platform, "event_id": event_id, "received_at": now} for event_id in event_ids])
            .on_conflict_do_nothing(index_elements=["platform", "event_id"])
            .returning(ProcessedEventRow.event_id)
        )
        async with self._sessions.begin() as db:
            claimed = (await db.execute(stmt)).scalars().all()
            return len(claimed) == len(set(event_ids))

    async def forget_events(self, older_than: timedelta) -> int:
        async with self._sessions.begin() as db:
            result = await db.execute(
                delete(ProcessedEventRow).where(ProcessedEventRow.received_at < self.clock() - older_than)
            )
            return result.rowcount or 0  # type: ignore[attr-defined]

    # --- approvals -------------------------------------------------------------------------------
    async def create_approval(self, proposal: Proposal, ttl_seconds: float) -> ApprovalRecord:
        now = self.clock()
        origin = proposal.origin
        row = ApprovalRow(
            id=new_id("apr"),
            session_id=origin.session_id,
            request_id=origin.request_id,
            kind=proposal.kind,
            target=proposal.target,
            params=proposal.params,
            description=proposal.description,
            requester=origin.user,
            platform=origin.platform,
            status=ApprovalState.PENDING,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
        async with self._sessions.begin() as db:
            db.add(row)
        return _approval(row)

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        async with self._sessions() as db:
            row = await db.get(ApprovalRow, approval_id)
            return _approval(row) if row else None

    async def transition_approval(
        self,
        approval_id: str,
        from_status: ApprovalState | Iterable[ApprovalState],
        to_status: ApprovalState,
        **values: Any,
    ) -> ApprovalRecord | None:
        """One atomic conditional UPDATE: returns the new record, or None when the row was not in
        `from_status` (someone else decided first, or it expired)."""
        allowed = [from_status] if isinstance(from_status, str) else list(from_status)
        stmt = update(ApprovalRow).where(ApprovalRow.id == approval_id, ApprovalRow.status.in_(allowed))
        if to_status == ApprovalState.APPROVED:
            stmt = stmt.where(ApprovalRow.expires_at > self.clock())
        async with self._sessions.begin() as db:
            result = await db.execute(stmt.values(status=to_status, **values))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = await db.get(ApprovalRow, approval_id)
            assert row is not None
            await db.refresh(row)
            return _approval(row)

    async def set_approval_message(self, approval_id: str, message_ref: dict[str, Any]) -> None:
        async with self._sessions.begin() as db:
            await db.execute(update(ApprovalRow).where(ApprovalRow.id == approval_id).values(message_ref=message_ref))

    async def due_for_expiry(self) -> list[ApprovalRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(ApprovalRow).where(ApprovalRow.status == ApprovalState.PENDING, ApprovalRow.expires_at <= self.clock())
            )
            return [_approval(r) for r in rows]

    async def stuck_approvals(self, decided_before: datetime) -> list[ApprovalRecord]:
        """Approved but never finished: the process running the action stopped in between."""
        async with self._sessions() as db:
            rows = await db.scalars(
                select(ApprovalRow).where(ApprovalRow.status == ApprovalState.APPROVED, ApprovalRow.decided_at < decided_before)
            )
            return [_approval(r) for r in rows]

    async def approvals(self, status: ApprovalState | None = None, limit: int = 100) -> list[ApprovalRecord]:
        async with self._sessions() as db:
            stmt = select(ApprovalRow).order_by(ApprovalRow.created_at.desc()).limit(limit)
            if status:
                stmt = stmt.where(ApprovalRow.status == status)
            return [_approval(r) for r in await db.scalars(stmt)]

    # --- audit -----------------------------------------------------------------------------------
    async def audit(
        self,
        event: str,
        actor: str,
        *,
        approval_id: str | None = None,
        kind: str | None = None,
        target: str | None = None,
        detail: str | None = None,
    ) -> None:
        async with self._sessions.begin() as db:
            await db.execute(
                insert(AuditRow).values(
                    at=self.clock(),
                    event=event,
                    actor=actor,
                    approval_id=approval_id,
                    kind=kind,
                    target=target,
                    detail=detail,
                )
            )

    async def audit_log(self, since: datetime | None = None, limit: int = 1000) -> list[AuditRecord]:
        async with self._sessions() as db:
            stmt = select(AuditRow).order_by(AuditRow.id).limit(limit)
            if since is not None:
                stmt = stmt.where(AuditRow.at >= since)
            return [
                AuditRecord(r.id, _aware(r.at), r.event, r.actor, r.approval_id, r.kind, r.target, r.detail)  # type: ignore[arg-type]
                for r in await db.scalars(stmt)
            ]
