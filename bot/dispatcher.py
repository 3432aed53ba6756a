"""Runs requests as asyncio tasks: admission, per-thread order (across replicas), timeouts, cancel, leases, drain."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bot.answer import Answer
from bot.engine.base import Engine
from bot.logging_setup import request_id_var
from bot.ports import Notifier, Request
from bot.telemetry import OUTCOMES, QUEUE_DEPTH, REQUEST_DURATION, REQUESTS, REQUESTS_IN_FLIGHT
from bot.wording import NOT_READY, database_trouble, short
from sessions.store import (
    Conversation, ConversationKey, DatabaseError, RecordedTurn, Store, TurnState, database_deadline,
)

log = logging.getLogger("srebot.dispatcher")

EVENT_MEMORY = timedelta(days=1)  # how long delivered platform event ids are kept for dedupe
CANCEL = re.compile(r"^\s*(cancel|stop|abort)\s*[.!]?\s*$", re.I)
STATUS = re.compile(r"^\s*status\s*\??\s*$", re.I)
RESTARTING = "I'm restarting and not taking new work; ask again in a moment."
PLACEHOLDERS_FIRST = 0.5  # seconds a request's recording waits at most for the placeholders being posted beside it


def database_failure(what: str, exc: BaseException, request: Request) -> Answer:
    """The person reads what failed in words; the exception goes to the log under the request id they are given."""
    log.warning("the database kept a request from being done",
                extra={"request_id": request.request_id, "doing": what, "error": str(exc)})
    return Answer.failure(f"{database_trouble(what, exc)} Request {request.request_id}.", session_id="none")


@dataclass
class _Job:
    request: Request
    recorded: asyncio.Task[RecordedTurn] | None = None
    task: asyncio.Task[None] | None = None
    started: float | None = None
    queued_at: float = field(default_factory=time.monotonic)
    told: bool = False  # the person has the answer, or was told why not
    taken_over: bool = False  # another replica took this turn (our lease lapsed): it answers, not us
    placeholder_kept: bool = False  # where its placeholder is, is in its turn row

    @property
    def placeholder(self) -> dict[str, Any] | None:
        """Where the request's placeholder is, for ports that post one (e.g. Slack's)."""
        return getattr(self.request.port, "placeholder_ref", None)

    @property
    def turn_id(self) -> int | None:
        recorded = self.recorded
        if recorded is None or not recorded.done() or recorded.cancelled() or recorded.exception() is not None:
            return None
        return recorded.result().turn_id


class Dispatcher:
    """Accepts requests from every platform and runs them on the engine.

    Admission: at most `max_concurrency` requests run; up to `max_queued` more wait in this process's
    own queue (each told its place in line); past that a request is told at once that the bot is
    overloaded. Every database step of a request retries with backoff within `db_deadline`, the steps
    that take it within the one its intake opened (Core.taking)."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        *,
        max_concurrency: int = 16,
        max_queued: int = 100,
        timeout: float = 120.0,
        drain_seconds: float = 20.0,
        notifiers: Mapping[str, Notifier] | None = None,
        heartbeat_seconds: float = 10.0,
        stale_after: float = 30.0,
        db_deadline: float = 30.0,
        lease_timeout: float = 5.0,
    ):
        self.store = store
        self.engine = engine
        self.timeout = timeout
        self.drain_seconds = drain_seconds
        self.notifiers: dict[str, Notifier] = dict(notifiers or {})
        self.instance_id = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self.max_concurrency = max_concurrency
        self.max_queued = max_queued
        self.db_deadline = db_deadline
        self._slots = asyncio.Semaphore(max_concurrency)
        self._threads: dict[ConversationKey, deque[_Job]] = {}
        self._workers: dict[ConversationKey, asyncio.Task[None]] = {}
        self._running: dict[ConversationKey, _Job] = {}
        self._accepting = True
        self.ready = False  # the database answered and this replica holds a lease
        self._heartbeat_seconds = heartbeat_seconds
        self._stale_after = stale_after
        self._lease_timeout = min(lease_timeout, heartbeat_seconds)
        self._background: set[asyncio.Task[object]] = set()
        self._loops: list[asyncio.Task[None]] = []
        # final turn updates the database could not take yet: turn id -> values, retried on each sweep
        self._unsettled: dict[int, dict[str, Any]] = {}
        self._posting = 0  # placeholders being posted
        self._posted = asyncio.Event()
        self._posted.set()

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Take a lease, report the turns that a crash (of any replica) cut off, start the beats."""
        await self.store.register(self.instance_id, self._stale_after)
        await self.recover()
        self.ready = True
        self._loops = [
            asyncio.create_task(self._heartbeat_loop(), name="dispatcher-heartbeat"),
            asyncio.create_task(self._sweep_loop(), name="dispatcher-sweep"),
        ]

    async def recover(self) -> int:
        """Mark interrupted the turns of replicas whose lease expired and tell their threads; returns how many."""
        orphans = await self.store.interrupt_orphans(self.instance_id, self._stale_after)
        for orphan in orphans:
            log.warning("turn interrupted by a restart", extra={"turn_request_id": orphan.turn.request_id})
            await self._notify(
                orphan.conversation,
                f"I was restarted while working on “{short(orphan.turn.text)}”; ask again. "
                f"(request {orphan.turn.request_id})",
                replace=orphan.turn.placeholder,
            )
        return len(orphans)

    async def _heartbeat_loop(self) -> None:
        """Renew the lease, on the store's own connection with a short timeout, and nothing else: the
        sweep or a busy pool must never delay it."""
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            try:
                async with asyncio.timeout(self._lease_timeout):
                    renewed = await self.store.renew_lease(self.instance_id, self._stale_after)
                if not renewed:
                    await self._lease_lost()
            except Exception as exc:  # the database may blip; the lease outlives a few missed beats
                log.warning("heartbeat failed", extra={"error": f"{exc.__class__.__name__}: {exc}"})

    async def _lease_lost(self) -> None:
        """Our lease expired (the loop or the database stalled longer than the staleness limit): other
        replicas may have taken our turns and told their threads. Take a new lease, and stop working on
        the turns that are no longer ours, without answering them."""
        log.warning("lease lost; taking a new one", extra={"instance_id": self.instance_id})
        async with asyncio.timeout(self._lease_timeout):
            await self.store.register(self.instance_id, self._stale_after)
        running = {job.turn_id: job for job in self._running.values() if job.turn_id is not None}
        with database_deadline(self._lease_timeout):
            ended = await self.store.turns_ended(running)
        for turn_id in ended:
            job = running[turn_id]
            job.taken_over = True
            if job.task is not None:
                job.task.cancel()

    async def _sweep_loop(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            steps: list[Callable[[], Awaitable[object]]] = [
                self._settle_pending, self._keep_placeholders, self._cancel_requested, self.recover
            ]
            if beats % 360 == 0:  # about hourly: event ids only matter while a platform may redeliver
                steps.append(lambda: self.store.forget_events(EVENT_MEMORY))
            for step in steps:
                try:
                    await step()
                except Exception as exc:  # the database may blip; the next sweep tries again
                    log.warning("sweep step failed", extra={"error": f"{exc.__class__.__name__}: {exc}"})
            beats += 1

    async def shutdown(self) -> None:
        """Stop taking work, let work finish until the drain deadline, then tell every request still
        pending, whatever it was doing (waiting for its thread, a slot or the database, or running)."""
        self._accepting = False
        jobs = [job for queue in self._threads.values() for job in queue]
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self.drain_seconds)
            if pending:
                log.warning("drain deadline reached", extra={"unfinished": len(pending)})
            stuck = [job.recorded for job in jobs if job.recorded is not None and not job.recorded.done()]
            for task in [*pending, *stuck]:
                task.cancel()
            await asyncio.gather(*pending, *stuck, return_exceptions=True)
        if self._background:  # answers that exist are being delivered: let them, rather than say "restarting"
            await asyncio.wait(list(self._background), timeout=2.0)
        await asyncio.gather(*(self._tell_interrupted(job) for job in jobs if not job.told))
        if self._background:
            await asyncio.wait(list(self._background), timeout=self.drain_seconds or None)
        # the heartbeat goes on while draining: other replicas must not take the turns still finishing here
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self.ready:
            try:
                await self._settle_pending(within=2.0)  # a last try, short: the pod has a grace period
                async with asyncio.timeout(self._lease_timeout):
                    await self.store.retire(self.instance_id)
            except Exception as exc:  # the lease then expires by itself
                log.warning("could not retire this instance", extra={"error": f"{exc.__class__.__name__}: {exc}"})

    async def _tell_interrupted(self, job: _Job) -> None:
        request = job.request
        await self._deliver(
            job,
            Answer.failure(
                f"I'm restarting and could not finish “{short(request.text)}”; ask again. "
                f"(request {request.request_id})",
                status="cancelled",
            ),
        )
        if job.turn_id is not None:
            with database_deadline(min(self.db_deadline, 2.0)):
                await self._settle(job.turn_id, {"status": TurnState.INTERRUPTED})

    # --- intake ----------------------------------------------------------------------------------
    def submit(self, request: Request) -> str:
        """Queue a request and return its id at once; the answer goes to `request.port`."""
        text = request.text.strip()
        if CANCEL.match(text):
            self._spawn(self._control(request, self._cancel))
            return request.request_id
        if STATUS.match(text):
            self._spawn(self._control(request, self._status))
            return request.request_id
        if not self._accepting:
            self._refuse(request, RESTARTING, "interrupted")
            return request.request_id
        if not self.ready:
            self._refuse(request, f"{NOT_READY} Request {request.request_id}.", "failed")
            return request.request_id
        waiting = self.pending()
        if waiting >= self.max_concurrency + self.max_queued:
            self._refuse(
                request,
                f"I'm overloaded: {waiting} requests are ahead of yours. Ask again in a few minutes. "
                f"Request {request.request_id}.",
                "busy",
            )
            return request.request_id
        job = _Job(request)
        # Recording starts now, so a request is in the database (and its thread's order fixed across
        # replicas) even while it waits behind others; it waits in this process, never in the pool.
        job.recorded = asyncio.create_task(self._record(job, in_line=waiting - self.max_concurrency + 1))
        queue = self._threads.setdefault(request.key, deque())
        queue.append(job)
        QUEUE_DEPTH.inc()
        if request.key not in self._workers:
            # in a context of its own: the worker outlives this request, whose intake deadline (Core.taking) it
            # must not inherit for the requests after it
            self._workers[request.key] = asyncio.create_task(self._work(request.key), name=f"thread-{request.key}",
                                                             context=contextvars.Context())
        return request.request_id

    def pending(self) -> int:
        """Requests accepted and not finished: running, or waiting for their thread or a slot."""
        return sum(len(queue) for queue in self._threads.values())

    def in_flight(self) -> list[Request]:
        return [job.request for queue in self._threads.values() for job in queue]

    def _refuse(self, request: Request, message: str, outcome: str) -> None:
        OUTCOMES.labels(outcome).inc()
        self._spawn(request.port.post(message))

    async def _record(self, job: _Job, in_line: int) -> RecordedTurn:
        request = job.request
        # The placeholder goes out before any database work: it is what the person is waiting for.
        ahead = len(self._threads.get(request.key, ())) - 1
        note = self.engine.acknowledgement(request.text)
        if ahead > 0:
            note += f" (queued behind {ahead} earlier request{'s' if ahead > 1 else ''} in this thread)"
        elif in_line > 0:
            note += f" (I'm busy: you are number {in_line} in line)"
        self._posting += 1
        self._posted.clear()
        try:
            await request.port.progress(note)
        finally:
            self._posting -= 1
            if not self._posting:
                self._posted.set()
        # A burst's last placeholders would wait behind the first ones' database work on this one thread:
        # recording waits (a little) until the placeholders being posted beside it are out.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PLACEHOLDERS_FIRST):
                await self._posted.wait()
        with database_deadline(self.db_deadline):
            # the session (on a thread's first request) and the turn in one transaction; when nothing here is
            # ahead of it (first in its thread, and a slot free for every request waiting) it starts in it too
            return await self.store.record_turn(
                request.key, request.reference, request.request_id, request.text, request.user, self.instance_id,
                start=ahead <= 0 and in_line <= 0, placeholder=job.placeholder,
            )

    # --- work ------------------------------------------------------------------------------------
    async def _work(self, key: ConversationKey) -> None:
        queue = self._threads[key]
        try:
            while queue:
                job = queue[0]
                try:
                    await self._run(job)
                except Exception:  # one job's failure never ends its thread's queue
                    log.exception("request failed outside its handling", extra={"request": job.request.request_id})
                    if not job.told:
                        await self._deliver(job, self._failure(job.request))
                finally:
                    queue.popleft()
                    QUEUE_DEPTH.dec()
        finally:
            self._threads.pop(key, None)
            self._workers.pop(key, None)

    async def _run(self, job: _Job) -> None:
        request = job.request
        request_id_var.set(request.request_id)
        assert job.recorded is not None
        # The slot is taken before waiting for the record, so a full house serves threads in the order
        # their requests arrived (the semaphore is FIFO, workers start in submission order).
        async with self._slots:
            try:
                recorded = await job.recorded
            except DatabaseError as exc:
                await self._deliver(job, database_failure("take this request", exc, request))
                return
            except Exception:
                log.exception("could not record the request")
                await self._deliver(
                    job,
                    Answer.failure(
                        "I could not start on this: my database did not take the request; ask again. "
                        f"The error is logged under request {request.request_id}.",
                        session_id="none",
                    ),
                )
                return
            job.started = time.monotonic()
            job.task = asyncio.current_task()  # type: ignore[assignment]
            REQUESTS_IN_FLIGHT.inc()
            try:
                await self._execute(job, recorded)
            finally:
                REQUESTS_IN_FLIGHT.dec()

    async def _begin(self, job: _Job, recorded: RecordedTurn) -> Conversation | None:
        """Mark the turn running once every earlier turn of its thread (on any replica) has ended, unless
        recording it did; None when it can no longer run (another replica took it over and told its thread)."""
        request = job.request
        placeholder = job.placeholder
        start = recorded.start
        job.placeholder_kept = placeholder is not None
        delay, waited, told = 0.2, 0.0, False
        while True:
            if start is None:
                with database_deadline(self.db_deadline):
                    start = await self.store.start_turn(recorded.turn_id, self.instance_id, placeholder)
            if not start.blocked:
                if start.conversation is None:
                    job.told = True  # whoever ended it said so in the thread
                return start.conversation
            if waited >= self.timeout:
                raise TimeoutError("an earlier request in this thread is still running on another replica")
            if not told:
                await request.port.progress("Waiting for an earlier request in this thread to finish…")
                told = True
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)
            start = None

    async def _execute(self, job: _Job, recorded: RecordedTurn) -> None:
        request = job.request
        session_id, turn_id = recorded.session_id, recorded.turn_id
        started = time.monotonic()
        answer: Answer
        # Cancellable from the moment it counts as running until the answer exists; a cancel must
        # never cut the answer's delivery or bookkeeping.
        self._running[request.key] = job
        try:
            try:
                session = await self._begin(job, recorded)
                if session is None:
                    return
                async with asyncio.timeout(self.timeout):
                    answer = await self.engine.handle(request, session, request.port.progress)
            finally:
                self._running.pop(request.key, None)
        except DatabaseError as exc:
            answer = database_failure("start on this", exc, request)
        except TimeoutError as exc:
            # whatever timed out inside says so in the log; the person reads the request's own limit
            log.warning("request timed out", extra={"request_id": request.request_id, "error": repr(exc)})
            answer = Answer.failure(
                f"Timed out after {self.timeout:g} s while working on “{short(request.text)}”. "
                f"Request {request.request_id}.",
            )
        except asyncio.CancelledError:
            if not self._accepting:
                raise  # shutdown tells the thread
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the cancel was for this request only: the thread's queue goes on
            if job.taken_over:
                job.told = True  # the replica that took it over told the thread
                log.warning("turn taken over by another replica; not answering it")
                return
            answer = Answer.failure(f"Cancelled “{short(request.text)}”.", status="cancelled")
        except Exception:
            log.exception("engine failed")  # the exception goes to the log with the request id, not into the chat
            answer = self._failure(request)
        elapsed = int((time.monotonic() - started) * 1000)
        answer = answer.model_copy(
            update={"session_id": session_id, "elapsed_ms": elapsed, "request_id": request.request_id}
        )
        REQUESTS.labels(answer.intent, answer.status).inc()
        REQUEST_DURATION.labels(answer.intent, answer.status).observe(elapsed / 1000)
        values = {
            "status": TurnState(answer.status),
            "intent": answer.intent,
            "service": answer.service,
            "answer": answer.to_json(),
            "error": answer.summary if answer.status == "failed" else None,
            "elapsed_ms": elapsed,
            "remember_service": True,
        }
        # a cancel (shutdown's drain deadline) must never cut an answer that exists
        await asyncio.shield(self._spawn(self._finish(job, turn_id, values, answer)))

    async def _finish(self, job: _Job, turn_id: int, values: dict[str, Any], answer: Answer) -> None:
        # The turn is closed before the answer goes out: a replica whose turn was taken over (its lease
        # lapsed) must not answer a thread that was already told. When the database cannot take it now,
        # the answer still goes out and the update is retried later.
        with database_deadline(self.db_deadline):
            owned = await self._settle(turn_id, values)
        if owned is False:
            job.told = True
            log.warning("turn taken over by another replica; not answering it")
            return
        await self._deliver(job, answer)

    async def _settle(self, turn_id: int, values: dict[str, Any]) -> bool | None:
        """Write a turn's final state: True when written, False when the turn was no longer active
        (taken over), None when the database could not take it (kept and retried on each sweep)."""
        try:
            return await self.store.update_turn(turn_id, **values)
        except DatabaseError as exc:
            log.warning("could not close a turn; retrying later", extra={"turn_id": turn_id, "error": str(exc)})
            self._unsettled[turn_id] = values
        except Exception:
            # Not the database being away: something in the results. The status alone is what keeps a
            # restart from telling an answered thread "I was restarted"; it is retried until it lands.
            log.exception("could not close a turn; keeping its status only", extra={"turn_id": turn_id})
            self._unsettled[turn_id] = {"status": values["status"]}
            try:
                await self._settle_pending()
            except Exception as exc:
                log.warning("could not close a turn; retrying later", extra={"turn_id": turn_id, "error": str(exc)})
        return None

    async def _keep_placeholders(self) -> None:
        """Store where the placeholders posted after their turn started are, so that whoever ends the
        turn after a crash replaces it rather than leave "Looking into it…" above its notice."""
        for job in list(self._running.values()):
            placeholder, turn_id = job.placeholder, job.turn_id
            if not job.placeholder_kept and placeholder is not None and turn_id is not None:
                with database_deadline(self._heartbeat_seconds):
                    await self.store.set_placeholder(turn_id, placeholder)
                job.placeholder_kept = True

    async def _settle_pending(self, within: float | None = None) -> None:
        for turn_id, values in list(self._unsettled.items()):
            with database_deadline(within or min(self.db_deadline, self._heartbeat_seconds)):
                await self.store.update_turn(turn_id, **values)
            self._unsettled.pop(turn_id, None)

    def _failure(self, request: Request) -> Answer:
        return Answer.failure(
            f"Something went wrong on my side while working on “{short(request.text)}”. "
            f"The error is logged under request {request.request_id}.",
        )

    async def _deliver(self, job: _Job, answer: Answer) -> None:
        job.told = True
        request = job.request
        OUTCOMES.labels(_outcome(answer)).inc()
        try:
            await request.port.post(answer)
            for recommendation in answer.recommendations:
                if recommendation.approval_id:
                    approval = await self.store.get_approval(recommendation.approval_id)
                    if approval is not None:
                        await request.port.ask_approval(approval)
        except Exception:
            log.exception("could not deliver the answer")

    # --- control ---------------------------------------------------------------------------------
    async def _control(self, request: Request, action: Any) -> None:
        try:
            with database_deadline(self.db_deadline):
                await action(request)
        except DatabaseError as exc:
            await request.port.post(database_failure(f"do “{short(request.text)}”", exc, request))

    async def _cancel(self, request: Request) -> None:
        job = self._running.get(request.key)
        if job is not None and job.task is not None:
            job.task.cancel()
            await request.port.post(f"Cancelling “{short(job.request.text)}”.")
            return
        # the thread's request may run on another replica: flag it, its owner cancels it on its next beat
        turn = await self.store.request_cancel(request.key)
        if turn is None:
            await request.port.post("Nothing is running in this thread.")
            return
        await request.port.post(
            f"Cancelling “{short(turn.text)}” (it is running on another srebot replica; "
            f"it stops within {self._heartbeat_seconds:g} s)."
        )

    async def _cancel_requested(self) -> None:
        """Cancel the requests running here that a "cancel" on another replica flagged in the database."""
        flagged = set(await self.store.cancel_requests(self.instance_id))
        for job in list(self._running.values()):
            if job.request.request_id in flagged and job.task is not None:
                job.task.cancel()

    async def _status(self, request: Request) -> None:
        local = {job.request.request_id: job for queue in self._threads.values() for job in queue}
        turns = await self.store.active_turns()
        if not turns:
            await request.port.post(Answer(intent="status", summary="Nothing in flight.", session_id="none"))
            return
        now = time.monotonic()
        lines = []
        for turn in turns:
            job = local.get(turn.request_id)
            age = f"{now - job.queued_at:.0f} s" if job else "on another replica"
            lines.append(f"• {turn.status}: “{short(turn.text, 60)}” by {turn.user_id} ({age})")
        await request.port.post(
            Answer(intent="status", summary=f"{len(turns)} in flight:\n" + "\n".join(lines), session_id="none")
        )

    # --- helpers ---------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[object]) -> asyncio.Task[object]:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)  # type: ignore[assignment]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _notify(self, conversation: Conversation, message: str, *, replace: dict[str, Any] | None = None) -> None:
        notifier = self.notifiers.get(conversation.key.platform)
        if notifier is None:
            return
        try:
            if replace:
                await notifier.say(conversation, message, replace=replace)
            else:
                await notifier.say(conversation, message)
        except Exception:
            log.exception("could not notify a thread")

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or running (for the CLI and tests)."""
        while self._workers or self._background:
            await asyncio.gather(*self._workers.values(), *self._background, return_exceptions=True)


def _outcome(answer: Answer) -> str:
    """The outcome a person saw: answered, or told it failed, was interrupted or the bot was busy."""
    if answer.status == "completed":
        return "answered"
    if answer.status == "cancelled" and answer.summary.startswith("I'm restarting"):
        return "interrupted"
    return "failed"
