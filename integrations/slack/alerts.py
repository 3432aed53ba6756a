"""Block Kit of an alert thread's root message: what fires, its facts and links, and the Silence / Acknowledge /
Investigate again buttons (action ids `alert_silence`, `alert_ack`, `alert_investigate`, value = the group id)."""

from __future__ import annotations

from typing import Any

from bot.alerts.view import AlertView
from integrations.slack.blocks import SlackMessage, context, escape, header, sections, trim

BUTTONS = (
    ("alert_silence", "Silence {silence_for}"),
    ("alert_ack", "Acknowledge incident"),
    ("alert_investigate", "Investigate again"),
)
ICON = {"firing": "🔥", "resolved": "✅"}


def _link(title: str, url: str) -> str:
    safe = url.replace(" ", "%20").replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{escape(title)}>"


def alert_message(view: AlertView) -> SlackMessage:
    title = f"{ICON.get(view.status, '')} {view.title}".strip()
    facts = " · ".join(f"*{escape(name)}* {escape(value)}" for name, value in view.facts)
    blocks: list[dict[str, Any]] = [header(title), *sections([facts]), *sections([f"• {escape(line)}" for line in view.lines])]
    if view.links:
        blocks.append(context(" · ".join(_link(link.title, link.url) for link in view.links)))
    elements = [
        {"type": "button", "action_id": action_id, "value": view.group_id,
         "text": {"type": "plain_text", "text": label.format(silence_for=view.silence_for)}}
        for action_id, label in BUTTONS
    ]
    blocks.append({"type": "actions", "block_id": "alert", "elements": elements})
    return SlackMessage(text=trim(escape(view.text()), 3000), blocks=blocks)
