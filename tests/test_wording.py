"""Slack and Teams say an approval's state and outcome in the one wording of bot.wording."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot import wording
from integrations.slack import blocks
from integrations.teams import cards
from sessions.store import ApprovalRecord, ApprovalState, utcnow


def approval(state: ApprovalState) -> ApprovalRecord:
    now = utcnow()
    decided = state not in (ApprovalState.PENDING, ApprovalState.EXPIRED)
    return ApprovalRecord(
        id="apr_1", kind="scale", target="shop/checkout", params={"replicas": 5},
        description="scale shop/checkout: replicas 3 → 5", requester="alice", platform="slack", status=state,
        session_id=None, request_id=None, created_at=now, expires_at=now + timedelta(minutes=30),
        decided_by="bob" if decided else None, decided_at=now if decided else None,
        finished_at=now if state not in (ApprovalState.PENDING, ApprovalState.APPROVED) else None,
        result="shop/checkout scaled: replicas 3 → 5" if state == ApprovalState.EXECUTED else None,
    )


@pytest.mark.parametrize("state", [s for s in ApprovalState if s != ApprovalState.PENDING])
def test_the_decided_approval_message_says_the_same_on_slack_and_teams(state: ApprovalState) -> None:
    record = approval(state)
    line = wording.approval_status(record)
    assert line in blocks.approval_decided(record).text
    assert line in json.dumps(cards.approval_card(record), ensure_ascii=False)


@pytest.mark.parametrize("state", [ApprovalState.EXECUTED, ApprovalState.FAILED, ApprovalState.REJECTED,
                                   ApprovalState.EXPIRED])
def test_the_outcome_in_the_thread_says_the_same_on_slack_and_teams(state: ApprovalState) -> None:
    record = approval(state)
    slack, teams = blocks.approval_outcome(record), cards.approval_outcome(record)
    assert slack is not None and teams is not None
    # the same sentence; only how each platform shows "scale shop/checkout" differs
    assert slack.replace("scale `shop/checkout`", "X") == teams.replace("scale shop/checkout (apr_1)", "X")


def test_no_outcome_is_said_before_an_approval_is_final() -> None:
    for state in (ApprovalState.PENDING, ApprovalState.APPROVED):
        assert blocks.approval_outcome(approval(state)) is None and cards.approval_outcome(approval(state)) is None
