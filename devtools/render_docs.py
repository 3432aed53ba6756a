"""`python -m devtools.render_docs [--out docs/pictures]`: every message type as a person sees it, for the README.

Real answers come from the engine (the eval scenarios through `devtools.eval.run_world`), are rendered by the
real Slack and Teams renderers (`integrations.slack.blocks`, `integrations.teams.cards`), drawn as HTML and
photographed with headless Chromium. The Teams cards are drawn by the Adaptive Cards JavaScript renderer (npm
`adaptivecards`, installed with npm into ~/.cache on first use) with Teams' palette as its host config. Slack
publishes no offline renderer: the Block Kit HTML is our own, for the subset srebot uses, with the Slack client's
colours, sizes and spacing. Fonts are the system's (emoji need `fonts-noto-color-emoji`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from bot.alerts.payload import Alert
from bot.alerts.view import AlertView, Link
from bot.answer import Answer
from bot.ports import Overview, RecentAlert
from bot.chart import draw
from devtools.eval import run_world
from integrations.slack import blocks
from integrations.slack.alerts import alert_message
from integrations.slack.port import chart_filename
from integrations.slack.surface import home_view
from integrations.teams.alerts import alert_card
from integrations.teams.cards import (
    CHART_COLOURS, CHART_HEIGHT, CHART_WIDTH, ApprovalView, answer_cards, approval_card,
)
from sessions.store import ApprovalRecord, ConversationKey, TurnRecord, TurnState, utcnow

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "eval" / "scenarios"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--allow-file-access-from-files",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
PHONE_WIDTH = 420  # a phone in portrait, in CSS pixels
CARD_WIDTH = 520
USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol"}


# --- the answers ------------------------------------------------------------------------------------
@dataclass
class Samples:
    diagnosis: Answer
    healthy: Answer
    backend_down: Answer
    pods: Answer
    approval: ApprovalRecord
    decided: ApprovalRecord
    charts: dict[str, bytes] = field(default_factory=dict)


ATTEMPTS = 3


async def answer_of(path: Path, *, all_backends: bool = True) -> Answer:
    """The world's last answer. On a busy machine a backend may miss its deadline and the picture would show an
    outage that is not the scenario's: such an answer is asked again, and never drawn."""
    missed: list[str] = []
    for _ in range(ATTEMPTS):
        result = await run_world(path)
        if not result.answers:
            raise SystemExit(f"{path.name} gave no answer: {result.reasons}")
        answer = result.answers[-1]
        missed = [f"{t.name}: {t.error}" for t in answer.tools if not t.ok]
        if not all_backends or not missed:
            return answer.model_copy(update={"request_id": "req_4f1c2a9b7e6d5c3b2a190817"})
    raise SystemExit(f"{path.name}: backends failed in {ATTEMPTS} attempts ({'; '.join(missed)}); is the machine busy?")


def asked_again(world: Path, question: str, into: Path) -> Path:
    """A copy of a scenario's world asked another question."""
    shutil.copytree(world, into)
    spec = into / "scenario.yaml"
    spec.write_text(re.sub(r"(?m)^question: .*$", f"question: {question}", spec.read_text()))
    return into


async def samples(tmp: Path) -> Samples:
    # the bad rollout's world, asked for its pods
    pods_world = asked_again(SCENARIOS / "01-bad-rollout", "pods checkout", tmp / "pods")
    # one after the other: a scenario's world (ports, database) is set up for it alone
    diagnosis = await answer_of(SCENARIOS / "01-bad-rollout")
    healthy = await answer_of(SCENARIOS / "06-noisy-but-healthy")
    down = await answer_of(SCENARIOS / "08-backend-outage", all_backends=False)
    pods = await answer_of(pods_world)
    rollback = next(r for r in diagnosis.recommendations if r.action is not None and r.action.kind == "rollback")
    now = utcnow()
    approval = ApprovalRecord(
        id=rollback.approval_id or "apr_6d1f0c2b9a8e7d6c5b4a3928", kind=rollback.action.kind,  # type: ignore[union-attr]
        target=rollback.action.target, params={},  # type: ignore[union-attr]
        description="roll back shop/checkout: image v2.1.0 → v2.0.3 (revision 7 → 6)", requester="U0ALICE",
        platform="slack", status="pending", session_id="s_1", request_id=diagnosis.request_id, created_at=now,
        expires_at=now + timedelta(minutes=30))
    decided = ApprovalRecord(**{**vars(approval), "status": "executed", "decided_by": "U0BOB",
                                "decided_at": now + timedelta(minutes=2), "finished_at": now + timedelta(minutes=2),
                                "result": "rolled back to revision 6 (v2.0.3); 3/3 pods ready"})
    return Samples(diagnosis, healthy, down, pods, approval, decided)


