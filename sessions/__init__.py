"""Persistence of conversations, turns, platform events, approvals and the audit log."""

from sessions.store import (
    ApprovalRecord,
    AuditRecord,
    Conversation,
    ConversationKey,
    Store,
    TurnRecord,
)

__all__ = ["ApprovalRecord", "AuditRecord", "Conversation", "ConversationKey", "Store", "TurnRecord"]
