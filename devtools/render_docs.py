"""`python -m devtools.render_docs [--out docs/pictures]`: every message type as a person sees it, for the README.

Real answers come from the engine (the eval scenarios through `devtools.eval.run_world`), are rendered by the
real Slack and Teams renderers (`integrations.slack.blocks`, `integrations.teams.cards`), drawn as HTML here and
photographed with headless Chromium. The HTML is our own renderer for the subset of Block Kit and Adaptive
Cards that srebot uses: the `adaptivecards` package on PyPI only authors cards, it cannot render them, and
Slack publishes no offline renderer. Colours, sizes and spacing follow the two clients; fonts are the system's.
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
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from bot.answer import Answer
from bot.chart import draw
from devtools.eval import run_world
from integrations.slack import blocks
from integrations.teams.cards import CHART_COLOURS, CHART_HEIGHT, CHART_WIDTH, answer_cards, approval_card
from sessions.store import ApprovalRecord, utcnow

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "eval" / "scenarios"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
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
    alerts: Answer
    pods: Answer
    approval: ApprovalRecord
    decided: ApprovalRecord
    charts: dict[str, bytes] = field(default_factory=dict)


async def answer_of(path: Path) -> Answer:
    result = await run_world(path)
    if not result.answers:
        raise SystemExit(f"{path.name} gave no answer: {result.reasons}")
    return result.answers[-1].model_copy(update={"request_id": "req_4f1c2a9b7e6d5c3b2a190817"})


def asked_again(world: Path, question: str, into: Path) -> Path:
    """A copy of a scenario's world asked another question."""
    shutil.copytree(world, into)
    spec = into / "scenario.yaml"
    spec.write_text(re.sub(r"(?m)^question: .*$", f"question: {question}", spec.read_text()))
    return into


async def samples(tmp: Path) -> Samples:
    # the bad rollout's world, asked about its firing alerts (one the control plane reports), and for its pods
    alerts_world = asked_again(SCENARIOS / "01-bad-rollout", "what alerts are firing?", tmp / "alerts")
    pods_world = asked_again(SCENARIOS / "01-bad-rollout", "pods checkout", tmp / "pods")
    plane = json.loads((alerts_world / "control_plane.json").read_text())
    plane["alerts"] = [{"id": "al-1", "name": "CheckoutErrorRate", "severity": "P1", "status": "firing",
                        "resource_name": "checkout", "message": "5xx ratio above 5% for 5 minutes",
                        "fired_at": "@-360", "resolved_at": None}]
    (alerts_world / "control_plane.json").write_text(json.dumps(plane))
    # one after the other: a scenario's world (ports, database) is set up for it alone
    diagnosis = await answer_of(SCENARIOS / "01-bad-rollout")
    healthy = await answer_of(SCENARIOS / "06-noisy-but-healthy")
    down = await answer_of(SCENARIOS / "08-backend-outage")
    alerts = await answer_of(alerts_world)
    pods = await answer_of(pods_world)
    rollback = next(r for r in diagnosis.recommendations if r.action is not None)
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
    return Samples(diagnosis, healthy, down, alerts, pods, approval, decided)


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
            align = (settings[index] or {}).get("align", "left") if index < len(settings) else "left"
            return f'<td style="text-align:{align}">{html.escape(text)}</td>'

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
TEAMS_CSS = """
body { margin: 0; background: #f5f5f5; font: 14px/1.43 'Segoe UI', 'Noto Sans', 'DejaVu Sans', sans-serif; color: #242424;
       width: %(width)dpx; padding: 12px; }
.card { background: #fff; border-radius: 6px; box-shadow: 0 1px 3px rgba(0,0,0,.15); padding: 16px; }
.tb { margin-top: 8px; white-space: pre-wrap; word-wrap: break-word; } .tb.none { margin-top: 0; } .tb.small { margin-top: 4px; }
.tb.medium { margin-top: 16px; }
.Bolder { font-weight: 600; } .sz-Small { font-size: 12px; } .sz-Medium { font-size: 17px; } .sz-Large { font-size: 21px; }
.subtle { opacity: .72; } .mono { font-family: Consolas, 'DejaVu Sans Mono', monospace; }
.c-Attention { color: #c4314b; } .c-Warning { color: #835c00; } .c-Good { color: #237b4b; } .c-Accent { color: #5b5fc7; }
.ct { margin: -16px -16px 8px; padding: 12px 16px; border-radius: 6px 6px 0 0; }
.st-attention { background: #fdf3f4; } .st-warning { background: #fbf6d9; } .st-good { background: #e7f2da; }
.st-emphasis { background: #f0f0f0; } .st-accent { background: #e8ebfa; }
img.chart { width: 100%%; margin-top: 12px; border-radius: 4px; }
.colset { display: flex; gap: 8px; } .col { min-width: 0; } .col .tb { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.right { text-align: right; }
.facts td { padding: 2px 12px 2px 0; vertical-align: top; } .facts td:first-child { font-weight: 600; }
.actions { display: flex; gap: 8px; margin-top: 16px; flex-wrap: wrap; }
.btn { border: 1px solid #d1d1d1; border-radius: 4px; padding: 5px 12px; font-weight: 600; background: #fff; }
.btn.positive { background: #5b5fc7; color: #fff; border-color: #5b5fc7; } .btn.destructive { color: #c4314b; }
a { color: #5b5fc7; text-decoration: none; }
"""


