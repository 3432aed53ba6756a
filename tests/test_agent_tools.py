"""What the agent's tools hand the model: compact, redacted, bounded JSON; and how write calls become Actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.actions import REGISTRY
from bot.answer import Action
from bot.config import Settings
from bot.engine.agent_tools import TOOL_OUTPUT_LIMIT, AgentTools, compact, dumps, from_result, jsonable
from bot.toolbox import Toolbox
from tools.base import ErrorCode, ToolError, ToolResult


@dataclass
class Pod:
    name: str
    started: datetime
    reason: str | None
    env: dict[str, str]


def test_jsonable_is_plain_compact_json() -> None:
    pod = Pod("checkout-1", datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))), None, {})
    assert jsonable(pod) == {"name": "checkout-1", "started": "2024-05-01T10:00:00Z"}
    assert jsonable({"ratio": 0.0834999999, "nan": float("nan"), "tags": ("a", "b")}) == {
        "ratio": 0.0835,
        "nan": "nan",
        "tags": ["a", "b"],
    }


def test_a_large_result_is_cut_to_the_limit_saying_what_was_left_out_and_secrets_never_survive() -> None:
    pods = [
        Pod(f"checkout-{i}", datetime(2024, 5, 1, tzinfo=UTC), "CrashLoopBackOff", {"DB_PASSWORD": f"pw-{i}"})
        for i in range(500)
    ]
    out = compact(
        {"pods": pods, "message": "connect postgres://app:hunter2@db/app failed"}, notes=["events: showing 30 of 41"]
    )
    text = dumps(out)
    assert TOOL_OUTPUT_LIMIT - 200 < len(text) <= TOOL_OUTPUT_LIMIT
    assert "hunter2" not in text and "pw-" not in text
    assert out["data"]["pods"][0]["name"] == "checkout-0"
    kept = len(out["data"]["pods"])
    assert out["notes"] == ["events: showing 30 of 41", f"data.pods: showing {kept} of 500"]


def test_a_long_log_keeps_its_newest_lines() -> None:
    log = "".join(f"line {i} token=abc{i}\n" for i in range(2000)) + "panic: nil pointer dereference\n"
    out = compact(log, keep_tail=True)
    assert out["data"].endswith("panic: nil pointer dereference\n") and out["data"].startswith("…")
    assert "abc1999" not in out["data"] and "token=[REDACTED]" in out["data"]
    assert out["notes"][0].startswith(f"text: kept {len(out['data'])} of")


def test_a_failed_tool_says_why_redacted() -> None:
    error = ToolError(ErrorCode.UNAUTHORIZED, "metrics: HTTP 401 for Authorization: Bearer sk-live-abcdefgh")
    assert from_result(ToolResult("metrics.query", error=error)) == {
        "ok": False,
        "error": "unauthorized: metrics: HTTP 401 for Authorization: [REDACTED]",
    }


@pytest.fixture
def tools() -> AgentTools:
    settings = Settings(
        services={"checkout": {"namespace": "shop", "deployment": "checkout-web", "aliases": ["cart"]}},
        defaults={"namespace": "default"},
    )
    return AgentTools(settings, Toolbox.from_settings(settings))


def test_write_calls_become_the_actions_of_the_approvals_module(tools: AgentTools) -> None:
    assert tools.action_for("rollback_deployment", {"service": "cart"}) == Action(
        kind="rollback", target="shop/checkout-web"
    )
    assert tools.action_for("restart_deployment", {"service": "ledger", "namespace": "payments"}) == Action(
        kind="restart", target="payments/ledger"
    )
    assert tools.action_for("scale_deployment", {"service": "search", "replicas": 4}) == Action(
        kind="scale", target="default/search", params={"replicas": 4}
    )
    assert tools.action_for("acknowledge_incident", {"incident_id": "inc-7", "comment": "on it"}) == Action(
        kind="ack_incident", target="inc-7", params={"comment": "on it"}
    )
    assert tools.action_for(
        "run_automation", {"script_id": "flush-cache", "target_resources": ["web-1"], "parameters_json": '{"ttl": 0}'}
    ) == Action(
        kind="run_automation",
        target="flush-cache",
        params={"target_resources": ["web-1"], "parameters": {"ttl": 0}, "dry_run": False},
    )


def test_the_model_is_offered_each_declared_action_as_a_confirmed_write_tool_with_its_parameters(
    tools: AgentTools,
) -> None:
    offered = {tool.name: tool for tool in tools.function_tools()}
    writes = {name: tool for name, tool in offered.items() if tool._require_confirmation}
    assert set(writes) == {kind.tool.__name__ for kind in REGISTRY.values()}
    schema = {name: tool._get_declaration().parameters_json_schema for name, tool in writes.items()}
    assert schema["scale_deployment"]["required"] == ["service", "replicas"]
    assert schema["restart_deployment"]["required"] == ["service"]
    assert schema["acknowledge_incident"]["required"] == ["incident_id"]
    assert "tool_context" not in str(schema)


@pytest.mark.parametrize(
    ("tool", "args", "why"),
    [
        ("scale_deployment", {"service": "checkout", "replicas": 5000}, "replicas must be between 0 and 1000"),
        ("rollback_deployment", {"service": " "}, "a service name is required"),
        ("run_automation", {"script_id": "x", "parameters_json": "{nope"}, "parameters_json is not JSON"),
        ("acknowledge_incident", {}, "an incident id is required"),
        ("deployment_status", {"service": "checkout"}, "is not a write tool"),
    ],
)
def test_a_write_call_that_names_no_valid_action_is_refused(tools: AgentTools, tool: str, args: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        tools.action_for(tool, args)
