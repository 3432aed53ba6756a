"""The alert groups in the database: first delivery inserts (once, across replicas), every later change is a compare-and-set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from sessions.models import AlertGroupRow, AlertServiceRow
from sessions.store import Store, _aware, new_id, utcnow


@dataclass
class AlertGroupRecord:
    id: str
    group_key: str
    source: str
    status: str
    version: int
    digest: str
    labels: dict[str, Any]
    alerts: dict[str, Any]
    service: str | None
    platform: str | None
    channel: str | None
    thread: dict[str, Any] | None
    session_id: str | None
    opening_at: datetime | None
    started_at: datetime
    resolved_at: datetime | None
    first_seen_at: datetime
    last_seen_at: datetime
    deliveries: int
    investigated_at: datetime | None
    investigated: dict[str, Any] | None


def _record(row: AlertGroupRow) -> AlertGroupRecord:
    return AlertGroupRecord(
        id=row.id,
        group_key=row.group_key,
        source=row.source,
        status=row.status,
        version=row.version,
        digest=row.digest,
        labels=dict(row.labels or {}),
        alerts=dict(row.alerts or {}),
        service=row.service,
        platform=row.platform,
        channel=row.channel,
        thread=row.thread,
        session_id=row.session_id,
        opening_at=_aware(row.opening_at),
        started_at=_aware(row.started_at),  # type: ignore[arg-type]
        resolved_at=_aware(row.resolved_at),
        first_seen_at=_aware(row.first_seen_at),  # type: ignore[arg-type]
        last_seen_at=_aware(row.last_seen_at),  # type: ignore[arg-type]
        deliveries=row.deliveries,
        investigated_at=_aware(row.investigated_at),
        investigated=row.investigated,
    )


class AlertStore:
    """Alert groups on the store's database and connection pool."""

    def __init__(self, store: Store):
        self._store = store
        self._sessions = store._sessions

    async def insert(self, key_hash: str, values: dict[str, Any]) -> AlertGroupRecord | None:
        """The new group's record, or None when the group is already there (any replica inserted it)."""
        now = utcnow()
        stmt = (
            self._store._dialect_insert(AlertGroupRow)
            .values(id=new_id("alg"), key_hash=key_hash, version=0, deliveries=1, first_seen_at=now,
                    last_seen_at=now, **values)
            .on_conflict_do_nothing(index_elements=["key_hash"])
            .returning(AlertGroupRow)
        )
        async with self._sessions.begin() as db:
            row = (await db.execute(stmt)).scalar_one_or_none()
            return _record(row) if row is not None else None

    async def seen(self, key_hash: str) -> AlertGroupRecord | None:
        """Count one more delivery of an existing group and return it."""
        async with self._sessions.begin() as db:
            row = await db.scalar(
                update(AlertGroupRow)
                .where(AlertGroupRow.key_hash == key_hash)
                .values(deliveries=AlertGroupRow.deliveries + 1, last_seen_at=utcnow())
                .returning(AlertGroupRow)
            )
            return _record(row) if row is not None else None

    async def change(self, record: AlertGroupRecord, **values: Any) -> AlertGroupRecord | None:
        """Apply `values` only if nobody changed the group since `record` was read; the new record, or None
        when another delivery or replica got there first (read it again and decide again)."""
        async with self._sessions.begin() as db:
            row = await db.scalar(
                update(AlertGroupRow)
                .where(AlertGroupRow.id == record.id, AlertGroupRow.version == record.version)
                .values(version=record.version + 1, **values)
                .returning(AlertGroupRow)
            )
            return _record(row) if row is not None else None

    async def get(self, group_id: str) -> AlertGroupRecord | None:
        async with self._sessions() as db:
            row = await db.get(AlertGroupRow, group_id, populate_existing=True)
            return _record(row) if row is not None else None

    async def by_key(self, key_hash: str) -> AlertGroupRecord | None:
        async with self._sessions() as db:
            row = await db.scalar(select(AlertGroupRow).where(AlertGroupRow.key_hash == key_hash))
            return _record(row) if row is not None else None

    async def by_session(self, session_id: str) -> AlertGroupRecord | None:
        async with self._sessions() as db:
            row = await db.scalar(select(AlertGroupRow).where(AlertGroupRow.session_id == session_id).limit(1))
            return _record(row) if row is not None else None

    async def recent(self, limit: int) -> list[AlertGroupRecord]:
        """The groups heard of most recently (firing or resolved), newest first."""
        async with self._sessions() as db:
            rows = await db.scalars(select(AlertGroupRow).order_by(AlertGroupRow.last_seen_at.desc()).limit(limit))
            return [_record(r) for r in rows]

    async def firing(self, source: str) -> list[AlertGroupRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(AlertGroupRow).where(AlertGroupRow.source == source, AlertGroupRow.status == "firing")
            )
            return [_record(r) for r in rows]

    async def claim_service(self, service: str, group_id: str, *, quiet_since: datetime | None) -> str | None:
        """Record that `group_id` investigates `service` now, unless another investigation of it started after
        `quiet_since` (None: regardless). Returns None when claimed, else the group id that holds it."""
        now = utcnow()
        stmt = self._store._dialect_insert(AlertServiceRow).values(service=service, group_id=group_id, investigated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["service"],
            set_={"group_id": group_id, "investigated_at": now},
            where=None if quiet_since is None else AlertServiceRow.investigated_at < quiet_since,
        ).returning(AlertServiceRow.service)
        async with self._sessions.begin() as db:
            if (await db.execute(stmt)).scalar_one_or_none() is not None:
                return None
            return await db.scalar(select(AlertServiceRow.group_id).where(AlertServiceRow.service == service))
