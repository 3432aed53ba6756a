"""Runs requests as asyncio tasks: per-thread FIFO, a global limit, timeouts, cancel, drain and crash recovery."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from bot.answer import Answer
from bot.engine.base import Engine
from bot.logging_setup import request_id_var
from bot.telemetry import QUEUE_DEPTH, REQUEST_DURATION, REQUESTS, REQUESTS_IN_FLIGHT
from bot.ports import Notifier, Request
from bot.wording import short
from sessions.store import Conversation, ConversationKey, Store, TurnState

log = logging.getLogger("srebot.dispatcher")

EVENT_MEMORY = timedelta(days=1)  # how long delivered platform event ids are kept for dedupe
CANCEL = re.compile(r"^\s*(cancel|stop|abort)\s*[.!]?\s*$", re.I)
STATUS = re.compile(r"^\s*status\s*\??\s*$", re.I)


@dataclass
class _Job:
    request: Request
    recorded: asyncio.Task[tuple[str, int]] | None = None
    task: asyncio.Task[None] | None = None
    started: float | None = None
    queued_at: float = field(default_factory=time.monotonic)


class Dispatcher:
    """Accepts requests from every platform and runs them on the engine."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        *,
        max_concurrency: int = 16,
        timeout: float = 120.0,
        drain_seconds: float = 20.0,
        notifiers: Mapping[str, Notifier] | None = None,
        heartbeat_seconds: float = 10.0,
        stale_after: float = 30.0,
    ):
        self.store = store
        self.engine = engine
        self.timeout = timeout
        self.drain_seconds = drain_seconds
        self.notifiers: dict[str, Notifier] = dict(notifiers or {})
        self.instance_id = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self._limit = asyncio.Semaphore(max_concurrency)
        self._threads: dict[ConversationKey, deque[_Job]] = {}
        self._workers: dict[ConversationKey, asyncio.Task[None]] = {}
        self._running: dict[ConversationKey, _Job] = {}
        self._accepting = True
        self._heartbeat_seconds = heartbeat_seconds
        self._stale_after = stale_after
        self._background: set[asyncio.Task[object]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Register this instance, then report the turns that a crash (of any replica) cut off."""
        await self.store.heartbeat(self.instance_id)
        await self.recover()
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="dispatcher-heartbeat")

    async def recover(self) -> int:
        """Mark orphaned turns interrupted and tell their threads; returns how many."""
        orphans = await self.store.interrupt_orphans(self.instance_id, self._stale_after)
        for orphan in orphans:
            log.warning("turn interrupted by a restart", extra={"turn_request_id": orphan.turn.request_id})
            await self._notify(
                orphan.conversation,
                f"I was restarted while working on “{short(orphan.turn.text)}”; ask again. "
                f"(request {orphan.turn.request_id})",
            )
        return len(orphans)

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            try:
                await self.store.heartbeat(self.instance_id)
                await self._cancel_requested()
                await self.recover()
                if beats % 360 == 0:  # about hourly: event ids only matter while a platform may redeliver
                    await self.store.forget_events(EVENT_MEMORY)
            except Exception:  # the database may blip; the next beat tries again
                log.exception("heartbeat failed")
            beats += 1

    async def shutdown(self) -> None:
        """Stop taking work, let running work finish until the drain deadline, interrupt the rest."""
        self._accepting = False
        jobs = [job for queue in self._threads.values() for job in queue]
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self.drain_seconds)
            if pending:
                log.warning("drain deadline reached", extra={"unfinished": len(pending)})
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # jobs that never started (waiting for their thread or a slot) are interrupted too, and told so
        for job in jobs:
            if job.started is None and job.recorded is not None and job.recorded.done() and not job.recorded.cancelled():
                if job.recorded.exception() is None:
                    await self._finish_interrupted(job, job.recorded.result()[1])
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        # the heartbeat goes on while draining: other replicas must not take the turns still finishing here
        if self._heartbeat_task:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        await self.store.retire(self.instance_id)

    # --- intake ----------------------------------------------------------------------------------
    def submit(self, request: Request) -> str:
        """Queue a request and return its id at once; the answer goes to `request.port`."""
        text = request.text.strip()
        if CANCEL.match(text):
            self._spawn(self._cancel(request))
            return request.request_id
        if STATUS.match(text):
            self._spawn(self._status(request))
            return request.request_id
        if not self._accepting:
            self._spawn(request.port.post("I'm restarting and not taking new work; ask again in a moment."))
            return request.request_id
        job = _Job(request)
        # Recording starts now, so a request is in the database even while it waits behind others.
        job.recorded = asyncio.create_task(self._record(job))
        queue = self._threads.setdefault(request.key, deque())
        queue.append(job)
        QUEUE_DEPTH.inc()
        if request.key not in self._workers:
            self._workers[request.key] = asyncio.create_task(self._work(request.key), name=f"thread-{request.key}")
        return request.request_id

    def in_flight(self) -> list[Request]:
        return [job.request for queue in self._threads.values() for job in queue]

    async def _record(self, job: _Job) -> tuple[str, int]:
        request = job.request
        # The placeholder goes out before any database work: it is what the person is waiting for.
        ahead = len(self._threads.get(request.key, ())) - 1
        note = self.engine.acknowledgement(request.text)
        if ahead > 0:
            note += f" (queued behind {ahead} earlier request{'s' if ahead > 1 else ''} in this thread)"
        await request.port.progress(note)
        session_id = await self.store.session_id_for(request.key, request.reference)
        # the turn row comes last, so a failure above leaves nothing "queued" for a restart to report
        turn_id = await self.store.create_turn(
            session_id, request.request_id, request.text, request.user, self.instance_id
        )
        return session_id, turn_id

    # --- work ------------------------------------------------------------------------------------
    async def _work(self, key: ConversationKey) -> None:
        queue = self._threads[key]
        try:
            while queue:
                job = queue[0]
                try:
                    await self._run(job)
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
        async with self._limit:
            try:
                session_id, turn_id = await job.recorded
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("could not record the request")
                await request.port.post(
                    Answer.failure(
                        f"I could not start on this ({exc.__class__.__name__}); ask again. "
                        f"Request {request.request_id}.",
                        session_id="none",
                    )
                )
                return
            job.started = time.monotonic()
            job.task = asyncio.current_task()  # type: ignore[assignment]
            REQUESTS_IN_FLIGHT.inc()
            try:
                await self._execute(job, session_id, turn_id)
            finally:
                REQUESTS_IN_FLIGHT.dec()

    async def _execute(self, job: _Job, session_id: str, turn_id: int) -> None:
        request = job.request
        started = time.monotonic()
        answer: Answer
        # Cancellable from the moment it counts as running until the answer exists; a cancel must
        # never cut the answer's delivery or bookkeeping.
        self._running[request.key] = job
        try:
            try:
                session = await self.store.start_turn(turn_id)
                if session is None:  # another replica took it for orphaned and said so in the thread
                    return
                async with asyncio.timeout(self.timeout):
                    answer = await self.engine.handle(request, session, request.port.progress)
            finally:
                self._running.pop(request.key, None)
        except TimeoutError:
            answer = Answer.failure(
                f"Timed out after {self.timeout:g} s while working on “{short(request.text)}”. "
                f"Request {request.request_id}.",
            )
        except asyncio.CancelledError:
            if not self._accepting:
                await self._finish_interrupted(job, turn_id)
                raise
            answer = Answer.failure(f"Cancelled “{short(request.text)}”.", status="cancelled")
            # the cancel was for this request only: swallow it so the thread's queue goes on
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception as exc:
            log.exception("engine failed")
            answer = Answer.failure(
                f"Something went wrong while working on “{short(request.text)}” "
                f"({exc.__class__.__name__}). Request {request.request_id}.",
            )
        elapsed = int((time.monotonic() - started) * 1000)
        answer = answer.model_copy(
            update={"session_id": session_id, "elapsed_ms": elapsed, "request_id": request.request_id}
        )
        REQUESTS.labels(answer.intent, answer.status).inc()
        REQUEST_DURATION.labels(answer.intent, answer.status).observe(elapsed / 1000)
        await self._deliver(request, answer)
        await self.store.update_turn(
            turn_id,
            TurnState(answer.status),
            intent=answer.intent,
            service=answer.service,
            answer=answer.to_json(),
            error=answer.summary if answer.status == "failed" else None,
            elapsed_ms=elapsed,
            remember_service=True,
        )

    async def _deliver(self, request: Request, answer: Answer) -> None:
        try:
            await request.port.post(answer)
            for recommendation in answer.recommendations:
                if recommendation.approval_id:
                    approval = await self.store.get_approval(recommendation.approval_id)
                    if approval is not None:
                        await request.port.ask_approval(approval)
        except Exception:
            log.exception("could not deliver the answer")

    async def _finish_interrupted(self, job: _Job, turn_id: int) -> None:
        request = job.request
        await asyncio.shield(self.store.update_turn(turn_id, TurnState.INTERRUPTED))
        await asyncio.shield(
            self._deliver(
                request,
                Answer.failure(
                    f"I'm restarting and could not finish “{short(request.text)}”; ask again. "
                    f"(request {request.request_id})",
                    status="cancelled",
                ),
            )
        )

    # --- control ---------------------------------------------------------------------------------
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
    def _spawn(self, coro: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)  # type: ignore[assignment]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(self, conversation: Conversation, message: str) -> None:
        notifier = self.notifiers.get(conversation.key.platform)
        if notifier is None:
            return
        try:
            await notifier.say(conversation, message)
        except Exception:
            log.exception("could not notify a thread")

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or running (for the CLI and tests)."""
        while self._workers or self._background:
            await asyncio.gather(*self._workers.values(), *self._background, return_exceptions=True)
