"""What one alert group notification changes — open its thread, investigate, update, resolve — with the database
deciding across deliveries and replicas; and the thread's buttons (silence, acknowledge, investigate again)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from bot.actions import Actions, SilenceParams, kind_of, matcher_text
from bot.alerts.payload import AlertGroup, key_hash
from bot.alerts.routing import Destination, destination, find_service
from bot.alerts.view import AlertView, common_labels, investigation, view
from bot.answer import Action
from bot.approvals import ActionFailed
from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.policy import ALERT, Verb
from bot.telemetry import ALERTS_DEDUPLICATED, ALERTS_INVESTIGATED, ALERTS_RECEIVED, ALERTS_RESOLVED
from bot.ports import Actor, AlertThreads, Decision, Notifier, RecentAlert, Request
from bot.engine.text import clock, duration
from bot.toolbox import Toolbox
from sessions.alerts import AlertGroupRecord, AlertStore
from sessions.store import ConversationKey, Origin, Store, new_id, utcnow

log = logging.getLogger("srebot.alerts")

USER = "alertmanager"  # who an alert-driven investigation is "asked" by
OPEN_CLAIM = timedelta(seconds=60)  # a replica posting a root message for longer than this is taken for dead
MAX_STORED_ALERTS = 100
MAX_ACK_PROPOSALS = 3
AGAIN_GUARD = timedelta(seconds=10)  # "Investigate again" pressed twice (or on two replicas) runs once
ATTEMPTS = 5  # compare-and-set rounds before a delivery gives up (it is re-sent every group_interval)


class Accepted(NamedTuple):
    record: AlertGroupRecord | None
    fresh: bool  # this delivery created the group's row


class AlertDesk:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        dispatcher: Dispatcher,
        actions: Actions,
        toolbox: Toolbox,
        notifiers: Mapping[str, Notifier],
    ):
        self.settings = settings
        self.store = store
        self.groups = AlertStore(store)
        self.dispatcher = dispatcher
        self.actions = actions
        self.toolbox = toolbox
        self.notifiers = notifiers
        self._tasks: set[asyncio.Task[Any]] = set()

    async def recent(self, limit: int) -> list[RecentAlert]:
        """The alert groups heard of most recently, as their root messages show them, with their threads."""
        return [RecentAlert(view(self.settings, record), _thread(record)[0] if record.thread else None,
                            record.last_seen_at)
                for record in await self.groups.recent(limit)]

    # --- background work (the webhook answers before any of it) ---------------------------------
    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alert notification failed", exc_info=task.exception())

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- notifications ---------------------------------------------------------------------------
    async def receive(self, group: AlertGroup) -> str:
        """Store one notification and apply it (see `apply`)."""
        return await self.apply(group, await self.accept(group))

    async def accept(self, group: AlertGroup) -> Accepted:
        """Store the notification: the group's row on its first delivery (once, across replicas), else one
        more delivery counted. Raises when the database cannot (the webhook then answers 503 and
        Alertmanager sends it again)."""
        ALERTS_RECEIVED.labels(group.source, group.status).inc()
        handle = key_hash(group.key)
        created = await self.groups.insert(handle, {"group_key": group.key, "source": group.source, **self._state(group)})
        return Accepted(created or await self.groups.seen(handle), created is not None)

    async def apply(self, group: AlertGroup, accepted: Accepted) -> str:
        """What the notification changes; returns what it did: opened, investigated, updated, resolved,
        duplicate, unrouted (no destination configured or served here) or failed (the root message could
        not be posted; the next delivery tries again)."""
        record, fresh = accepted
        for _ in range(ATTEMPTS):
            if record is None:  # deleted in between: nothing to continue
                return "duplicate"
            outcome = await self._apply(record, group, fresh=fresh)
            if outcome is not None:
                if outcome == "duplicate":
                    ALERTS_DEDUPLICATED.labels(group.source).inc()
                log.info("alert notification", extra={"alert_group": record.id, "outcome": outcome, "status": group.status})
                return outcome
            fresh = False
            record = await self.groups.by_key(key_hash(group.key))
        log.warning("alert notification kept losing to concurrent ones", extra={"alert_group": record and record.id})
        return "duplicate"

    def _state(self, group: AlertGroup) -> dict[str, Any]:
        """The columns a notification sets: status, the alerts and their digest, labels, service, destination."""
        labels = group.labels
        match = find_service(self.settings, labels)
        dest = destination(self.settings.alerts, labels)
        alerts = sorted(group.alerts, key=lambda a: (a.status != "firing", a.starts_at))
        return {
            "status": group.status,
            "digest": group.digest,
            "labels": {"common": labels, "group": group.group_labels, "annotations": group.common_annotations},
            "alerts": {
                "items": [a.to_json() for a in alerts[:MAX_STORED_ALERTS]],
                "truncated": group.truncated + max(0, len(alerts) - MAX_STORED_ALERTS),
                "external_url": group.external_url,
            },
            "service": match.shown,
            "platform": dest.platform if dest else None,
            "channel": dest.channel if dest else None,
            "started_at": group.since,
            "resolved_at": (group.ended or utcnow()) if group.status == "resolved" else None,
        }

    async def _apply(self, record: AlertGroupRecord, group: AlertGroup, *, fresh: bool) -> str | None:
        """Decide and make one change; None when another delivery changed the group first (read again)."""
        if group.status == "resolved":
            return await self._resolve(record, group, fresh=fresh)
        if record.thread is None:
            return await self._open(record, group)
        return await self._refresh(record, group)

    async def _open(self, record: AlertGroupRecord, group: AlertGroup) -> str | None:
        now = utcnow()
        if record.opening_at is not None and now - record.opening_at < OPEN_CLAIM:
            return "duplicate"  # another delivery (here or on another replica) is posting the root message
        state = self._state(group)
        dest = destination(self.settings.alerts, group.labels)
        threads = self._threads(dest)
        if dest is None or threads is None:
            changed = await self.groups.change(record, **state)
            if changed is None:
                return None
            log.warning(
                "alert group has no destination",
                extra={"alert_group": record.id, "destination": dest and f"{dest.platform}:{dest.channel}"},
            )
            return "unrouted"
        claimed = await self.groups.change(record, **state, opening_at=now)
        if claimed is None:
            return None
        opened = await threads.open_alert(dest, view(self.settings, claimed))
        if opened is None:
            await self._release(claimed.id)
            return "failed"
        key, message = opened.key, opened.message
        session_id = await self.store.session_id_for(key, opened.reference)
        fingerprints = group.fingerprints
        thread = {"key": [key.platform, key.workspace, key.channel, key.thread], "message": message}
        # only this delivery changes an opening group's thread, but a resolution may land meanwhile: keep it
        for _ in range(ATTEMPTS):
            current = await self.groups.get(claimed.id)
            if current is None:
                return "failed"
            done = await self.groups.change(
                current, thread=thread, session_id=session_id, opening_at=None, investigated_at=now,
                investigated={"fingerprints": fingerprints},
            )
            if done is not None:
                break
        else:
            return "failed"
        if done.status == "resolved":  # resolved while the root message was being posted
            await threads.update_alert(key, message, view(self.settings, done))
            return "opened"
        await self._investigate(done, "new")
        return "opened"

    async def _release(self, group_id: str) -> None:
        """Give up the claim to post the root message, so the next delivery tries again."""
        for _ in range(ATTEMPTS):
            current = await self.groups.get(group_id)
            if current is None or await self.groups.change(current, opening_at=None) is not None:
                return

    async def _refresh(self, record: AlertGroupRecord, group: AlertGroup) -> str | None:
        now = utcnow()
        refired = record.status == "resolved"
        changed = group.digest != record.digest
        investigated = set((record.investigated or {}).get("fingerprints") or [])
        new_alerts = bool(set(group.fingerprints) - investigated)
        cooled = record.investigated_at is None or now - record.investigated_at >= timedelta(
            seconds=self.settings.alerts.cooldown_seconds
        )
        due = new_alerts or cooled
        if not (refired or changed or due):
            return "duplicate"
        threads = self._threads_of(record)
        if threads is None:  # this replica does not serve the thread's platform: leave it to one that does
            return "unrouted"
        values = self._state(group)
        if not refired:  # the group's start stays the first alert's; a re-fire starts again
            values.pop("started_at")
        if due:
            values.update(investigated_at=now, investigated={"fingerprints": group.fingerprints})
        updated = await self.groups.change(record, **values)
        if updated is None:
            return None
        key, message = _thread(updated)
        if refired or changed:
            await threads.update_alert(key, message, view(self.settings, updated))
        if refired:
            await self.notifiers[key.platform].say(
                await self._conversation(updated, key), f"🔥 Firing again since {clock(group.since)}."
            )
        if due and await self._investigate(updated, "changed" if new_alerts else "cooldown"):
            return "investigated"
        return "updated"

    async def _resolve(self, record: AlertGroupRecord, group: AlertGroup, *, fresh: bool) -> str | None:
        if record.status == "resolved" and not fresh:
            return "duplicate"
        if fresh:  # first heard of when it resolved: nothing was said, so nothing to close
            return "resolved"
        state = self._state(group)
        state.pop("started_at")
        updated = await self.groups.change(record, **state)
        if updated is None:
            return None
        ALERTS_RESOLVED.labels(group.source).inc()
        threads = self._threads_of(updated)
        if updated.thread is None or threads is None:
            return "resolved"
        key, message = _thread(updated)
        shown = view(self.settings, updated)
        await threads.update_alert(key, message, shown)
        assert shown.resolved_at is not None
        await self.notifiers[key.platform].say(
            await self._conversation(updated, key),
            f"✅ Resolved at {clock(shown.resolved_at)}, after {duration(shown.resolved_at - shown.since)}.",
        )
        return "resolved"

    # --- investigations --------------------------------------------------------------------------
    async def _investigate(self, record: AlertGroupRecord, reason: str, actor: Actor | None = None) -> bool:
        """Run the investigation in the group's thread on the shared dispatcher; False when another alert group
        of the same service was investigated within the cooldown (said in the thread instead). A new alert in
        the group ("changed") or a person asking ("again") investigates regardless. srebot asks as USER on the
        alert path; a person who pressed "Investigate again" asks as themselves (what the answer proposes is
        theirs to propose)."""
        key, message = _thread(record)
        threads = self._threads_of(record)
        assert threads is not None
        brief = investigation(self.settings, record)
        service = brief.service.shown
        if service is not None:
            quiet = None if reason in ("changed", "again") else utcnow() - timedelta(
                seconds=self.settings.alerts.cooldown_seconds
            )
            holder = await self.groups.claim_service(service, record.id, quiet_since=quiet)
            if holder is not None:
                other = await self.groups.get(holder) if holder != record.id else None
                if other is not None:
                    await self.notifiers[key.platform].say(
                        await self._conversation(record, key),
                        f"{service} is already being investigated in the thread of “{view(self.settings, other).title}”; "
                        "press Investigate again to run an investigation here too.",
                    )
                ALERTS_DEDUPLICATED.labels(record.source).inc()
                return False
        request_id = new_id("req")
        asker = actor or Actor(USER, key.platform, key.workspace, key.channel, via=ALERT)
        self.dispatcher.submit(
            Request(
                key=key,
                user=asker.user,
                text=f"why is {service or 'this'} alerting?",
                port=threads.thread_port(key, message, request_id),
                request_id=request_id,
                external=asker.external,
                groups=asker.groups,
                via=asker.via,
                alert=brief,
            )
        )
        ALERTS_INVESTIGATED.labels(reason).inc()
        return True

    # --- buttons ---------------------------------------------------------------------------------
    async def shown(self, group_id: str) -> AlertView | None:
        """What the group's root message shows now."""
        record = await self.groups.get(group_id)
        return view(self.settings, record) if record is not None else None

    async def press(self, group_id: str, button: str, actor: Actor) -> Decision:
        """A button of the root message ("investigate", "silence" or "ack") pressed by `actor`, if the policy
        lets them (a refusal is audited, and told to them only)."""
        pressed = BUTTONS.get(button)
        if pressed is None:
            return Decision(False, f"Unknown alert button {button!r}.")
        record = await self.groups.get(group_id)
        if record is None or record.thread is None:
            return Decision(False, "I have no alert thread for this button any more.")
        key, _ = _thread(record)
        refusal = await self.actions.approvals.policy.button_refusal(actor, pressed.verb, pressed.kind, where=key)
        if refusal is not None:
            await self.store.audit(
                "refused", actor.user, kind=pressed.kind, target=record.service or record.id,
                detail=f"{button} button: {refusal}", platform=actor.platform, workspace=actor.workspace or None,
                channel=actor.channel or None, via=actor.via,
            )
            return Decision(False, refusal)
        return await pressed.run(self, record, actor)

    async def _again(self, record: AlertGroupRecord, actor: Actor) -> Decision:
        now = utcnow()
        if record.investigated_at is not None and now - record.investigated_at < AGAIN_GUARD:
            return Decision(False, "An investigation of this alert just started; its answer comes in the thread.")
        fingerprints = sorted({a["fingerprint"] for a in record.alerts.get("items") or [] if a.get("status") == "firing"})
        updated = await self.groups.change(record, investigated_at=now, investigated={"fingerprints": fingerprints})
        if updated is None:
            return Decision(False, "Someone else just changed this alert group; press again if nothing starts.")
        await self._investigate(updated, "again", actor)
        return Decision(True, "Investigating again; the answer comes in the thread.")

    async def _propose_silence(self, record: AlertGroupRecord, actor: Actor) -> Decision:
        if record.source != "alertmanager":
            return Decision(False, "These alerts come from the control plane, not Alertmanager: there is nothing to silence.")
        matchers = common_labels(record)
        if not matchers:
            return Decision(False, "The alerts of this group share no label, so no silence would match only them.")
        params = SilenceParams(matchers=matchers, seconds=self.settings.alerts.silence_seconds)
        return await self._propose(record, [kind_of("silence").action(matcher_text(matchers), params)], actor)

    async def _propose_ack(self, record: AlertGroupRecord, actor: Actor) -> Decision:
        service = record.service
        found = await self.toolbox.control_plane.open_incidents(service)
        if not found.ok or found.data is None:
            return Decision(False, f"I could not read the open incidents: {found.error_text}.")
        incidents = [i for i in found.data.items if i.status != "acknowledged"][:MAX_ACK_PROPOSALS]
        if not incidents:
            return Decision(False, f"No unacknowledged incident is open for {service or 'these alerts'} in the control plane.")
        ack = kind_of("ack_incident")
        actions = [ack.action(i.id, ack.params(title=i.title)) for i in incidents]
        return await self._propose(record, actions, actor)

    async def _propose(self, record: AlertGroupRecord, actions: list[Action], actor: Actor) -> Decision:
        threads = self._threads_of(record)
        if threads is None:
            return Decision(False, "This alert thread's platform is not connected here.")
        key, message = _thread(record)
        port = threads.thread_port(key, message)
        origin = Origin(actor.user, actor.platform, session_id=record.session_id, actor=actor)
        proposed = []
        for action in actions:
            try:
                approval = await self.actions.propose(action, origin)
            except ActionFailed as exc:  # cannot be described, or (NotAllowed) the policy refuses it
                return Decision(False, str(exc))
            await port.ask_approval(approval)
            proposed.append(approval.id)
        return Decision(True, f"Proposed {', '.join(proposed)}; someone else approves it in the thread.")

    # --- helpers ---------------------------------------------------------------------------------
    def _threads(self, dest: Destination | None) -> AlertThreads | None:
        notifier = self.notifiers.get(dest.platform) if dest else None
        return notifier if isinstance(notifier, AlertThreads) else None

    def _threads_of(self, record: AlertGroupRecord) -> AlertThreads | None:
        if record.thread is None:
            return None
        platform = record.thread["key"][0]
        notifier = self.notifiers.get(platform)
        return notifier if isinstance(notifier, AlertThreads) else None

    async def _conversation(self, record: AlertGroupRecord, key: ConversationKey) -> Any:
        session_id = record.session_id or await self.store.session_id_for(key)
        conversation = await self.store.get_session(session_id)
        assert conversation is not None
        return conversation


class Button(NamedTuple):
    """What pressing a button of the root message is, for the policy (verb, action kind) and for the desk."""

    verb: Verb
    kind: str | None
    run: Callable[[AlertDesk, AlertGroupRecord, Actor], Awaitable[Decision]]


BUTTONS = {
    "investigate": Button("ask", None, AlertDesk._again),
    "silence": Button("propose", "silence", AlertDesk._propose_silence),
    "ack": Button("propose", "ack_incident", AlertDesk._propose_ack),
}


def _thread(record: AlertGroupRecord) -> tuple[ConversationKey, dict[str, Any]]:
    assert record.thread is not None
    platform, workspace, channel, thread = record.thread["key"]
    return ConversationKey(platform, workspace, channel, thread), dict(record.thread.get("message") or {})
