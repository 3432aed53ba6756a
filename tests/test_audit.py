"""`srebot audit [--since] [--json]`: every approval step with who and when, on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import pytest

from bot import cli
from bot.config import load_settings
from sessions.store import Origin, Proposal, Store


async def audit(
    db_url: str, capsys: pytest.CaptureFixture[str], since: str | None, *, as_json: bool = False
) -> tuple[int, str, str]:
    settings = load_settings(env={"DATABASE_URL": db_url})
    code = await cli.cmd_audit(settings, argparse.Namespace(since=since, json=as_json))
    out, err = capsys.readouterr()
    return code, out, err


async def test_audit_prints_who_did_what_and_when(
    store: Store, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    approval = await store.create_approval(
        Proposal("scale", "shop/checkout", {"replicas": 5}, "scale shop/checkout: replicas 3 → 5",
                 Origin("U0ALICE", "slack")),
        ttl_seconds=60,
    )
    for event, actor, detail in [("proposed", "U0ALICE", approval.description), ("refused", "U0ALICE", "four eyes"),
                                 ("approved", "U0BOB", None), ("failed", "U0BOB", "forbidden:\nno scale for you")]:
        await store.audit(event, actor, approval_id=approval.id, kind="scale", target="shop/checkout", detail=detail)

    code, out, _ = await audit(db_url, capsys, "1h")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[2:4] for line in lines] == [
        ["proposed", "U0ALICE"], ["refused", "U0ALICE"], ["approved", "U0BOB"], ["failed", "U0BOB"]]
    assert all(approval.id in line and "scale shop/checkout" in line for line in lines)
    assert lines[0].endswith("— scale shop/checkout: replicas 3 → 5")
    assert lines[-1].endswith("— forbidden: no scale for you")  # one line per row
    stamp = datetime.strptime(" ".join(lines[0].split()[:2]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)

    code, out, _ = await audit(db_url, capsys, None, as_json=True)
    rows = json.loads(out)
    assert code == 0 and [(r["event"], r["actor"]) for r in rows][-1] == ("failed", "U0BOB")

    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert await audit(db_url, capsys, later) == (0, "(no audit entries)\n", "")
    code, _, err = await audit(db_url, capsys, "yesterday")
    assert code == cli.EXIT_CONFIG and "--since 'yesterday'" in err
