"""Microsoft Teams on the shared engine (Microsoft 365 Agents SDK, CloudAdapter on aiohttp); every SDK import stays in here.

`mount_teams(app, core)` adds `POST /api/messages` and registers the Teams notifier, when Teams is
configured (an app id, or the explicit local mode); otherwise nothing is mounted and the path is 404.
Modules: auth (token validation, serviceUrl allow-list), adapter (CloudAdapter, bounded Bot Connector
clients, proactive Outbox), endpoint (the HTTP handler), bot (the activity handler), port (TeamsPort and
TeamsNotifier, which also holds alert threads), cards (Adaptive Cards and size limits), alerts (alert threads'
root card and references).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from microsoft_agents.hosting.aiohttp import CloudAdapter

from bot.ports import Core
from bot.config import Settings
from integrations.teams.adapter import Destinations, Outbox, make_adapter
from integrations.teams.alerts import check_destinations
from integrations.teams.auth import TeamsAuth
from integrations.teams.bot import TeamsBot
from integrations.teams.endpoint import messages_handler
from integrations.teams.port import TeamsNotifier

log = logging.getLogger("srebot.teams")


@dataclass
class TeamsIntegration:
    """What mount_teams built, for the app's lifecycle and for tests."""

    auth: TeamsAuth
    adapter: CloudAdapter
    destinations: Destinations
    outbox: Outbox
    bot: TeamsBot
    notifier: TeamsNotifier


TEAMS = web.AppKey("srebot_teams", TeamsIntegration)


def teams_notifier(settings: Settings) -> TeamsNotifier:
    """The notifier of a configured Teams without serving it (`srebot approve` updates the card; `srebot check`
    builds it to find a misconfigured alert destination before `serve` would refuse to start)."""
    auth = TeamsAuth(settings)
    check_destinations(settings, auth)
    return TeamsNotifier(Outbox(make_adapter(auth, Destinations(auth.service_urls)), auth))


def mount_teams(app: web.Application, core: Core) -> TeamsIntegration:
    auth = TeamsAuth(core.settings)
    if auth.local:
        log.warning(
            "SREBOT_TEAMS_INSECURE=local: Teams requests are NOT authenticated and approvals cannot be decided "
            "from Teams (local testing only; replies go only to %s)",
            ", ".join(auth.service_urls.prefixes) or "the Teams service hosts",
        )
    check_destinations(core.settings, auth)
    destinations = Destinations(auth.service_urls)
    adapter = make_adapter(auth, destinations)
    outbox = Outbox(adapter, auth)
    notifier = TeamsNotifier(outbox, core)
    teams = TeamsIntegration(auth, adapter, destinations, outbox, TeamsBot(core, outbox, auth, names=notifier.names),
                             notifier)
    core.add_notifier(teams.notifier)
    app[TEAMS] = teams
    app.router.add_post("/api/messages", messages_handler(adapter, auth, teams.bot))

    async def drain(_: web.Application) -> None:
        await teams.bot.drain(core.settings.drain_seconds)

    async def close(_: web.Application) -> None:
        await destinations.close()

    app.on_shutdown.append(drain)
    app.on_cleanup.append(close)
    return teams


__all__ = ["TEAMS", "TeamsIntegration", "mount_teams", "teams_notifier"]
