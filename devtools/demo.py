"""`srebot demo`: the bot's job in five minutes, with nothing configured and nothing real touched.

A simulated shop runs on 127.0.0.1 — Prometheus, Loki, a Kubernetes API server and the SRE control plane, the
loopback fakes of devtools/loopback serving the scenario world devtools/demo_world — in the middle of an incident:
checkout v2.1.0 rolled out ten minutes ago, its pods crash-loop and its error rate is 8 %. The real runtime (dispatcher, engine, approvals, a SQLite file in
the output directory) answers in the terminal:

1. you ask why checkout is failing, and see the diagnosis: cause, evidence, what changed, what to do;
2. the rollback it proposes waits for someone else: the on-call lead approves it, and it runs once against
   the simulated cluster (the PATCH it received is shown);
3. then it is your turn (when the terminal is interactive): ask anything, propose and approve more.

Every answer and approval is also written as the Slack Block Kit and Teams Adaptive Card payloads the bot
would post, with a simple HTML preview of both (`preview.html` in the output directory).
"""

from __future__ import annotations

import asyncio
import html
import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.answer import Answer
from bot.config import Settings
from bot.ports import ApprovalRecord, Conversation, ConversationKey, Request, new_id
from bot.terminal import TerminalNotifier, TerminalPort
from bot.toolbox import service_ref
from devtools.loopback.kubeworld import KubeWorld
from devtools.loopback.prometheus import PrometheusFake
from devtools.world import load_world

YOU, LEAD = "you", "lead"
SERVICE = "checkout"
TURN_TIMEOUT = 60.0
INTRO = (
    "srebot demo — a simulated shop on 127.0.0.1 (Prometheus, Loki, Kubernetes and the control plane are loopback\n"
    "fakes; nothing real is touched). checkout v2.1.0 rolled out ten minutes ago; its pods crash-loop and 8 % of\n"
    "its requests fail. The real srebot runtime answers below."
)


# --- the simulated shop ---------------------------------------------------------------------------
# A scenario world (shared/scenarios/FORMAT.md): Kubernetes objects of every kind the diagnosis reads, log lines,
# the control plane and the catalog, served as `srebot eval` serves any world. Only the metrics are the profiles
# below, answered without a Prometheus binary (a real one would need metrics.json's raw series and promtool).
WORLD = Path(__file__).parent / "demo_world"


def _profiles(now: datetime) -> dict[str, dict[str, list[tuple[datetime, float]]]]:
    def steady(value: float) -> list[tuple[datetime, float]]:
        return [(now - timedelta(hours=2), value)]

    def jump(before: float, after: float) -> list[tuple[datetime, float]]:
        return [(now - timedelta(hours=2), before), (now - timedelta(minutes=8), after)]

    return {
        SERVICE: {"request_rate": steady(100), "error_rate": jump(0.001, 0.083), "latency_p99": jump(0.12, 0.9),
                  "cpu_ratio": steady(0.35), "memory_ratio": steady(0.39), "restarts": jump(0, 12)},
        "catalog": {"request_rate": steady(40), "error_rate": steady(0.0005), "latency_p99": steady(0.08),
                    "cpu_ratio": steady(0.2), "memory_ratio": steady(0.3), "restarts": steady(0)},
    }


@dataclass
class Shop:
    settings: Settings
    kube: KubeWorld


@asynccontextmanager
async def shop(root: Path) -> AsyncIterator[Shop]:
    """The simulated shop, serving on 127.0.0.1, and the Settings that point srebot at it."""
    from devtools.eval import world_backends

    world = load_world(WORLD)
    async with PrometheusFake() as prometheus, world_backends(
        world, root, metrics_url=prometheus.url, overrides={"SREBOT_TOOL_TIMEOUT": "20"}  # a busy laptop
    ) as backends:
        settings = backends.settings
        for name, profiles in _profiles(world.now).items():
            prometheus.add_service(service_ref(settings, settings.services[name]), profiles)
        assert backends.kube is not None
        backends.kube.applies_patches = True  # what you approve shows: "scale catalog 3" makes it 3
        yield Shop(settings, backends.kube)