def home_page(s: Samples, alert: AlertView) -> str:
    """The App Home as the approver bob sees it: the alerts (one firing, one resolved), the rollback waiting for him,
    and alice's question being worked on."""
    now = utcnow()
    resolved = replace(alert, group_id="alg_1e0d9c8b7a6f", status="resolved",
                       alerts=tuple(replace(a, labels={**a.labels, "alertname": "CatalogLatencyHigh",
                                                       "severity": "warning", "service": "catalog"})
                                    for a in alert.alerts),
                       service="catalog", since=now - timedelta(hours=3), resolved_at=now - timedelta(hours=2, minutes=38))
    overview = Overview(
        investigations=[TurnRecord(1, "s_1", "req_2", "U0ALICE", "and its logs since the rollout?", TurnState.RUNNING,
                                   created_at=now - timedelta(seconds=20))],
        approvals=[(s.approval, True)],
        alerts=[RecentAlert(alert, ConversationKey("slack", "T0SHOP", "C0ALERTS", "1764770000.000100"), now),
                RecentAlert(resolved, ConversationKey("slack", "T0SHOP", "C0ALERTS", "1764760000.000100"), now)],
    )
    links = {alert.group_id: "https://shop.slack.com/archives/C0ALERTS/p1764770000000100",
             resolved.group_id: "https://shop.slack.com/archives/C0ALERTS/p1764760000000100"}
    return '<div class="home">' + "".join(slack_block(b) for b in home_view(overview, now=now, links=links)["blocks"]) + "</div>"


def firing_alert(diagnosis: Answer) -> AlertView:
    """The alert whose thread the diagnosis answers: the bad rollout's error rate, firing since its onset."""
    since = diagnosis.since or utcnow() - timedelta(minutes=6)
    labels = {"alertname": "CheckoutHighErrorRate", "severity": "critical", "service": "checkout", "namespace": "shop"}
    fired = Alert("fp-1", "firing", labels, {"summary": "5xx ratio above 5% for 5 minutes"}, since,
                  url="http://prometheus:9090/graph?g0.expr=job%3Acheckout%3Aerror_ratio")
    return AlertView(group_id="alg_3f9c2b7a1d5e", status="firing", alerts=(fired,), service="checkout",
                     service_known=True, since=since, resolved_at=None, truncated=0,
                     links=(Link("Runbook", "https://wiki.example/runbooks/checkout"),
                            Link("Alertmanager", "http://alertmanager:9093")))


