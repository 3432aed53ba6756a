"""Alert threads in a Teams channel: the root message's Adaptive Card (what fires, its facts and links, and the
Silence / Acknowledge / Investigate again buttons as Universal Actions), and the conversation references the
thread is reached through.

A Teams channel post starts a thread: the root card is sent proactively to the channel's conversation id,
and the thread is then `{channel};messageid={root activity id}`; replies go there, the root card is updated
in place (PUT) through it. The serviceUrl comes from the configured destination only, never from an alert.
"""

from __future__ import annotations

from typing import Any

from bot.alerts.routing import Destination, configured
from bot.alerts.view import AlertView
from bot.config import ConfigError, Settings
from integrations.teams.adapter import THREAD_MARK
from integrations.teams.auth import TeamsAuth
from integrations.teams.cards import card, plain, text_block

ALERT_VERB = "srebot.alert.press"
BUTTONS = (("silence", "Silence {silence_for}"), ("ack", "Acknowledge incident"), ("investigate", "Investigate again"))
ICON = {"firing": "🔥", "resolved": "✅"}
STYLE = {"firing": "attention", "resolved": "good"}
CHANNEL = "msteams"


def _link(title: str, url: str) -> str:
    safe = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return f"[{title}]({safe})"


def alert_card(view: AlertView, note: str | None = None) -> dict[str, Any]:
    """The root card everyone sees; with `note`, the card as one person's answer to their press (why nothing
    happened, or what did)."""
    title = f"{ICON.get(view.status, '')} {view.title}".strip()
    body: list[dict[str, Any]] = [
        {"type": "Container", "style": STYLE.get(view.status, "emphasis"), "bleed": True,
         "items": [plain(title, weight="Bolder", size="Medium")]},
        {"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in view.facts]},
        *(plain(f"• {line}", spacing="Small") for line in view.lines),
    ]
    if view.links:
        body.append(text_block(" · ".join(_link(link.title, link.url) for link in view.links), spacing="Medium"))
    if note:
        body.append(plain(note, color="Warning", spacing="Medium"))
    actions = [
        {"type": "Action.Execute", "title": label.format(silence_for=view.silence_for), "verb": ALERT_VERB,
         "data": {"srebot": "alert", "group_id": view.group_id, "button": button}}
        for button, label in BUTTONS
    ]
    return card(body, actions)


def pressed(data: dict[str, Any]) -> tuple[str, str] | None:
    """(group id, button) of an alert card's Action.Execute data, None when it is not one."""
    group_id, button = data.get("group_id"), data.get("button")
    if data.get("srebot") == "alert" and isinstance(group_id, str) and button in dict(BUTTONS):
        return group_id, button
    return None


def destination_tenant(destination: Destination, auth: TeamsAuth) -> str | None:
    return destination.tenant or auth.tenant_id


def channel_reference(destination: Destination, auth: TeamsAuth) -> dict[str, Any]:
    """The ConversationReference of the configured channel: a message sent through it starts a thread."""
    assert destination.service_url is not None  # the configuration requires it with a teams_conversation
    return {
        "channelId": CHANNEL,
        "serviceUrl": destination.service_url,
        "bot": {"id": f"28:{auth.app_id}" if auth.app_id else "srebot", "name": "srebot"},
        "conversation": {"id": destination.channel, "isGroup": True, "conversationType": "channel",
                         "tenantId": destination_tenant(destination, auth)},
    }


def thread_reference(channel: dict[str, Any], root_id: str) -> dict[str, Any]:
    """The reference of the thread the root message `root_id` started in that channel."""
    conversation = {**channel["conversation"], "id": f"{channel['conversation']['id']}{THREAD_MARK}{root_id}"}
    return {**channel, "conversation": conversation}


def check_destinations(settings: Settings, auth: TeamsAuth) -> None:
    """Every configured Teams alert destination posts to an allowed serviceUrl (the allow-list of incoming
    activities) in a known tenant; raises ConfigError naming the key otherwise."""
    for where, destination in configured(settings.alerts):
        if destination.platform != "teams":
            continue
        if not auth.service_urls.allows(destination.service_url):
            raise ConfigError(
                f"{where}.teams_service_url: {destination.service_url} is not a Teams / Bot Framework service host "
                "(https) nor under SREBOT_TEAMS_SERVICE_URLS"
            )
        if not destination_tenant(destination, auth):
            raise ConfigError(f"{where}.teams_tenant_id: needed (the channel's tenant) without MICROSOFT_APP_TENANT_ID")