# --- the preview of what Slack and Teams would show -----------------------------------------------
@dataclass
class Preview:
    """Every message of the demo as the Slack and Teams payloads the bot would post, and an HTML page of them."""

    out: Path
    entries: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = field(default_factory=list)

    def answer(self, who: str, question: str, answer: Answer) -> None:
        from integrations.slack import blocks
        from integrations.teams import cards

        slack = [{"text": m.text, "blocks": m.blocks} for m in blocks.render(answer).messages]
        self._add(f"{who}: {question}", slack, cards.answer_cards(answer))

    def approval(self, title: str, approval: ApprovalRecord) -> None:
        from integrations.slack import blocks
        from integrations.teams import cards

        message = blocks.approval_request(approval) if approval.status == "pending" else blocks.approval_decided(approval)
        self._add(title, [{"text": message.text, "blocks": message.blocks}], [cards.approval_card(approval)])

    def outcome(self, approval: ApprovalRecord) -> None:
        """The line each platform posts in the thread once an approval is final (executed, failed, …)."""
        from integrations.slack import blocks
        from integrations.teams import cards

        slack, teams = blocks.approval_outcome(approval), cards.approval_outcome(approval)
        if slack is None or teams is None:
            return
        self._add(f"in the thread: {approval.kind} {approval.status}",
                  [{"text": m.text, "blocks": m.blocks} for m in blocks.render_mrkdwn(slack).messages],
                  [{"type": "message", "text": teams}])  # Teams posts it as a plain message

    def _add(self, title: str, slack: list[dict[str, Any]], teams: list[dict[str, Any]]) -> None:
        # written at once, so the page shows every turn so far however the demo ends (an empty line, Ctrl-C)
        self.entries.append((title, slack, teams))
        self.write()

    def write(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        sections = []
        for n, (title, slack, teams) in enumerate(self.entries, 1):
            (self.out / f"{n:02d}-slack.json").write_text(json.dumps(slack, indent=2, ensure_ascii=False))
            (self.out / f"{n:02d}-teams.json").write_text(json.dumps(teams, indent=2, ensure_ascii=False))
            sections.append(
                f"<section><h2>{n}. {html.escape(title)}</h2><div class=pair>"
                f"<div><h3>Slack (Block Kit)</h3>{''.join(_slack_html(m) for m in slack)}{_raw(slack)}</div>"
                f"<div><h3>Teams (Adaptive Card)</h3>{''.join(_card_html(c) for c in teams)}{_raw(teams)}</div>"
                "</div></section>"
            )
        page = self.out / "preview.html"
        page.write_text(_PAGE.format(body="\n".join(sections)))
        return page


_PAGE = """<!doctype html><meta charset=utf-8><title>srebot demo: Slack and Teams preview</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1200px}} .pair{{display:grid;
grid-template-columns:1fr 1fr;gap:1.5em}} .msg,.card{{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;
margin:.4em 0;white-space:pre-wrap}} .card{{background:#f5f5fb}} .ctx{{color:#666;font-size:12px}}
button{{margin-right:.5em}} h2{{border-top:1px solid #ddd;padding-top:1em}}</style>
<h1>srebot demo: what Slack and Teams would show</h1>
<p>A simple rendering of the payloads in this directory (NN-slack.json, NN-teams.json); paste a Slack one into
Block Kit Builder or a Teams one into the Adaptive Cards Designer to see it exactly.</p>
{body}"""


def _raw(payload: Any) -> str:
    return f"<details><summary>JSON</summary><pre>{html.escape(json.dumps(payload, indent=2, ensure_ascii=False))}</pre></details>"


def _slack_html(message: dict[str, Any]) -> str:
    def text(value: str) -> str:  # Slack's own escaping (&lt; &gt; &amp;) undone, then the page's
        return html.escape(html.unescape(value))

    parts = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind in ("section", "header"):
            parts.append(f"<div>{text((block.get('text') or {}).get('text', ''))}</div>")
            parts += [f"<div>{text(f.get('text', ''))}</div>" for f in block.get("fields") or []]
        elif kind == "context":
            parts.append(f"<div class=ctx>{text(' '.join(e.get('text', '') for e in block.get('elements') or []))}</div>")
        elif kind == "actions":
            parts.append("<div>" + "".join(
                f"<button>{html.escape(e.get('text', {}).get('text', ''))}</button>" for e in block.get("elements") or []
            ) + "</div>")
        elif kind == "divider":
            parts.append("<hr>")
    return f"<div class=msg>{''.join(parts) or text(message.get('text', ''))}</div>"


def _card_html(card: dict[str, Any]) -> str:
    if card.get("type") == "message":
        return f"<div class=msg>{html.escape(card.get('text', ''))}</div>"

    def items(elements: list[dict[str, Any]]) -> str:
        out = []
        for element in elements:
            kind = element.get("type")
            if kind == "TextBlock":
                weight = "b" if element.get("weight") == "Bolder" else "span"
                out.append(f"<div><{weight}>{html.escape(element.get('text', ''))}</{weight}></div>")
            elif kind == "FactSet":
                out += [f"<div><b>{html.escape(f['title'])}</b>: {html.escape(str(f['value']))}</div>"
                        for f in element.get("facts") or []]
            elif kind in ("Container", "Column"):
                out.append(items(element.get("items") or []))
            elif kind == "ColumnSet":
                out.append(items(element.get("columns") or []))
        return "".join(out)

    buttons = "".join(f"<button>{html.escape(a.get('title', ''))}</button>" for a in card.get("actions") or [])
    return f"<div class=card>{items(card.get('body') or [])}{f'<div>{buttons}</div>' if buttons else ''}</div>"


# --- the tour ---------------------------------------------------------------------------------------
class PreviewPort(TerminalPort):
    """The terminal's port, also previewing the answer and each approval it asks for."""

    def __init__(self, preview: Preview, who: str, question: str):
        super().__init__()
        self.preview, self.who, self.question = preview, who, question

    async def post(self, message: Answer | str) -> None:
        await super().post(message)
        if isinstance(message, Answer):
            self.preview.answer(self.who, self.question, message)

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        await super().ask_approval(approval)
        self.preview.approval(f"approval {approval.id} (pending)", approval)


class PreviewNotifier(TerminalNotifier):
    """The terminal's notifier, also previewing each decision on an approval and its outcome in the thread."""

    def __init__(self, preview: Preview):
        self.preview = preview

    async def approval_changed(self, approval: ApprovalRecord, conversation: Conversation | None) -> None:
        await super().approval_changed(approval, conversation)
        self.preview.approval(f"approval {approval.id}: {approval.status}", approval)
        self.preview.outcome(approval)


class Tour:
    """One thread in the terminal: questions from `you`, decisions from `lead`, everything also previewed."""

    def __init__(self, runtime: Any, preview: Preview):
        self.runtime = runtime
        self.preview = preview
        self.thread = new_id("demo")
        runtime.add_notifier(PreviewNotifier(preview))

    def port(self, text: str, user: str = YOU) -> PreviewPort:
        return PreviewPort(self.preview, user, text)

    async def ask(self, text: str, user: str = YOU) -> Answer:
        print(f"\n{user}> {text}", flush=True)
        port = self.port(text, user)
        key = ConversationKey("cli", "local", "terminal", self.thread)  # the thread `srebot chat` continues
        self.runtime.dispatcher.submit(Request(key=key, user=user, text=text, port=port))
        answer = await asyncio.wait_for(port.answer, TURN_TIMEOUT)
        await self.runtime.dispatcher.wait_idle()
        return answer

    async def approve(self, approval_id: str, user: str = LEAD) -> None:
        print(f"\n{user}> approve {approval_id}", flush=True)
        decision = await self.runtime.approvals.decide(approval_id, user, "approve", platform="cli")
        print(decision.message, flush=True)


def _say(text: str) -> None:
    print(f"\n── {text}", flush=True)


async def run_demo(*, out: Path, interactive: bool) -> int:
    from bot.app import Runtime
    from bot.chat import run_chat

    print(INTRO, flush=True)
    preview = Preview(out)
    with tempfile.TemporaryDirectory(prefix="srebot-demo-") as tmp:
        async with shop(Path(tmp)) as world:
            runtime = Runtime(world.settings)
            await runtime.start()
            # the Kubernetes client's models load once, seconds on a busy laptop: before the first question, so
            # its timings are the shop's and not Python's imports
            await runtime.toolbox.warm_up()
            try:
                tour = Tour(runtime, preview)
                _say(f"You are “{YOU}”, on call. Ask what is wrong:")
                diagnosis = await tour.ask("why is checkout failing?")
                proposed = [r for r in diagnosis.recommendations if r.approval_id and r.action and r.action.kind == "rollback"]
                if not proposed:
                    _say("The diagnosis proposed no rollback; ask for one:")
                    answer = await tour.ask("rollback checkout")
                    proposed = [r for r in answer.recommendations if r.approval_id]
                if proposed and proposed[0].approval_id:
                    _say(f"Nothing changes until someone else approves. “{LEAD}” (in SREBOT_APPROVERS) approves "
                         "the rollback; it runs once:")
                    await tour.approve(proposed[0].approval_id)
                    for patch in world.kube.patches:
                        print(f"   the simulated cluster received: PATCH {patch.path}", flush=True)
                page = preview.write()
                _say(f"What Slack and Teams would show: {page} (payloads next to it)")
                if interactive:
                    _say(f"Your turn, in the same thread — try “logs checkout”, “what changed?”, “scale catalog 3”, "
                         f"then “approve ID as {LEAD}”; the preview follows. An empty line ends the demo.")
                    await run_chat(runtime, tour.thread, YOU, port=tour.port)
                    _say(f"The whole thread, as Slack and Teams would show it: {page}")
            finally:
                await runtime.stop()
    return 0