# --- Slack: Block Kit as the Slack client shows it -------------------------------------------------------
SLACK_CSS = """
body { margin: 0; background: #fff; font: 15px/1.46668 -apple-system, 'Segoe UI', 'Noto Sans', 'DejaVu Sans', sans-serif;
       color: #1d1c1d; width: %(width)dpx; }
.msg { display: flex; padding: 8px 16px 8px 12px; }
.avatar { width: 36px; height: 36px; border-radius: 6px; background: #1d3557; color: #fff; font-weight: 700;
          display: flex; align-items: center; justify-content: center; margin-right: 8px; flex: none; font-size: 13px; }
.avatar.person { background: #e8912d; }
.body { flex: 1; min-width: 0; }
.who { font-weight: 900; } .app { font-size: 10px; background: #e8e8e8; color: #616061; padding: 1px 3px;
       border-radius: 2px; margin-left: 4px; font-weight: 700; vertical-align: 2px; } .time { color: #616061; font-size: 12px; margin-left: 6px; }
.header { font-size: 18px; font-weight: 900; margin: 4px 0 2px; }
.section { margin: 4px 0; white-space: pre-wrap; word-wrap: break-word; }
.context { color: #616061; font-size: 12px; margin: 4px 0; white-space: pre-wrap; }
.divider { border-top: 1px solid #dddddd; margin: 8px 0; }
.actions { margin: 8px 0 4px; display: flex; flex-wrap: wrap; gap: 8px; }
.button { border: 1px solid #bbbabb; border-radius: 4px; padding: 3px 12px; font-weight: 700; font-size: 13px;
          line-height: 24px; background: #fff; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
          max-width: 100%%; box-sizing: border-box; }
.button.primary { background: #007a5a; color: #fff; border-color: #007a5a; }
.button.danger { background: #e01e5a; color: #fff; border-color: #e01e5a; }
.feedback { display: flex; gap: 4px; margin: 4px 0; } .feedback span { border: 1px solid #ddd; border-radius: 4px;
          padding: 0 6px; font-size: 13px; color: #616061; }
code { font-family: Monaco, 'DejaVu Sans Mono', monospace; font-size: 12px; color: #e01e5a; background: #f8f8f8;
       border: 1px solid #e8e8e8; border-radius: 3px; padding: 1px 3px; }
pre { font-family: Monaco, 'DejaVu Sans Mono', monospace; font-size: 12px; background: #f8f8f8; border: 1px solid #e8e8e8;
      border-radius: 4px; padding: 8px; white-space: pre-wrap; word-break: break-all; margin: 4px 0; }
blockquote { border-left: 4px solid #dddddd; margin: 0; padding-left: 12px; color: #1d1c1d; }
a { color: #1264a3; text-decoration: none; } .mention { color: #1264a3; background: #e8f5fa; border-radius: 3px; padding: 0 2px; }
.tablewrap { overflow-x: auto; margin: 6px 0; border: 1px solid #dddddd; border-radius: 6px; }
table { border-collapse: collapse; font-size: 13px; width: 100%%; } td { border-bottom: 1px solid #eeeeee; padding: 4px 8px;
  white-space: nowrap; }
tr:first-child td { font-weight: 700; background: #f8f8f8; }
.file { border: 1px solid #dddddd; border-radius: 8px; overflow: hidden; margin-top: 4px; width: 100%%; }
.file img { width: 100%%; display: block; } .file .name { font-size: 12px; color: #616061; padding: 4px 8px; }
.home { padding: 8px 16px; }
.thread { color: #616061; font-size: 13px; padding: 8px 16px; border-bottom: 1px solid #dddddd; font-weight: 700; }
"""


EMOJI = {":raised_hand:": "✋", ":warning:": "⚠️", ":information_source:": "ℹ️", ":hourglass_flowing_sand:": "⏳"}


def mrkdwn(text: str) -> str:
    """Slack mrkdwn (already escaped with &amp; &lt; &gt;) as HTML."""
    text = re.sub(r":[a-z_]+:", lambda m: EMOJI.get(m[0], m[0]), text)
    text = re.sub(r"<@([UW][A-Z0-9]+)>", lambda m: f'<span class="mention">@{USERS.get(m[1], m[1])}</span>', text)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r'<a href="\1">\2</a>', text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"<i>\1</i>", text)
    lines = [f"<blockquote>{line[1:]}</blockquote>" if line.startswith(">") else line for line in text.split("\n")]
    return "\n".join(lines).replace("</blockquote>\n<blockquote>", "<br>")


