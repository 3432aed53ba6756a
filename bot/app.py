"""The composition root: builds store, tools, engine, dispatcher and notifiers from settings."""

from __future__ import annotations

import asyncio
import logging

from bot.actions import Actions
from bot.approvals import Approvals
from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.engine import DiagnosticEngine
from bot.ports import Notifier
from bot.terminal import TerminalNotifier
from bot.toolbox import Toolbox
from sessions.store import Store

log = logging.getLogger("srebot.app")


class Runtime:
    """Everything one srebot process runs, started and stopped together."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = Store(settings.database_url)
        self.notifiers: dict[str, Notifier] = {"cli": TerminalNotifier()}
        self.toolbox = Toolbox.from_settings(settings)
        self.approvals = Approvals(
            self.store,
            lambda approval: self.actions.execute(approval),
            approvers=settings.approvers,
            ttl_seconds=settings.defaults.approval_ttl_seconds,
            notifiers=self.notifiers,
        )
        self.actions = Actions(self.toolbox, self.approvals)
        self.engine = DiagnosticEngine(settings, self.toolbox, self.actions)
        self.dispatcher = Dispatcher(
            self.store,
            self.engine,
            max_concurrency=settings.max_concurrency,
            timeout=settings.request_timeout,
            drain_seconds=settings.drain_seconds,
            notifiers=self.notifiers,
        )

    def add_notifier(self, notifier: Notifier) -> None:
        self.notifiers[notifier.platform] = notifier
        self.dispatcher.notifiers[notifier.platform] = notifier

    async def start(self, *, migrate: bool = True) -> None:
        if migrate:
            await self.store.upgrade()
        await self.dispatcher.start()
        self.approvals.start()

    async def stop(self) -> None:
        await self.dispatcher.shutdown()
        await self.approvals.stop()
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
