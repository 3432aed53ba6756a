"""Microsoft Teams on the shared engine (botbuilder CloudAdapter on aiohttp); every botbuilder import stays in here.

`mount_teams(app, core)` adds `POST /api/messages` and registers the Teams notifier.
Modules: adapter (CloudAdapter from settings, proactive Outbox), endpoint (the HTTP handler),
bot (the activity handler), port (TeamsPort and TeamsNotifier), cards (Adaptive Cards and size limits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from botbuilder.integration.aiohttp import CloudAdapter

from bot.ports import Core
from integrations.teams.adapter import BotAuthConfig, Outbox, make_adapter
from integrations.teams.bot import TeamsBot
from integrations.teams.endpoint import messages_handler
from integrations.teams.port import TeamsNotifier

log = logging.getLogger("srebot.teams")


@dataclass
class TeamsIntegration:
    """What mount_teams built, for the app's lifecycle and for tests."""

    config: BotAuthConfig
    adapter: CloudAdapter
    outbox: Outbox
    bot: TeamsBot
    notifier: TeamsNotifier


TEAMS = web.AppKey("srebot_teams", TeamsIntegration)


def mount_teams(app: web.Application, core: Core) -> TeamsIntegration:
    config = BotAuthConfig.from_settings(core.settings)
    if not config.auth_enabled:
        log.warning(
            "MICROSOFT_APP_ID is empty: Teams requests are NOT authenticated (local development and tests only)"
        )
    adapter = make_adapter(config)
    outbox = Outbox(adapter, config.APP_ID)
    teams = TeamsIntegration(config, adapter, outbox, TeamsBot(core, outbox), TeamsNotifier(outbox))
    core.add_notifier(teams.notifier)
    app[TEAMS] = teams
    app.router.add_post("/api/messages", messages_handler(adapter, teams.bot))

    async def drain(_: web.Application) -> None:
        await teams.bot.drain(core.settings.drain_seconds)

    app.on_shutdown.append(drain)
    return teams


__all__ = ["TEAMS", "TeamsIntegration", "mount_teams"]
