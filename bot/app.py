"""The composition root: one srebot process's parts, built from settings or given, started and stopped together.

`Runtime(settings)` builds everything; `Runtime(settings, engine=…, store=…, toolbox=…, clock=…)` uses the
parts given instead (the tests' scripted engine, the bench's engine, a frozen clock). Integrations see it
only as `bot.ports.Core`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from contextlib import AbstractContextManager
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.actions import REGISTRY, Actions
from bot.alerts.desk import AlertDesk
from bot.alerts.poller import ControlPlanePoller
from bot.alerts.view import AlertView
from bot.answer import Answer
from bot.approvals import Approvals
from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.engine import DiagnosticEngine, Engine
from bot.policy import Policy
from bot.ports import Decision, Notifier, Overview, Request
from bot.terminal import TerminalNotifier
from bot.toolbox import Toolbox
from sessions.db import PoolSettings
from sessions.store import Actor, ApprovalRecord, ApprovalState, ConversationKey, Store, database_deadline, utcnow
from tools.redact import redact

if TYPE_CHECKING:
    from bot.engine.agent import Agent

log = logging.getLogger("srebot.app")


class Runtime:
    """Everything one srebot process runs; implements `bot.ports.Core` for the integrations."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        toolbox: Toolbox | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        self.settings = settings
        self.clock = clock or (store.clock if store is not None else utcnow)
        self.store = store or Store(
            settings.database_url,
            pool=PoolSettings(settings.db_pool_size, settings.db_pool_overflow, settings.db_pool_wait),
            deadline=settings.db_deadline,
            clock=self.clock,
        )
        self.toolbox = toolbox or Toolbox.from_settings(settings)
        self.notifiers: dict[str, Notifier] = {"cli": TerminalNotifier()}
        self.policy = Policy(settings.policy, approvers=settings.approvers, kinds=REGISTRY)
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
        if engine is None:
            if settings.llm_enabled:  # google-adk is imported only when an LLM is configured
                from bot.engine.agent import Agent

                self.agent = Agent(settings, self.toolbox, self.actions)
            engine = DiagnosticEngine(settings, self.toolbox, self.actions, self.agent, clock=self.clock)
        self.engine = engine
        self._warm_up: asyncio.Task[None] | None = None
        self._opening: asyncio.Task[None] | None = None
        self.database_error: str | None = None  # why the database could not be opened yet
        self.dispatcher = Dispatcher(
            self.store,
            self.engine,
            max_concurrency=settings.max_concurrency,
            max_queued=settings.max_queued,
            db_deadline=settings.db_deadline,
            timeout=settings.request_timeout,
            drain_seconds=settings.drain_seconds,
            notifiers=self.notifiers,
            heartbeat_seconds=settings.heartbeat_seconds,
            stale_after=settings.instance_stale_seconds,
        )
        self.alerts = AlertDesk(settings, self.store, self.dispatcher, self.actions, self.toolbox, self.notifiers)
        self.alert_poller = (
            ControlPlanePoller(self.alerts, self.toolbox.control_plane, settings.alerts.poll_seconds)
            if settings.alerts.poll_control_plane
            else None
        )

    # --- the Core the integrations see -----------------------------------------------------------
    def submit(self, request: Request) -> str:
        return self.dispatcher.submit(request)

    def in_flight(self) -> list[Request]:
        return self.dispatcher.in_flight()

    async def decide(
        self, approval_id: str, user: str | Actor, decision: str, *, platform: str | None = None
    ) -> Decision:
        return await self.approvals.decide(approval_id, user, decision, platform=platform)

    @property
    def ready(self) -> bool:
        return self.dispatcher.ready

    def taking(self) -> AbstractContextManager[None]:
        return database_deadline(self.settings.db_deadline)

    async def claim(self, platform: str, *event_ids: str) -> bool:
        with database_deadline(self.settings.db_deadline):
            return await self.store.claim_event(platform, *event_ids)

    async def session_of(self, key: ConversationKey) -> str | None:
        with database_deadline(self.settings.db_deadline):
            return await self.store.find_session_id(key)

    async def remember_reference(self, session_id: str, reference: dict[str, Any]) -> None:
        with database_deadline(self.settings.db_deadline):
            await self.store.update_session(session_id, reference=reference)

    async def approval_posted(self, approval_id: str, message_ref: dict[str, Any]) -> None:
        await self.store.set_approval_message(approval_id, message_ref)

    async def press_alert(self, group_id: str, button: str, actor: Actor) -> Decision:
        return await self.alerts.press(group_id, button, actor)

    async def alert_view(self, group_id: str) -> AlertView | None:
        return await self.alerts.shown(group_id)

    async def approval(self, approval_id: str) -> ApprovalRecord | None:
        return await self.store.get_approval(approval_id)

    async def refusal(self, approval: ApprovalRecord, user: str | Actor, decision: str) -> str | None:
        return await self.approvals.refusal(approval, user, decision)

    def add_notifier(self, notifier: Notifier) -> None:
        self.notifiers[notifier.platform] = notifier
        self.dispatcher.notifiers[notifier.platform] = notifier

    async def answer_of(self, request_id: str) -> Answer | None:
        turn = await self.store.get_turn(request_id)
        if turn is None or not turn.answer:
            return None
        return Answer.model_validate(turn.answer).model_copy(update={"request_id": request_id})

    async def rate(self, request_id: str, user: str, rating: str) -> bool:
        return await self.store.add_feedback(request_id, user, rating)

    async def overview(self, user: str, limit: int = 20) -> Overview:
        # a question may carry a pasted secret: the overview shows it to everyone who opens it, so redacted
        turns = [dataclasses.replace(t, text=redact(t.text)) for t in (await self.store.active_turns())[:limit]]
        pending = await self.store.approvals(ApprovalState.PENDING, limit=limit)
        return Overview(turns, [(a, await self.approvals.refusal(a, user, "approve") is None) for a in pending],
                        await self.alerts.recent(limit))

    # --- platforms without serving them ----------------------------------------------------------
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
            self.add_notifier(SlackNotifier(client, self))
            self.policy.add_directory("slack", UserGroups(client))
        if settings.teams_mode != "off" and "teams" not in self.notifiers:
            from integrations.teams import teams_notifier

            self.add_notifier(teams_notifier(settings))

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self, *, migrate: bool = True, wait_for_database: bool = True) -> None:
        """Open the database (migrations), then take work. Without `wait_for_database` (the server) a
        database that does not answer yet is retried in the background: the process serves /healthz,
        /readyz says 503 with the database's error, and chat requests are told the bot cannot work yet."""
        if wait_for_database:
            await self._open(migrate)
            return
        try:
            await self._open_if_reachable(migrate)
            return
        except Exception as exc:  # down, refusing, or still starting: the server starts anyway
            self._unreachable(exc)
        self._opening = asyncio.create_task(self._open_when_reachable(migrate), name="open-database")

    async def _open_if_reachable(self, migrate: bool, timeout: float = 5.0) -> None:
        # a short probe first: a database that does not answer must not hold up serving /healthz
        async with asyncio.timeout(timeout):
            await self.store.ping()
        await self._open(migrate)

    async def _open(self, migrate: bool) -> None:
        if migrate:
            await self.store.upgrade()
        await self.dispatcher.start()
        self.approvals.start()
        self.database_error = None
        if self.alert_poller is not None:
            self.alert_poller.start()
        # in the background: serving must not wait for it, and the first request that needs it will
        self._warm_up = asyncio.create_task(self.toolbox.warm_up(), name="tools-warm-up")

    async def _open_when_reachable(self, migrate: bool) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._open_if_reachable(migrate)
                log.info("database reachable; taking work")
                return
            except Exception as exc:  # down, refusing, or still starting: try again shortly
                self._unreachable(exc)
            delay = min(delay * 2, 15.0)

    def _unreachable(self, exc: BaseException) -> None:
        self.database_error = f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}"
        log.warning("database not reachable; retrying", extra={"error": self.database_error})

    async def stop(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        if self._warm_up is not None:
            await asyncio.gather(self._warm_up, return_exceptions=True)
        if self.alert_poller is not None:
            await self.alert_poller.stop()
        await self.alerts.idle()  # notifications already acknowledged to Alertmanager are applied
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
            results["database"] = (
                "ok" if self.ready or self._opening is None else f"error: {self.database_error or 'starting'}"
            )
        except Exception as exc:  # any failure means not ready; the text says which
            results["database"] = f"error: {exc.__class__.__name__}: {str(exc)[:200]}"
        results.update(await self.toolbox.check())
        return results
