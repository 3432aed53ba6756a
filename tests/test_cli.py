"""The CLI and HTTP surface as an outside user drives them (DESIGN 3.1-3.3, 3.7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import Runtime
from bot.config import load_settings
from bot.web import build_app
from tests.helpers import ANSWER_SCHEMA

pytestmark = pytest.mark.integration  # starts srebot in child processes


def srebot(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SREBOT_", "PROMETHEUS", "LOKI", "CONTROL_PLANE", "GOOGLE_", "MICROSOFT_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60, input=stdin
    )


def test_ask_json_is_a_valid_answer_and_threads_continue(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}  # plain URL is mapped to aiosqlite
    first = srebot("ask", "help", "--json", "--thread", "inc-1", env=env)
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    jsonschema.validate(answer, ANSWER_SCHEMA)
    assert answer["intent"] == "help" and "diagnose <service>" in answer["summary"]

    second = srebot("ask", "diagnose checkout", "--json", "--thread", "inc-1", env=env)
    other = json.loads(second.stdout)
    jsonschema.validate(other, ANSWER_SCHEMA)
    assert other["session_id"] == answer["session_id"]  # same thread, same session, across processes
    assert {t["name"]: t["error"] for t in other["tools"]}["metrics"] == "not configured"
    assert "nothing could be checked" in other["summary"]


def test_ask_text_output(tmp_path: Path) -> None:
    result = srebot("ask", "help", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"})
    assert result.returncode == 0
    assert "I'm srebot" in result.stdout


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`srebot ask … | head -1`: the pipe closes after the first line; srebot must end, without a traceback."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SREBOT_", "PROMETHEUS", "LOKI"))}
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write breaks the pipe
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bot", "ask", "help", "--json"], stdout=write, stderr=subprocess.PIPE, text=True,
            env={**clean, "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}, timeout=60,
        )
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_bad_config_value_names_the_key_and_exits_2(tmp_path: Path) -> None:
    result = srebot("check", env={"PORT": "not-a-port", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.returncode == 2
    assert "PORT" in result.stderr and "Traceback" not in result.stderr

    config = tmp_path / "srebot.toml"
    config.write_text('[thresholds]\nerror_rate = [0.5, 0.1]\n[defaults]\nwindow = "soon"\n')
    result = srebot("check", env={"SREBOT_CONFIG": str(config)})
    assert result.returncode == 2
    assert "thresholds" in result.stderr and "defaults.window" in result.stderr
    assert "Traceback" not in result.stderr


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "srebot.toml"
    config.write_text(
        'prometheus_url = "http://file:9090"\nloki_url = "http://loki:3100"\n'
        '[services.checkout]\nnamespace = "shop"\naliases = ["checkout-api", "cart checkout"]\n'
    )
    settings = load_settings(env={"SREBOT_CONFIG": str(config), "PROMETHEUS_URL": "http://env:9090"})
    assert settings.prometheus_url == "http://env:9090"
    assert settings.loki_url == "http://loki:3100"
    service = settings.service("Checkout-API")
    assert service is not None and service.namespace == "shop" and service.deployment == "checkout"
    assert service.logs == '{namespace="shop", app="checkout"}'


def test_db_upgrade_on_postgres(db_url: str) -> None:
    result = srebot("db", "upgrade", env={"DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


async def test_health_ready_and_metrics(tmp_path: Path) -> None:
    settings = load_settings(env={"DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"})
    async with TestClient(TestServer(build_app(Runtime(settings)))) as client:
        assert await (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        body = await ready.json()
        assert ready.status == 200 and body["ready"] is True and body["checks"]["database"] == "ok"
        # backends are listed, but only the database decides readiness
        assert body["checks"]["metrics"] == "not configured" and body["checks"]["control_plane"] == "not configured"
        metrics = await (await client.get("/metrics")).text()
        assert "srebot_requests_in_flight" in metrics and "srebot_dispatch_queue_depth" in metrics


async def test_ready_is_503_when_the_database_is_down() -> None:
    settings = load_settings(env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"})
    runtime = Runtime(settings)
    async with TestClient(TestServer(build_app(runtime, manage_runtime=False))) as client:
        response = await client.get("/readyz")
        body = await response.json()
        assert response.status == 503 and body["ready"] is False
        assert body["checks"]["database"].startswith("error:")
        assert (await client.get("/healthz")).status == 200
    await runtime.store.close()


def test_check_fails_when_a_configured_backend_is_unreachable(tmp_path: Path) -> None:
    result = srebot(
        "check",
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}", "PROMETHEUS_URL": "http://127.0.0.1:1"},
    )
    assert result.returncode == 1 and "security: ok" in result.stdout
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    assert rows["database"] == "ok"
    assert rows["metrics"].startswith("error: unreachable")
    assert rows["logs"] == "not configured"


def test_check_fails_on_an_insecure_configuration_and_says_why(tmp_path: Path) -> None:
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}
    # Teams in its local mode: /api/messages takes unauthenticated requests
    result = srebot("check", env={**database, "SREBOT_TEAMS_INSECURE": "local"})
    assert result.returncode == 1 and "INSECURE" in result.stdout and "MICROSOFT_APP_ID" in result.stdout
    # Slack over HTTP without a signing secret
    result = srebot("check", env={**database, "SLACK_BOT_TOKEN": "xoxb-1-2-x",
                                  "SLACK_API_URL": "http://127.0.0.1:1/api/"})
    assert result.returncode == 1 and "SLACK_SIGNING_SECRET" in result.stdout
    # secure: Socket Mode needs no signing secret, and Teams is off without credentials
    result = srebot("check", env={**database, "SLACK_BOT_TOKEN": "xoxb-1-2-x", "SLACK_APP_TOKEN": "xapp-1-x"})
    assert result.returncode == 0, result.stdout
    assert "security: ok" in result.stdout


def test_an_unknown_action_kind_in_the_policy_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "srebot.toml"
    config.write_text('[policy.channels.C1.kinds.reboot]\napprove = ["U1"]\n')
    result = srebot("check", env={"SREBOT_CONFIG": str(config), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.returncode == 2 and "unknown action kind reboot" in result.stderr and "Traceback" not in result.stderr


def test_the_policy_decides_who_may_ask_from_the_terminal_too(tmp_path: Path) -> None:
    config = tmp_path / "srebot.toml"
    config.write_text('[policy.channels.terminal]\nask = ["oncall"]\n')
    env = {"SREBOT_CONFIG": str(config), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    refused = srebot("ask", "help", "--json", "--user", "mallory", env=env)
    assert refused.returncode == 1 and "You may not ask srebot here" in json.loads(refused.stdout)["summary"]
    allowed = srebot("ask", "help", "--json", "--user", "oncall", env=env)
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["intent"] == "help"
