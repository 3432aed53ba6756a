"""`srebot demo` with nothing configured: a real diagnosis of the simulated shop, a rollback proposed, approved by
someone else and run once against the simulated cluster, and the Slack and Teams payloads previewed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.demo import run_demo


async def test_the_demo_diagnoses_proposes_approves_runs_and_previews(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing of the current directory (a srebot.toml, a database) is used or left
    assert await run_demo(out=tmp_path / "preview", interactive=False) == 0
    out = capsys.readouterr().out
    assert "checkout is failing, most likely because of the v2.1.0 rollout" in out
    assert "Roll back checkout to revision 6" in out
    assert "Approved by lead" in out and "shop/checkout rolled back to revision 6 (v2.0.3)" in out
    assert "the simulated cluster received: PATCH /apis/apps/v1/namespaces/shop/deployments/checkout" in out

    page = (tmp_path / "preview" / "preview.html").read_text()
    assert "Slack (Block Kit)" in page and "Teams (Adaptive Card)" in page and "Approved by lead" in page
    slack = json.loads((tmp_path / "preview" / "01-slack.json").read_text())
    teams = json.loads((tmp_path / "preview" / "01-teams.json").read_text())
    assert slack[0]["blocks"] and teams[0]["type"] == "AdaptiveCard"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview"]