def slack_block(block: dict[str, Any]) -> str:
    kind = block["type"]
    if kind == "header":
        return f'<div class="header">{html.escape(block["text"]["text"])}</div>'
    if kind == "section":
        return f'<div class="section">{mrkdwn(block["text"]["text"])}</div>'
    if kind == "context":
        return '<div class="context">' + " ".join(mrkdwn(e["text"]) for e in block["elements"]) + "</div>"
    if kind == "divider":
        return '<div class="divider"></div>'
    if kind == "actions":
        buttons = "".join(f'<span class="button {e.get("style", "")}">{html.escape(e["text"]["text"])}</span>'
                          for e in block["elements"])
        return f'<div class="actions">{buttons}</div>'
    if kind == "context_actions":
        return '<div class="feedback"><span>👍</span><span>👎</span></div>'
    if kind == "rich_text":
        return "".join(f'<pre>{html.escape(run["text"])}</pre>' for element in block["elements"]
                       for run in element["elements"])
    if kind == "table":
        settings = block.get("column_settings") or []

        def td(index: int, cell: dict[str, Any]) -> str:
            text = cell["text"] if cell["type"] == "raw_text" else "".join(
                run["text"] for section in cell["elements"] for run in section["elements"])
            setting = (settings[index] or {}) if index < len(settings) else {}
            wrap = "white-space:normal;min-width:12em" if setting.get("is_wrapped") else ""
            return f'<td style="text-align:{setting.get("align", "left")};{wrap}">{html.escape(text)}</td>'

        rows = "".join("<tr>" + "".join(td(i, c) for i, c in enumerate(row)) + "</tr>" for row in block["rows"])
        return f'<div class="tablewrap"><table>{rows}</table></div>'
    raise ValueError(f"no HTML for Slack block {kind!r}")


def slack_message(message_blocks: list[dict[str, Any]], *, who: str = "srebot", time: str = "10:56",
                  image: bytes | None = None, image_name: str = "") -> str:
    person = who != "srebot"
    badge = "" if person else '<span class="app">APP</span>'
    body = "".join(slack_block(b) for b in message_blocks)
    if image is not None:
        body += (f'<div class="file"><img src="data:image/png;base64,{base64.b64encode(image).decode()}">'
                 f'<div class="name">{html.escape(image_name)}</div></div>')
    initials = who[:2].upper() if person else "SR"
    return (f'<div class="msg"><div class="avatar{" person" if person else ""}">{initials}</div><div class="body">'
            f'<div><span class="who">{html.escape(who)}</span>{badge}<span class="time">{time}</span></div>'
            f"{body}</div></div>")


def slack_page(messages: list[str], title: str = "Thread") -> str:
    return (f"<html><head><meta charset='utf-8'><style>{SLACK_CSS % {'width': PHONE_WIDTH}}</style></head><body>"
            f'<div class="thread">{html.escape(title)}</div>{"".join(messages)}</body></html>')


def asked(text: str) -> str:
    return slack_message([{"type": "section", "text": {"type": "mrkdwn", "text": text}}], who="alice", time="10:55")


# --- Teams: Adaptive Cards as the Teams client shows them --------------------------------------------
# The Adaptive Cards JavaScript renderer (npm `adaptivecards`), which HTML hosts draw cards with; installed with npm
# into a cache directory on first use, never part of the repository.
ADAPTIVECARDS = "adaptivecards@3.0.6"
CACHE = Path.home() / ".cache" / "srebot" / "render-docs"
# Teams' light theme, as far as a host config says it: its palette for container styles and text colours
TEAMS_HOST_CONFIG: dict[str, Any] = {
    "fontFamily": "'Segoe UI', 'Noto Sans', 'DejaVu Sans', sans-serif",
    "fontSizes": {"small": 12, "default": 14, "medium": 18, "large": 21, "extraLarge": 24},
    "fontWeights": {"lighter": 200, "default": 400, "bolder": 600},
    "spacing": {"small": 4, "default": 8, "medium": 16, "large": 20, "extraLarge": 24, "padding": 16},
    "separator": {"lineThickness": 1, "lineColor": "#E0E0E0"},
    "actions": {"maxActions": 6, "buttonSpacing": 8, "actionsOrientation": "Horizontal", "showCard": {
        "actionMode": "Inline", "inlineTopMargin": 8}},
    "containerStyles": {
        name: {"backgroundColor": background, "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#616161"},
            "accent": {"default": "#5B5FC7", "subtle": "#5B5FC7"},
            "good": {"default": "#237B4B", "subtle": "#237B4B"},
            "warning": {"default": "#835C00", "subtle": "#835C00"},
            "attention": {"default": "#C4314B", "subtle": "#C4314B"}}}
        for name, background in (("default", "#FFFFFF"), ("emphasis", "#F5F5F5"), ("accent", "#E8EBFA"),
                                  ("good", "#E7F2DA"), ("attention", "#FDF3F4"), ("warning", "#FBF6D9"))
    },
}
TEAMS_CSS = """
body { margin: 0; background: #f5f5f5; width: %(width)dpx; padding: 12px; }
.card { background: #fff; border-radius: 6px; box-shadow: 0 1px 3px rgba(0,0,0,.15); overflow: hidden; margin-bottom: 12px; }
.ac-pushButton { border: 1px solid #d1d1d1; border-radius: 4px; padding: 5px 12px; font: 600 14px 'Segoe UI', 'Noto Sans',
  sans-serif; background: #fff; color: #242424; }
.ac-pushButton.style-positive { background: #5b5fc7; color: #fff; border-color: #5b5fc7; }
.ac-pushButton.style-destructive { color: #c4314b; }
a { color: #5b5fc7; text-decoration: none; }
"""
# Teams' markdown subset, enough for srebot's cards: **bold**, _italic_, [links](url); everything else as text
MARKDOWN_JS = r"""
AdaptiveCards.AdaptiveCard.onProcessMarkdown = function (text, result) {
  var out = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  out = out.replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>").replace(/(^|\s)_([^_]+)_(?=\s|$)/g, "$1<i>$2</i>");
  out = out.replace(/\[([^\]]+)\]\(([^)]+)\)/g, '<a href="$2">$1</a>');
  result.outputHtml = out; result.didProcess = true;
};
"""


