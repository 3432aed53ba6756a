"""SQLAlchemy 2 table models of everything srebot persists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class ConversationRow(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("platform", "workspace", "channel", "thread", name="uq_conversation_thread"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    workspace: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(256))
    thread: Mapped[str] = mapped_column(String(256))
    current_service: Mapped[str | None] = mapped_column(String(128))
    reference: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    last_active_at: Mapped[datetime]


class TurnRow(Base):
    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_status", "status"), Index("ix_turns_session", "session_id", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(String(40), unique=True)
    instance_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    intent: Mapped[str | None] = mapped_column(String(16))
    service: Mapped[str | None] = mapped_column(String(128))
    answer: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    elapsed_ms: Mapped[int | None]
    # "cancel" reached a replica that is not running the turn; the one that is cancels it on its heartbeat
    cancel_requested_at: Mapped[datetime | None]
    # where the request's placeholder is ("waiting for …"), so whoever ends the turn can replace it
    placeholder: Mapped[dict[str, Any] | None]


class FeedbackRow(Base):
    """A person's thumbs up or down on one answer (a turn); one per person and turn, the latest wins."""

    __tablename__ = "answer_feedback"
    __table_args__ = (UniqueConstraint("turn_id", "user_id", name="uq_feedback_turn_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(128))
    rating: Mapped[str] = mapped_column(String(8))  # good | bad
    at: Mapped[datetime] = mapped_column(index=True)


class InstanceRow(Base):
    """A running srebot process and its lease on its turns; once the lease expires they may be taken over."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]


class ProcessedEventRow(Base):
    __tablename__ = "processed_events"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    # the claim that took it: a retry whose first commit landed unseen finds its own claim, not a repeat
    claimed_by: Mapped[str | None] = mapped_column(String(40))


class ApprovalRow(Base):
    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_status_expiry", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"))
    request_id: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(256))
    params: Mapped[dict[str, Any]]
    description: Mapped[str] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(String(128))
    platform: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_via: Mapped[str | None] = mapped_column(String(16))  # button, card, cli, chat
    decided_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(Text)
    message_ref: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    # where and how the actor acted: platform, workspace (Slack team / Teams tenant), channel, and the path
    # (message, command, button, card, cli, chat, alert; "expiry" and "sweeper" for srebot's own steps)
    platform: Mapped[str | None] = mapped_column(String(16))
    workspace: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(256))
    via: Mapped[str | None] = mapped_column(String(16))
    approval_id: Mapped[str | None] = mapped_column(String(40), index=True)
    kind: Mapped[str | None] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[str | None] = mapped_column(Text)


class AlertGroupRow(Base):
    """One alert group (an Alertmanager groupKey, or a control-plane service) and the thread it has.

    Every change is a compare-and-set on `version`, so of two deliveries (replicas, an HA pair) one decides."""

    __tablename__ = "alert_groups"
    __table_args__ = (Index("ix_alert_groups_session", "session_id"), Index("ix_alert_groups_status", "source", "status"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    group_key: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=0)
    digest: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]]  # {"common": {...}, "group": {...}, "annotations": {...}}
    alerts: Mapped[dict[str, Any]]  # {"items": [...], "truncated": n, "external_url": "..."}
    service: Mapped[str | None] = mapped_column(String(128))
    platform: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(256))
    thread: Mapped[dict[str, Any] | None]  # the root message: its conversation key and message reference
    session_id: Mapped[str | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"))
    opening_at: Mapped[datetime | None]  # a replica claimed posting the root message at this time
    started_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    investigated_at: Mapped[datetime | None]
    investigated: Mapped[dict[str, Any] | None]  # {"fingerprints": [...]} of the last investigation


class AlertServiceRow(Base):
    """The last alert-driven investigation of a service: alert groups of one workload share one investigation."""

    __tablename__ = "alert_services"

    service: Mapped[str] = mapped_column(String(128), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(40))
    investigated_at: Mapped[datetime]
