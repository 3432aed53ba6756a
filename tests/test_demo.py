"""`srebot demo` with nothing configured: a real diagnosis of the simulated shop (the scenario world
devtools/demo_world), a rollback proposed, approved by someone else and run once against the simulated cluster, and
the Slack and Teams payloads previewed, the interactive turns included."""

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
    assert "not described" not in out and "not checked" not in out  # the world serves every kind the diagnosis reads

    page = (tmp_path / "preview" / "preview.html").read_text()
    assert "Slack (Block Kit)" in page and "Teams (Adaptive Card)" in page and "Approved by lead" in page
    slack = json.loads((tmp_path / "preview" / "01-slack.json").read_text())
    teams = json.loads((tmp_path / "preview" / "01-teams.json").read_text())
    assert slack[0]["blocks"] and teams[0]["type"] == "AdaptiveCard"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview"]


async def test_the_preview_follows_the_interactive_turns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Your own turns after the tour — the question, the proposal, the approval, the executed outcome — are in the
    preview too, not only the tour's first answer."""
    monkeypatch.chdir(tmp_path)
    typed = iter(["scale catalog 3", "a", "lead", ""])  # ask, approve at the prompt, by the lead, leave
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    assert await run_demo(out=tmp_path / "preview", interactive=True) == 0
    assert "catalog" in capsys.readouterr().out

    page = (tmp_path / "preview" / "preview.html").read_text()
    titles = [line.split("</h2>")[0] for line in page.split("<h2>")[1:]]
    asked = next(i for i, title in enumerate(titles) if "you: scale catalog 3" in title)
    after = titles[asked + 1:]
    assert any("(pending)" in t for t in after), titles
    assert any(": approved" in t for t in after) and any(": executed" in t for t in after), titles
    assert "in the thread: scale executed" in after[-1], titles
    outcome = json.loads((tmp_path / "preview" / f"{len(titles):02d}-teams.json").read_text())
    assert "shop/catalog scaled: replicas 2 → 3" in json.dumps(outcome, ensure_ascii=False)  # the cluster took it
    assert "lead" in json.dumps(outcome)
