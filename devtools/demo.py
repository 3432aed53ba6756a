"""`srebot demo`: the bot's job in five minutes, with nothing configured and nothing real touched.

A simulated shop runs on 127.0.0.1 — Prometheus, Loki, a Kubernetes API server and the SRE control plane, the
loopback fakes of devtools/loopback — in the middle of an incident: checkout v2.1.0 rolled out ten minutes ago,
its pods crash-loop and its error rate is 8 %. The real runtime (dispatcher, engine, approvals, a SQLite file in
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.answer import Answer
from bot.config import Settings, load_settings
from bot.ports import ApprovalRecord, ConversationKey, Request, new_id
from bot.terminal import TerminalPort
from bot.toolbox import service_ref
from devtools.deployments import Clock, DeploymentSpec, EventSpec, KubernetesSpec, PodSpec, RevisionSpec, load_kubernetes
from devtools.loopback.control_plane import ControlPlaneFake, rfc3339
from devtools.loopback.kube import KubeFake
from devtools.loopback.loki import FakeLoki
from devtools.loopback.prometheus import PrometheusFake

YOU, LEAD = "you", "lead"
SERVICE, NAMESPACE = "checkout", "shop"
OLD, NEW = "registry.example/shop/checkout:v2.0.3", "registry.example/shop/checkout:v2.1.0"
TURN_TIMEOUT = 60.0
INTRO = (
    "srebot demo — a simulated shop on 127.0.0.1 (Prometheus, Loki, Kubernetes and the control plane are loopback\n"
    "fakes; nothing real is touched). checkout v2.1.0 rolled out ten minutes ago; its pods crash-loop and 8 % of\n"
    "its requests fail. The real srebot runtime answers below."
)


# --- the simulated shop ---------------------------------------------------------------------------
def _cluster() -> KubernetesSpec:
    crash = dict(ready=False, restarts=4, waiting="CrashLoopBackOff", message="back-off 40s restarting failed container",
                 exit_code=1, reason="Error",
                 previous_log="INFO starting checkout v2.1.0\nERROR panic: nil pointer dereference in cart.Total\n")
    return KubernetesSpec(deployments=[
        DeploymentSpec(name=SERVICE, namespace=NAMESPACE, replicas=3, revisions=[
            RevisionSpec(revision=6, image=OLD, created="-6d", pods=[PodSpec(ready=True, terminating="-20s")]),
            RevisionSpec(revision=7, image=NEW, created="-10m", pods=[
                PodSpec(count=2, finished="-45s", node="node-1", **crash),
                PodSpec(count=1, finished="-50s", node="node-2", **crash),
            ]),
        ], events=[EventSpec(on="pods:7", reason="BackOff", message="Back-off restarting failed container checkout",
                             last_seen="-30s", count=9)]),
        DeploymentSpec(name="catalog", namespace=NAMESPACE, replicas=2, revisions=[
            RevisionSpec(revision=3, image="registry.example/shop/catalog:v1.4.2", created="-2d", pods=[PodSpec(count=2)]),
        ]),
    ])


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
    kube: KubeFake
    control_plane: ControlPlaneFake


@asynccontextmanager
async def shop(root: Path) -> AsyncIterator[Shop]:
    """The simulated shop, serving on 127.0.0.1, and the Settings that point srebot at it."""
    now = datetime.now(UTC)
    prometheus, loki, kube, cp = PrometheusFake(), FakeLoki(), KubeFake(), ControlPlaneFake()
    load_kubernetes(kube, _cluster(), Clock(now))
    every = timedelta(seconds=10)
    loki.add({"namespace": NAMESPACE, "app": SERVICE}, [
        (now - timedelta(minutes=8) + n * every, f"ERROR panic: nil pointer dereference in cart.Total order={n}")
        for n in range(48)
    ])
    cp.add_incident("Checkout error rate above 5%", severity="critical", affected=[SERVICE],
                    created=now - timedelta(minutes=6))
    cp.audit_logs.append({
        "id": "audit-1", "timestamp": rfc3339(now - timedelta(minutes=11)), "user_id": "u-alice", "username": "alice",
        "action": "update", "resource_type": "deployment", "resource_id": f"res-{SERVICE}", "resource_name": SERVICE,
        "changes": {"image": {"from": OLD.rsplit("/", 1)[-1], "to": NEW.rsplit("/", 1)[-1]}}, "result": "success",
    })
    config = root / "srebot.toml"
    config.write_text("")  # the shop is the whole configuration: never a srebot.toml of the current directory
    catalog: dict[str, Any] = {
        "services": {SERVICE: {"namespace": NAMESPACE, "aliases": ["checkout-api"]},
                     "catalog": {"namespace": NAMESPACE}},
        "defaults": {"namespace": NAMESPACE, "window": "15m"},
    }
    await prometheus.start()
    await loki.start()
    await kube.start()
    await cp.start()
    try:
        settings = load_settings(env={
            "DATABASE_URL": f"sqlite+aiosqlite:///{root / 'demo.db'}",
            "SREBOT_APPROVERS": LEAD,
            "SREBOT_COST": "off",
            "PROMETHEUS_URL": prometheus.url,
            "LOKI_URL": loki.url,
            "KUBECONFIG": kube.kubeconfig_path,
            "SREBOT_KUBE_CONTEXT": kube.context,
            "CONTROL_PLANE_URL": cp.url,
            "CONTROL_PLANE_TOKEN_URL": cp.token_url,
            "CONTROL_PLANE_CLIENT_ID": cp.client_id,
            "CONTROL_PLANE_CLIENT_SECRET": cp.client_secret,
        }, config_path=str(config), **catalog)
        for name, profiles in _profiles(now).items():
            prometheus.add_service(service_ref(settings, settings.services[name]), profiles)
        yield Shop(settings, kube, cp)
    finally:
        await cp.stop()
        await kube.stop()
        await loki.close()
        await prometheus.close()


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
        self.entries.append((f"{who}: {question}", slack, cards.answer_cards(answer)))

    def approval(self, title: str, approval: ApprovalRecord) -> None:
        from integrations.slack import blocks
        from integrations.teams import cards

        message = blocks.approval_request(approval) if approval.status == "pending" else blocks.approval_decided(approval)
        self.entries.append((title, [{"text": message.text, "blocks": message.blocks}], [cards.approval_card(approval)]))

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
class Tour:
    """One thread in the terminal: questions from `you`, decisions from `lead`, everything also previewed."""

    def __init__(self, runtime: Any, preview: Preview):
        self.runtime = runtime
        self.preview = preview
        self.thread = new_id("demo")

    async def ask(self, text: str, user: str = YOU) -> Answer:
        print(f"\n{user}> {text}", flush=True)
        port = TerminalPort()
        key = ConversationKey("cli", "local", "terminal", self.thread)  # the thread `srebot chat` continues
        self.runtime.dispatcher.submit(Request(key=key, user=user, text=text, port=port))
        answer = await asyncio.wait_for(port.answer, TURN_TIMEOUT)
        await self.runtime.dispatcher.wait_idle()
        self.preview.answer(user, text, answer)
        for approval in port.approvals:
            self.preview.approval(f"approval {approval.id} (pending)", approval)
        return answer

    async def approve(self, approval_id: str, user: str = LEAD) -> None:
        print(f"\n{user}> approve {approval_id}", flush=True)
        decision = await self.runtime.approvals.decide(approval_id, user, "approve", platform="cli")
        print(decision.message, flush=True)
        if decision.approval is not None:
            self.preview.approval(f"approval {approval_id} after {user}'s decision", decision.approval)


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
                         f"then “approve ID as {LEAD}”. An empty line ends the demo.")
                    await run_chat(runtime, tour.thread, YOU)
            finally:
                await runtime.stop()
    return 0