def card_markdown(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def _classes(element: dict[str, Any]) -> str:
    spacing = {"None": "none", "Small": "small", "Medium": "medium"}.get(element.get("spacing", ""), "")
    return " ".join(c for c in (spacing, "right" if element.get("horizontalAlignment") == "Right" else "", element.get("weight", ""), f"sz-{element['size']}" if "size" in element else "",
                                "subtle" if element.get("isSubtle") else "", f"c-{element['color']}" if "color" in element else "",
                                "mono" if element.get("fontType") == "Monospace" else "") if c)


def card_element(element: dict[str, Any], expanded: bool) -> str:
    kind = element["type"]
    if element.get("isVisible") is False and not expanded:
        return ""
    if kind == "TextBlock":
        return f'<div class="tb {_classes(element)}">{card_markdown(element["text"])}</div>'
    if kind == "RichTextBlock":
        runs = "".join(f'<span class="{_classes(run)}">{html.escape(run["text"])}</span>' for run in element["inlines"])
        return f'<div class="tb {_classes(element)}">{runs}</div>'
    if kind == "Container":
        inner = "".join(card_element(e, expanded) for e in element["items"])
        style = element.get("style")
        return f'<div class="ct st-{style}">{inner}</div>' if style else f"<div>{inner}</div>"
    if kind == "FactSet":
        rows = "".join(f"<tr><td>{html.escape(f['title'])}</td><td>{card_markdown(f['value'])}</td></tr>"
                       for f in element["facts"])
        return f'<table class="facts tb">{rows}</table>'
    if kind == "Image":
        return f'<img class="chart" src="{element["url"]}" alt="{html.escape(element.get("altText", ""))}">'
    if kind == "ColumnSet":
        columns = "".join(
            f'<div class="col" style="flex:{c["width"]} 1 0">{"".join(card_element(e, expanded) for e in c["items"])}</div>'
            for c in element["columns"])
        return f'<div class="colset {_classes(element)}">{columns}</div>'
    raise ValueError(f"no HTML for card element {kind!r}")


def card_page(cards: list[dict[str, Any]], *, expanded: bool = False) -> str:
    parts = []
    for card in cards:
        body = "".join(card_element(e, expanded) for e in card["body"])
        actions = "".join(f'<span class="btn {a.get("style", "")}">{html.escape(a["title"])}</span>'
                          for a in card.get("actions", []) if not (expanded and a["type"] == "Action.ToggleVisibility"))
        parts.append(f'<div class="card">{body}' + (f'<div class="actions">{actions}</div>' if actions else "") + "</div>")
    return (f"<html><head><meta charset='utf-8'><style>{TEAMS_CSS % {'width': CARD_WIDTH}}</style></head><body>"
            + "<div style='height:12px'></div>".join(parts) + "</body></html>")


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


def pages(s: Samples) -> dict[str, tuple[str, int]]:
    """Every message type, for Slack and Teams: file stem → (HTML, width)."""
    chart = draw(s.diagnosis.chart) if s.diagnosis.chart else None
    small = draw(s.diagnosis.chart, width=CHART_WIDTH, height=CHART_HEIGHT, colours=CHART_COLOURS) if s.diagnosis.chart else None
    slack_answer = blocks.answer_blocks(s.diagnosis)
    chart_name = f"{s.diagnosis.service}-error-rate.png"
    out: dict[str, tuple[str, int]] = {
        "slack-diagnosis": (slack_page([asked("<@UBOT> why is checkout failing?"), slack_message(slack_answer),
                                        slack_message([], image=chart, image_name=chart_name),
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
        "slack-alert-thread": (slack_page([asked("<@UBOT> what alerts are firing?"),
                                           slack_message(blocks.answer_blocks(s.alerts))]), PHONE_WIDTH),
        "slack-pods-table": (slack_page([asked("<@UBOT> pods checkout"), slack_message(blocks.answer_blocks(s.pods))]),
                             PHONE_WIDTH),
        "teams-diagnosis": (card_page(answer_cards(s.diagnosis, small)[:1]), CARD_WIDTH + 24),
        "teams-details": (card_page(answer_cards(s.diagnosis, small), expanded=True), CARD_WIDTH + 24),
        "teams-approval-request": (card_page([approval_card(s.approval)]), CARD_WIDTH + 24),
        "teams-approval-decided": (card_page([approval_card(s.decided)]), CARD_WIDTH + 24),
        "teams-healthy": (card_page(answer_cards(s.healthy)), CARD_WIDTH + 24),
        "teams-backend-down": (card_page(answer_cards(s.backend_down)), CARD_WIDTH + 24),
        "teams-alert-thread": (card_page(answer_cards(s.alerts)), CARD_WIDTH + 24),
        "teams-pods-table": (card_page(answer_cards(s.pods)), CARD_WIDTH + 24),
    }
    return out


async def render(out: Path, browser: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="srebot-docs-") as name:
        tmp = Path(name)
        made = []
        for stem, (page, width) in pages(await samples(tmp)).items():
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
