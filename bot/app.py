"""The composition root: builds store, tools, engine, dispatcher and notifiers from settings."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.actions import KINDS, Actions
from bot.approvals import Approvals
from bot.config import ConfigError, Settings
from bot.dispatcher import Dispatcher
from bot.engine import DiagnosticEngine
from bot.policy import Policy
from bot.ports import Notifier
from bot.terminal import TerminalNotifier
from bot.toolbox import Toolbox
from sessions.store import Store

if TYPE_CHECKING:
    from bot.engine.agent import Agent

log = logging.getLogger("srebot.app")


class Runtime:
    """Everything one srebot process runs, started and stopped together."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = Store(settings.database_url)
        self.notifiers: dict[str, Notifier] = {"cli": TerminalNotifier()}
        self.toolbox = Toolbox.from_settings(settings)
        self.policy = Policy(settings.policy, approvers=settings.approvers, kinds=KINDS)
        self.approvals = Approvals(
            self.store,
            lambda approval: self.actions.execute(approval),
            policy=self.policy,
            ttl_seconds=settings.defaults.approval_ttl_seconds,
            notifiers=self.notifiers,
            sweep_seconds=settings.approval_sweep_seconds,
        )
        self.actions = Actions(self.toolbox, self.approvals)
        self.agent: Agent | None = None
        if settings.llm_enabled:  # google-adk is imported only when an LLM is configured
            from bot.engine.agent import Agent

            self.agent = Agent(settings, self.toolbox, self.actions)
        self.engine = DiagnosticEngine(settings, self.toolbox, self.actions, self.agent)
        self._warm_up: asyncio.Task[None] | None = None
        self.dispatcher = Dispatcher(
            self.store,
            self.engine,
            max_concurrency=settings.max_concurrency,
            timeout=settings.request_timeout,
            drain_seconds=settings.drain_seconds,
            notifiers=self.notifiers,
            heartbeat_seconds=settings.heartbeat_seconds,
            stale_after=settings.instance_stale_seconds,
        )

    def add_notifier(self, notifier: Notifier) -> None:
        self.notifiers[notifier.platform] = notifier
        self.dispatcher.notifiers[notifier.platform] = notifier

    def attach_platforms(self) -> None:
        """Register the notifiers of the configured platforms without serving them (the terminal's
        `approve`/`reject`), so a decision made here still updates the approval message posted in
        Slack or Teams and posts the outcome in its thread, and the policy resolves Slack user groups.
        Platforms already mounted are kept."""
        settings = self.settings
        if settings.slack_enabled and "slack" not in self.notifiers:
            from integrations.slack.app import web_client
            from integrations.slack.port import SlackNotifier
            from integrations.slack.trust import UserGroups

            assert settings.slack_bot_token is not None
            client = web_client(settings.slack_api_url, settings.slack_bot_token.get_secret_value())
            self.add_notifier(SlackNotifier(client))
            self.policy.add_directory("slack", UserGroups(client))
        if settings.teams_enabled and "teams" not in self.notifiers:
            from integrations.teams.adapter import BotAuthConfig, Outbox, make_adapter
            from integrations.teams.port import TeamsNotifier

            config = BotAuthConfig.from_settings(settings)
            try:
                adapter = make_adapter(config)
            except ConfigError as exc:  # a Slack decision must not fail over a Teams setting
                log.warning("Teams approval messages cannot be updated from here", extra={"error": str(exc)})
            else:
                self.add_notifier(TeamsNotifier(Outbox(adapter, config.APP_ID)))

    async def start(self, *, migrate: bool = True) -> None:
        if migrate:
            await self.store.upgrade()
        await self.dispatcher.start()
        self.approvals.start()
        # in the background: serving must not wait for it, and the first request that needs it will
        self._warm_up = asyncio.create_task(self.toolbox.warm_up(), name="tools-warm-up")

    async def stop(self) -> None:
        if self._warm_up is not None:
            await asyncio.gather(self._warm_up, return_exceptions=True)
        await self.dispatcher.shutdown()
        await self.approvals.stop()
        if self.agent is not None:
            await self.agent.aclose()
        await self.toolbox.aclose()
        await self.store.close()

    async def checks(self, timeout: float = 3.0) -> dict[str, str]:
        """Reachability of the database and every backend: "ok", "not configured" or "error: …"."""
        results: dict[str, str] = {}
        try:
            async with asyncio.timeout(timeout):
                await self.store.ping()
            results["database"] = "ok"
        except Exception as exc:  # any failure means not ready; the text says which
            results["database"] = f"error: {exc.__class__.__name__}: {str(exc)[:200]}"
        results.update(await self.toolbox.check())
        return results
