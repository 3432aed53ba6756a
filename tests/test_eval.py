"""`srebot eval`: the shipped scenarios all pass, and a scenario the engine does not satisfy fails with its reasons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.eval import evaluate

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "eval" / "scenarios"

HEALTHY = """
question = "diagnose catalog"
[services.catalog]
namespace = "shop"
[metrics.catalog]
request_rate = 50
error_rate = 0.001
[[kubernetes.deployments]]
name = "catalog"
namespace = "shop"
replicas = 2
[[kubernetes.deployments.revisions]]
revision = 3
image = "shop/catalog:v1.4.2"
created = "-2d"
pods = [{count = 2, ready = true}]
"""


@pytest.mark.integration  # `srebot eval` in a child process
def test_the_shipped_scenarios_pass() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SREBOT_", "PROMETHEUS", "LOKI", "KUBECONFIG"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "eval", str(SCENARIOS)], capture_output=True, text=True, timeout=180, env=clean, check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    count = len(list(SCENARIOS.glob("*.toml")))
    assert count >= 8
    assert lines[-1] == f"{count} passed, 0 failed"
    assert sum(line.startswith("PASS  ") for line in lines) == count


async def test_a_scenario_the_answer_does_not_meet_fails_with_reasons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "wrong.toml").write_text(
        HEALTHY
        + """
[expect]
intent = "logs"
top_severity = "critical"
actions = ["rollback"]
contains = ["CrashLoopBackOff"]
matches = ['rolled out at \\d\\d:\\d\\d']
[forbid]
contains = ["No problems found"]
"""
    )
    (tmp_path / "right.toml").write_text(HEALTHY + '\n[expect]\nsummary_contains = ["No problems found in catalog"]\n')

    assert await evaluate(tmp_path) == 1

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("PASS  right")
    assert out[1].startswith("      answer: No problems found in catalog")  # what a passing scenario found, too
    assert out[2].startswith("FAIL  wrong")
    reasons = "\n".join(out[3:])
    for reason in (
        "- intent is diagnose, expected logs",
        "- top severity is info, expected critical",
        "- no rollback recommended (recommended: no action)",
        "- the answer does not say “CrashLoopBackOff”",
        "- nothing in the answer matches /rolled out at \\d\\d:\\d\\d/",
        "- the answer says “No problems found”, which it must not",
        "answer: No problems found in catalog",
    ):
        assert reason in reasons, reasons
    assert out[-1] == "1 passed, 1 failed"


async def test_json_results_and_broken_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.toml").write_text('question = "x"\n[backends]\ndown = ["dns"]\n')
    (tmp_path / "typo.json").write_text(json.dumps({"question": "x", "expectt": {}}))
    (tmp_path / "ok.json").write_text(json.dumps({"question": "help", "expect": {"intent": "help"}}))

    assert await evaluate(tmp_path, as_json=True) == 1

    body = json.loads(capsys.readouterr().out)
    results = {s["name"]: s for s in body["scenarios"]}
    assert (body["passed"], body["failed"]) == (1, 2)
    assert results["ok"]["passed"] and results["ok"]["answers"][0]["intent"] == "help"
    assert "unknown backend 'dns'" in results["broken"]["reasons"][0]
    assert "expectt: Extra inputs are not permitted" in results["typo"]["reasons"][0]