def adaptivecards_bundle(cache: Path = CACHE) -> Path:
    """The renderer's browser bundle, installed with npm on first use."""
    bundle = cache / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.min.js"
    if not bundle.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), ADAPTIVECARDS],
                       check=True, capture_output=True, timeout=600)
    return bundle


def expand(element: Any) -> Any:
    """A card as it looks after "Show details": hidden elements shown, the toggle gone."""
    if isinstance(element, list):
        return [expand(e) for e in element if not (isinstance(e, dict) and e.get("type") == "Action.ToggleVisibility")]
    if isinstance(element, dict):
        return {k: expand(v) for k, v in element.items() if not (k == "isVisible" and v is False)}
    return element


def card_page(cards: list[dict[str, Any]], bundle: Path, *, expanded: bool = False) -> str:
    """The cards drawn by the Adaptive Cards renderer with Teams' palette, one under the other."""
    shown = [expand(c) if expanded else c for c in cards]
    script = (f"{MARKDOWN_JS}var config = new AdaptiveCards.HostConfig({json.dumps(TEAMS_HOST_CONFIG)});"
              f"{json.dumps(shown, ensure_ascii=False)}.forEach(function (payload) {{"
              "var card = new AdaptiveCards.AdaptiveCard(); card.hostConfig = config; card.parse(payload);"
              "var box = document.createElement('div'); box.className = 'card'; box.appendChild(card.render());"
              "document.body.appendChild(box); });")
    return (f"<html><head><meta charset='utf-8'><style>{TEAMS_CSS % {'width': CARD_WIDTH}}</style>"
            f"<script src='{bundle.as_uri()}'></script></head><body><script>{script}</script></body></html>")


# --- photographing ---------------------------------------------------------------------------------
def screenshot(page: str, out: Path, width: int, browser: str, tmp: Path) -> None:
    """The page in headless Chromium (a fresh profile each time), cropped to its content."""
    source = tmp / f"{out.stem}.html"
    source.write_text(page, encoding="utf-8")
    raw = tmp / f"{out.stem}.raw.png"
    profile = tempfile.mkdtemp(dir=tmp)
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={raw}",
                    f"--window-size={width},4000", source.as_uri()], check=True, capture_output=True, timeout=120)
    image = Image.open(raw).convert("RGB")
    background = image.getpixel((image.width - 1, image.height - 1))
    bottom = image.height
    pixels = image.load()
    while bottom > 1 and all(pixels[x, bottom - 1] == background for x in range(0, image.width, 3)):
        bottom -= 1
    image.crop((0, 0, image.width, min(image.height, bottom + 12))).save(out, optimize=True)


