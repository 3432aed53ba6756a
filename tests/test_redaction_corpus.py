"""A corpus of secrets in every shape, planted in the backends, and every exit they could leave by.

Shapes: a value under a secret-named key as a string, a number, a {from, to} change, a list, a nested object
and a {name, value} pair; a private key logged one line per log entry; a token, a JWT, an AWS key and a DSN in
a log line. Exits: the Answer JSON of `srebot ask --json` and the DEBUG log lines of that process, the Slack
payloads of the real app, the Teams cards of the card builder, and what the LLM is sent (the real google-genai
client against a fake Gemini).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.answer import Answer
from devtools.loopback.control_plane import rfc3339
from tests.fakes.gemini import FakeGemini, rest_call, rest_text
from tests.fakes.loki import FakeLoki
from tests.fakes.slack import SlackBot, SlackFake, in_thread
from tests.fakes.shop import Fakes  # the `fakes` fixture is registered by tests/conftest.py

PEM = [
    "-----BEGIN RSA PRIVATE KEY-----",
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK",
    "-----END RSA PRIVATE KEY-----",
]
# every value that must never leave the bot
SECRETS = {
    "string": "Str1ngS3cretValue",
    "number": "987654321123",
    "from": "0ldPassw0rdFr0m",
    "to": "N3wPassw0rdT0",
    "list": "L1stT0kenEntry",
    "nested": "Nest3dObjS3cret",
    "pair": "EnvPa1rS3cret",
    "pem": PEM[1][:40],
    "pem2": PEM[2][:40],
    "slack": "xoxb-1111111111-2222222222-abcdefghijklmnop",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZw",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "dsn": "Dsnpassw0rdZZ",
}
CHANGES = {
    "db_password": {"from": SECRETS["from"], "to": SECRETS["to"]},
    "client_secret": SECRETS["string"],
    "api_key": int(SECRETS["number"]),
    "auth_tokens": [SECRETS["list"], "second"],
    "credentials": {"user": "svc", "pass": SECRETS["nested"]},
    "env": [{"name": "DB_PASSWORD", "value": SECRETS["pair"]}],
    "replicas": {"from": 3, "to": 4},
}
LOG_LINES = [
    "ERROR loading signing key failed, dumping it:",
    *(f"ERROR tls: {line}" for line in PEM),  # one entry per line, as a logger writes a multi-line message
    PEM[2],  # a body line alone, its BEGIN and END outside the window or the filter
    f"ERROR upstream refused token {SECRETS['slack']} jwt {SECRETS['jwt']}",
    f"ERROR s3 put failed for {SECRETS['aws']} via postgres://app:{SECRETS['dsn']}@db:5432/shop",
]


def leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


@dataclass
class World:
    fakes: Fakes
    loki: FakeLoki
    tmp_path: Path
    sqlite_url: Callable[..., str]  # a migrated SQLite database in tmp_path, by file name

    def env(self, db_url: str, **extra: str) -> dict[str, str]:
        return self.fakes.env(db_url, LOKI_URL=self.loki.url, **extra)


@pytest.fixture
async def world(fakes: Fakes, tmp_path: Path, sqlite_url: Callable[..., str]) -> AsyncIterator[World]:  # noqa: F811
    now = datetime.now(UTC)
    fakes.cp.audit_logs.append({
        "id": "audit-secret", "timestamp": rfc3339(now - timedelta(minutes=3)), "user_id": "u-carol",
        "username": "carol", "action": "update", "resource_type": "application", "resource_id": "res-1",
        "resource_name": "checkout", "changes": CHANGES, "result": "success",
    })
    async with FakeLoki() as loki:
        start = now - timedelta(minutes=2)
        lines = [(start + timedelta(seconds=i), line) for i, line in enumerate(LOG_LINES)]
        loki.add({"namespace": "shop", "app": "checkout"}, lines)
        yield World(fakes, loki, tmp_path, sqlite_url)


async def srebot(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SREBOT_", "SLACK_", "CONTROL_PLANE", "MICROSOFT", "GOOGLE"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env={**clean, **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.integration  # `srebot ask` in child processes
async def test_answer_json_and_debug_logs_and_teams_cards_carry_no_secret(world: World) -> None:
    from integrations.teams.cards import answer_cards

    env = world.env(world.sqlite_url("a.db"), SREBOT_LOG_LEVEL="DEBUG", SREBOT_LOG_FORMAT="json")
    outputs = []
    for question in ("what changed in checkout?", "logs checkout"):
        code, out, err = await srebot(env, world.tmp_path, "ask", question, "--json")
        assert code == 0, err
        outputs.append((out, err))
        answer = Answer.model_validate(json.loads(out))
        cards = json.dumps(answer_cards(answer))
        assert leaks(out) == [] and leaks(err) == [] and leaks(cards) == [], (question, out, err)
    changes, logs = outputs
    # the planted data did reach each exit, masked: the test would see a leak
    assert "db_password" in changes[0] and "[REDACTED]" in changes[0]
    assert "tls: [REDACTED]" in logs[0], logs[0]
    assert '"level": "debug"' in changes[1] + logs[1]


async def test_slack_payloads_carry_no_secret(world: World) -> None:
    db = world.sqlite_url("s.db")
    async with SlackFake() as slack, SlackBot(slack, db, env=world.env(db)) as bot:
        for question in ("what changed in checkout?", "logs checkout", "diagnose checkout"):
            mention = slack.app_mention(f"<@UBOT> {question}")
            await bot.event(mention)
            await slack.wait_for("chat.postMessage", in_thread(mention["ts"]))
            await bot.idle()
        # the findings travel behind "Show details": press it on every answer, so those payloads are checked too
        details = {e["value"] for c in slack.calls for b in (c.args.get("blocks") or []) if isinstance(b, dict)
                   for e in b.get("elements", []) if isinstance(e, dict) and e.get("action_id") == "answer_details"}
        assert details
        for value in details:
            await bot.click("answer_details", value)
        await bot.idle()
        sent = slack.texts()
        assert leaks(sent) == []
        assert "db_password" in sent and "tls: [REDACTED]" in sent


@pytest.mark.integration  # `srebot ask` in a child process
async def test_the_llm_is_sent_no_secret(world: World) -> None:
    script = [
        [rest_call("audit_logs", service="checkout"), rest_call("recent_logs", service="checkout", namespace="shop")],
        [rest_text("checkout: a credential rotation 3 minutes ago; the signing key failed to load.")],
    ]
    async with FakeGemini(script) as gemini:
        env = world.env(world.sqlite_url("l.db"), GOOGLE_API_KEY="AIzaFakeKeyForTheCorpus00000000000000",
                        GOOGLE_GEMINI_BASE_URL=gemini.url)
        code, out, err = await srebot(env, world.tmp_path, "ask", "why is checkout failing since the change?", "--json")
        assert code == 0, err
        sent = "\n".join(json.dumps(call.body) for call in gemini.calls)
    assert len(gemini.calls) >= 2, err
    assert leaks(sent) == [] and leaks(out) == []
    assert "db_password" in sent and "tls: [REDACTED]" in sent  # the tools' output did reach the model, masked