def pages(s: Samples, bundle: Path) -> dict[str, tuple[str, int]]:
    """Every message type, for Slack and Teams: file stem → (HTML, width)."""
    chart = draw(s.diagnosis.chart) if s.diagnosis.chart else None
    small = draw(s.diagnosis.chart, width=CHART_WIDTH, height=CHART_HEIGHT, colours=CHART_COLOURS) if s.diagnosis.chart else None
    slack_answer = blocks.answer_blocks(s.diagnosis)
    alert = firing_alert(s.diagnosis)
    chart_name = chart_filename(s.diagnosis)
    out: dict[str, tuple[str, int]] = {
        "slack-diagnosis": (slack_page([asked("<@UBOT> why is checkout failing?"), slack_message(slack_answer),
                                        *([slack_message([], image=chart, image_name=chart_name)] if chart else []),
                                        slack_message(blocks.approval_request(s.approval).blocks)]), PHONE_WIDTH),
        "slack-details": (slack_page([slack_message(m.blocks) for m in blocks.render_details(s.diagnosis).messages],
                                     "Show details"), PHONE_WIDTH),
        "slack-approval-request": (slack_page([slack_message(blocks.approval_request(s.approval).blocks)]), PHONE_WIDTH),
        "slack-approval-decided": (slack_page([slack_message(blocks.approval_decided(s.decided).blocks),
                                               slack_message(blocks.render_mrkdwn(blocks.approval_outcome(s.decided) or "").messages[0].blocks, time="10:58")]),
                                   PHONE_WIDTH),
        "slack-healthy": (slack_page([asked("<@UBOT> diagnose catalog"), slack_message(blocks.answer_blocks(s.healthy))]), PHONE_WIDTH),
        "slack-backend-down": (slack_page([asked("<@UBOT> diagnose catalog"),
                                           slack_message(blocks.answer_blocks(s.backend_down))]), PHONE_WIDTH),
        "slack-alert-thread": (slack_page([slack_message(alert_message(alert).blocks, time="10:50"),
                                           slack_message(blocks.answer_blocks(s.diagnosis), time="10:51")],
                                          "#alerts · thread"), PHONE_WIDTH),
        "slack-app-home": (slack_page([home_page(s, alert)], "srebot · Home"), PHONE_WIDTH),
        "slack-pods-table": (slack_page([asked("<@UBOT> pods checkout"), slack_message(blocks.answer_blocks(s.pods))]),
                             PHONE_WIDTH),
        "teams-diagnosis": (card_page(answer_cards(s.diagnosis, small)[:1], bundle), CARD_WIDTH + 24),
        "teams-details": (card_page(answer_cards(s.diagnosis, small), bundle, expanded=True), CARD_WIDTH + 24),
        # the approval as an eligible approver sees it (their own view, with the buttons), and once decided
        "teams-approval-request": (card_page([approval_card(s.approval, names=USERS, view=ApprovalView(
            can_approve=True, can_reject=True))], bundle), CARD_WIDTH + 24),
        "teams-approval-decided": (card_page([approval_card(s.decided, names=USERS)], bundle), CARD_WIDTH + 24),
        "teams-healthy": (card_page(answer_cards(s.healthy), bundle), CARD_WIDTH + 24),
        "teams-backend-down": (card_page(answer_cards(s.backend_down), bundle), CARD_WIDTH + 24),
        "teams-alert-thread": (card_page([alert_card(alert), *answer_cards(s.diagnosis)[:1]], bundle), CARD_WIDTH + 24),
        "teams-pods-table": (card_page(answer_cards(s.pods), bundle), CARD_WIDTH + 24),
    }
    return out


async def render(out: Path, browser: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="srebot-docs-") as name:
        tmp = Path(name)
        made = []
        for stem, (page, width) in pages(await samples(tmp), adaptivecards_bundle()).items():
            target = out / f"{stem}.png"
            await asyncio.to_thread(screenshot, page, target, width, browser, tmp)
            made.append(target)
        return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "pictures"), help="where the PNGs go")
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    args = parser.parse_args(argv)
    for path in asyncio.run(render(Path(args.out), args.browser)):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
