"""The one store API over the database: sessions, turns, event dedupe, instances, approvals and audit."""

from __future__ import annotations

import asyncio
import functools
import secrets
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from cachetools import TTLCache
from sqlalchemy import DateTime, Row, and_, bindparam, delete, exists, func, insert, literal, or_, select, text, tuple_, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from sessions.db import Places, PoolSettings, async_url, is_sqlite, make_engine, make_lease_engine
from sessions.models import (
    ApprovalRow,
    AuditRow,
    ConversationRow,
    FeedbackRow,
    InstanceRow,
    ProcessedEventRow,
    TurnRow,
)

class TurnState(StrEnum):
    """Where a request is; str-valued, so stored values and JSON are the plain words."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # a restart or a crash cut it off


ACTIVE_TURN = (TurnState.QUEUED, TurnState.RUNNING)
FINAL_TURN = (TurnState.COMPLETED, TurnState.FAILED, TurnState.CANCELLED, TurnState.INTERRUPTED)


class ApprovalState(StrEnum):
    """pending → approved → executed | failed, or pending → rejected | expired."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTED = "executed"
    FAILED = "failed"

THREAD_LOCK = 7262002  # advisory lock namespace of "one thread's turns" (7262001 guards migrations)

P = ParamSpec("P")
R = TypeVar("R")

# The monotonic time by which every database step of the current request must be done, retries included.
_DEADLINE: ContextVar[float | None] = ContextVar("srebot_database_deadline", default=None)
# Set by a transaction of a SQLite step once it holds a connection (see Store._to_the_end).
_CONNECTED: ContextVar[list[bool] | None] = ContextVar("srebot_sqlite_connected", default=None)


@contextmanager
def database_deadline(seconds: float) -> Iterator[None]:
    """Give every database step inside (in this task, and in tasks it starts) one shared deadline. Inside an
    earlier deadline the earlier one holds: a request's steps (its claim, its session, its turn) share the
    deadline its intake opened, however many of them there are."""
    outer = _DEADLINE.get()
    token = _DEADLINE.set(min(time.monotonic() + seconds, outer if outer is not None else math.inf))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


class DatabaseError(Exception):
    """The database did not do a step before the deadline: it is down, overloaded or refused it."""

    def __init__(self, cause: BaseException):
        detail = " ".join(str(cause).split())[:160]
        super().__init__(f"{cause.__class__.__name__}" + (f": {detail}" if detail else ""))
        self.cause = cause


def transient(exc: BaseException) -> bool:
    """A failure another try may not meet: no connection, a dropped one, a full pool, a server restarting."""
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError, OSError, TimeoutError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return True
        # connection exceptions (08), operator intervention such as a shutdown (57P), no resources (53)
        state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
        return state.startswith(("08", "57P", "53"))
    return False


def retried(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Retry a store step (which must be safe to repeat) with backoff until the current deadline;
    a failure is raised as DatabaseError."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store: Store = args[0]  # type: ignore[assignment]
        return await store.retrying(lambda: method(*args, **kwargs))

    return wrapper


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id(prefix: str) -> str:
    # hex only: ADK session ids must not contain dots
    return f"{prefix}_{secrets.token_hex(12)}"


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass(frozen=True)
class ConversationKey:
    """Where a conversation lives: platform, workspace (team / tenant), channel and thread."""

    platform: str
    workspace: str
    channel: str
    thread: str


@dataclass
class Conversation:
    id: str
    key: ConversationKey
    current_service: str | None
    reference: dict[str, Any] | None
    created_at: datetime
    last_active_at: datetime


@dataclass
class TurnRecord:
    id: int
    session_id: str
    request_id: str
    user_id: str
    text: str
    status: TurnState
    intent: str | None = None
    service: str | None = None
    answer: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime | None = None
    elapsed_ms: int | None = None
    placeholder: dict[str, Any] | None = None


@dataclass
class TurnStart:
    """What `start_turn` found: the turn runs here now (`conversation`), must wait for an earlier turn
    of its thread that another replica is still running (`blocked`), or is no longer active (neither)."""

    conversation: Conversation | None = None
    blocked: bool = False


@dataclass
class RecordedTurn:
    """What `record_turn` wrote: the thread's session and the turn, and, when it was asked to start the turn
    too, what starting it found (None when it was not asked)."""

    session_id: str
    turn_id: int
    start: TurnStart | None = None


@dataclass(frozen=True)
class Actor:
    """A person acting on the bot, where and how: what the policy (bot.policy) decides on and what an audit
    row records."""

    user: str
    platform: str
    workspace: str = ""  # Slack team, Teams tenant, "local" for the terminal
    channel: str = ""  # Slack channel, Teams conversation, "terminal"
    via: str = "message"  # message, command, button, card, cli, chat, alert
    external: bool = False  # another organisation's person (Slack Connect, a Teams guest or external tenant)
    groups: frozenset[str] = field(default_factory=frozenset)  # group ids the platform vouches for
    # why whether this person is of this organisation could not be established (e.g. the Teams member lookup
    # failed): like `external`, they read but neither propose nor approve, and are told this reason
    unverified: str = ""


@dataclass(frozen=True)
class Origin:
    """Who asks for a change, and from which thread; `actor` says where and how they asked (a bare user on
    `platform` when not given)."""

    user: str
    platform: str
    session_id: str | None = None
    request_id: str | None = None
    actor: Actor | None = None

    @property
    def who(self) -> Actor:
        return self.actor or Actor(self.user, self.platform)


@dataclass(frozen=True)
class Proposal:
    """A described write action someone asks for: what becomes an approval row."""

    kind: str
    target: str
    params: dict[str, Any]
    description: str  # exactly what will change ("replicas 3 → 5")
    origin: Origin


@dataclass
class ApprovalRecord:
    id: str
    kind: str
    target: str
    params: dict[str, Any]
    description: str
    requester: str
    platform: str
    status: ApprovalState
    session_id: str | None
    request_id: str | None
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    finished_at: datetime | None = None
    result: str | None = None
    message_ref: dict[str, Any] | None = None
    decided_via: str | None = None  # button, card, cli, chat

    @property
    def via_note(self) -> str:
        """" (via CLI)" for a decision typed in a shell, whose name the operator gave; "" for a click."""
        return {"cli": " (via CLI)", "chat": " (via srebot chat)"}.get(self.decided_via or "", "")

    @property
    def decider(self) -> str:
        """Who decided as a thread says it: "U0BOB", or "U0BOB (via CLI)" for a decision made in a shell."""
        return f"{self.decided_by or '?'}{self.via_note}"


@dataclass
class AuditRecord:
    id: int
    at: datetime
    event: str
    actor: str
    approval_id: str | None
    kind: str | None
    target: str | None
    detail: str | None
    platform: str | None = None
    workspace: str | None = None
    channel: str | None = None
    via: str | None = None


@dataclass
class FeedbackRecord:
    at: datetime
    rating: str  # good | bad
    user_id: str
    turn: TurnRecord


@dataclass
class Interrupted:
    turn: TurnRecord
    conversation: Conversation


class _Hot:
    """The statements every request runs (record, start and finish a turn), built once per dialect and executed
    with parameters on a Core connection: building an ORM statement per call, computing its cache key and the
    ORM's execution path cost several times the database round trips in CPU (profiled under load)."""

    def __init__(self, dialect_insert: Callable[..., Any]):
        conversations, turns = ConversationRow.__table__, TurnRow.__table__
        self.new_session = (
            dialect_insert(conversations)
            .on_conflict_do_nothing(index_elements=["platform", "workspace", "channel", "thread"])
            .returning(*conversations.c)
        )
        self.session_of = select(conversations.c.id).where(
            conversations.c.platform == bindparam("platform"),
            conversations.c.workspace == bindparam("workspace"),
            conversations.c.channel == bindparam("channel"),
            conversations.c.thread == bindparam("thread"),
        )
        self.lock_thread = text("SELECT pg_advisory_xact_lock(:ns, hashtext(:session))")
        self.lock_turn = text("SELECT pg_advisory_xact_lock(:ns, hashtext(session_id)) FROM turns WHERE id = :turn_id")
        self.new_turn = (
            dialect_insert(turns).on_conflict_do_nothing(index_elements=["request_id"]).returning(turns.c.id)
        )
        self.turn_of = select(turns.c.id).where(turns.c.request_id == bindparam("request"))
        self.status_of = select(turns.c.status).where(turns.c.id == bindparam("turn_id"))
        active = and_(turns.c.id == bindparam("turn_id"), turns.c.status.in_(ACTIVE_TURN))
        # the columns set come from the parameters' names (status, started_at, placeholder, instance_id, ...)
        started = update(turns).where(active).returning(turns.c.session_id)
        earlier = turns.alias("earlier")
        self.start = started
        self.start_in_order = started.where(
            ~exists().where(
                earlier.c.session_id == turns.c.session_id,
                earlier.c.id < turns.c.id,
                earlier.c.status.in_(ACTIVE_TURN),
                # this replica's own earlier turns are ordered by its thread queue
                earlier.c.instance_id != bindparam("instance"),
            )
        )
        events = ProcessedEventRow.__table__
        self.new_events = (
            dialect_insert(events)
            .on_conflict_do_nothing(index_elements=["platform", "event_id"])
            .returning(events.c.platform, events.c.event_id)
        )
        self.claimed_by = select(events.c.platform, events.c.event_id).where(
            events.c.claimed_by == bindparam("token"),
            tuple_(events.c.platform, events.c.event_id).in_(bindparam("keys", expanding=True)),
        )
        self.conversation = select(conversations).where(conversations.c.id == bindparam("session"))
        self.finish = update(turns).where(active)
        self.remember_service = update(conversations).where(
            conversations.c.id == select(turns.c.session_id).where(turns.c.id == bindparam("turn_id")).scalar_subquery()
        )


def _conversation(row: ConversationRow | Row[Any]) -> Conversation:
    return Conversation(
        id=row.id,
        key=ConversationKey(row.platform, row.workspace, row.channel, row.thread),
        current_service=row.current_service,
        reference=row.reference,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        last_active_at=_aware(row.last_active_at),  # type: ignore[arg-type]
    )


def _turn(row: TurnRow) -> TurnRecord:
    return TurnRecord(
        id=row.id,
        session_id=row.session_id,
        request_id=row.request_id,
        user_id=row.user_id,
        text=row.text,
        status=TurnState(row.status),
        intent=row.intent,
        service=row.service,
        answer=row.answer,
        error=row.error,
        created_at=_aware(row.created_at),
        elapsed_ms=row.elapsed_ms,
        placeholder=row.placeholder,
    )


def _approval(row: ApprovalRow) -> ApprovalRecord:
    return ApprovalRecord(
        id=row.id,
        kind=row.kind,
        target=row.target,
        params=dict(row.params or {}),
        description=row.description,
        requester=row.requester,
        platform=row.platform,
        status=ApprovalState(row.status),
        session_id=row.session_id,
        request_id=row.request_id,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        expires_at=_aware(row.expires_at),  # type: ignore[arg-type]
        decided_by=row.decided_by,
        decided_at=_aware(row.decided_at),
        finished_at=_aware(row.finished_at),
        result=row.result,
        message_ref=row.message_ref,
        decided_via=row.decided_via,
    )


EventKey = tuple[str, str]  # (platform, event id)
_Claim = tuple[tuple[EventKey, ...], float | None, "asyncio.Future[bool]"]  # an event's keys, its deadline, its answer


class GroupCommit:
    """Event claims, written together: a claim made while no write is in flight starts one at once; those
    made meanwhile wait for it and then go in the next write, all of them in one statement. An event is
    claimed when every one of its keys was new to the database and no earlier claim of the same write
    had it (the app_mention and message copies of one mention, arriving together, claim one key)."""

    MAX_KEYS = 1000  # per statement: three parameters a row stays far below every driver's limit

    def __init__(self, write: Callable[[list[EventKey]], Awaitable[set[EventKey]]]):
        self._write = write
        self._waiting: deque[_Claim] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def claim(self, keys: tuple[EventKey, ...]) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, _DEADLINE.get(), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="event-claims")
        return await future

    async def _drain(self) -> None:
        batch: list[_Claim] = []
        try:
            while self._waiting:
                batch = self._next_batch()
                await self._commit(batch)
        except BaseException:  # cancelled (shutdown): no claimer is left waiting for a write that never comes
            for _, _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting.clear()
            raise

    def _next_batch(self) -> list[_Claim]:
        batch: list[_Claim] = []
        count = 0
        while self._waiting and (not batch or count + len(self._waiting[0][0]) <= self.MAX_KEYS):
            claim = self._waiting.popleft()
            if not claim[2].done():  # a claimer cancelled (shutdown) claims nothing
                batch.append(claim)
                count += len(claim[0])
        return batch

    async def _commit(self, batch: list[_Claim]) -> None:
        owner: dict[EventKey, int] = {}
        for index, (keys, _, _) in enumerate(batch):
            for key in keys:
                owner.setdefault(key, index)
        # the claims of one write arrived within one round trip of each other: the latest deadline serves all
        deadlines = [deadline for _, deadline, _ in batch if deadline is not None]
        token = _DEADLINE.set(max(deadlines) if deadlines and len(deadlines) == len(batch) else None)
        try:
            new = await self._write(list(owner)) if owner else set()
        except Exception as exc:  # every claim of the write learns why (DatabaseError after retries)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            _DEADLINE.reset(token)
        for index, (keys, _, future) in enumerate(batch):
            if not future.done():
                future.set_result(all(key in new and owner[key] == index for key in keys))


class Store:
    """Async access to the database; one instance per process, shared by every platform."""

    def __init__(
        self,
        url: str,
        *,
        pool: PoolSettings = PoolSettings(),
        deadline: float = 30.0,
        lease_timeout: float = 5.0,
        cache_size: int = 10_000,
        cache_ttl: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.url = async_url(url)
        self.clock = clock  # the time stamped on rows and compared with expiry
        self.pool = pool
        self.engine: AsyncEngine = make_engine(self.url, pool)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")  # the same pool
        # the heartbeat's own engine: a busy pool must never make a live replica look dead
        self.lease_engine: AsyncEngine = make_lease_engine(self.url, lease_timeout)
        self.deadline = deadline  # for steps outside any request's `database_deadline`
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # the event claims' own connection (one writer at a time, see GroupCommit; a spare while a broken one
        # is being let go): a backlog of requests queued for the pool must never keep a new event from its
        # claim, and so from its placeholder
        # (in autocommit: a claim is one statement, so BEGIN and COMMIT would only add round trips)
        self.claim_engine: AsyncEngine = make_engine(
            self.url, PoolSettings(size=1, overflow=1, wait=pool.wait)
        ).execution_options(isolation_level="AUTOCOMMIT")
        # A transaction first takes one of these, so it never waits in (nor times out of) the pool:
        # it waits here, in order (a turn's start and finish ahead of new records), as long as its deadline allows.
        self._gate = Places(pool.connections)
        self._finishing: set[asyncio.Task[Any]] = set()  # SQLite steps ending after a cancel
        # thread -> session id never changes once created, so caching it is safe across replicas
        self._thread_cache: TTLCache[ConversationKey, str] = TTLCache(maxsize=cache_size, ttl=cache_ttl)
        self._dialect_insert = sqlite.insert if is_sqlite(self.url) else postgresql.insert
        self._claims = GroupCommit(self._insert_events)
        self._hot = _Hot(self._dialect_insert)

    async def close(self) -> None:
        await self.engine.dispose()
        await self.lease_engine.dispose()
        await self.claim_engine.dispose()

    @property
    def _postgres(self) -> bool:
        return not is_sqlite(self.url)

    def _now(self, offset: float = 0.0) -> ColumnElement[datetime]:
        """The database's clock (plus `offset` seconds) on PostgreSQL, so replicas with skewed clocks
        agree on every lease; the process's own clock on SQLite, which one process alone uses."""
        if self._postgres:
            return func.now() + timedelta(seconds=offset) if offset else func.now()
        return literal(self.clock() + timedelta(seconds=offset), DateTime(timezone=True))

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncSession]:
        async with self._gated(), self._sessions.begin() as db:
            yield db

    @asynccontextmanager
    async def _transaction(self, *, one_statement: bool = False, ahead: bool = False) -> AsyncIterator[AsyncConnection]:
        """`_begin` without the ORM session, for the statements of `_Hot`; for `one_statement`, in autocommit
        (the statement is its own transaction): BEGIN and COMMIT would only add round trips, each of which
        holds a place of the pool for as long as the event loop takes to come back to it. `ahead`: for a
        turn that holds a request's slot (see `Places`)."""
        async with self._gated(ahead=ahead), (self._autocommit.connect() if one_statement else self.engine.begin()) as conn:
            yield conn

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        async with self._gated(), self._sessions() as db:
            yield db

    @asynccontextmanager
    async def _gated(self, *, ahead: bool = False) -> AsyncIterator[None]:
        """A place at the gate, waited for until the step's deadline; past it the step failed as one that
        waited for the pool does (the person reads that all the database's connections were busy)."""
        deadline = _DEADLINE.get()
        try:
            async with asyncio.timeout(None if deadline is None else max(0.0, deadline - time.monotonic())):
                await self._gate.acquire(ahead=ahead)
        except TimeoutError as exc:
            raise self._all_busy() from exc
        try:
            async with self._connected():
                yield
        finally:
            self._gate.release()

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[None]:
        connected = _CONNECTED.get()
        if connected is not None:
            connected.append(True)
        yield

    async def retrying(self, step: Callable[[], Awaitable[R]]) -> R:
        """Run `step` again after transient failures, with jittered backoff, until the deadline."""
        deadline = _DEADLINE.get() or time.monotonic() + self.deadline
        attempts = AsyncRetrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential_jitter(initial=0.05, max=2.0),
            stop=lambda state: time.monotonic() + (state.upcoming_sleep or 0) >= deadline,
            reraise=True,
        )
        token = _DEADLINE.set(deadline)  # the gate's wait ends there too
        try:
            async for attempt in attempts:
                with attempt:
                    if not self._postgres:
                        # SQLite: the deadline bounds the wait for the gate and the retries, SQLite's busy
                        # timeout each statement; a step is never cut in the middle (see _to_the_end)
                        return await self._to_the_end(step)
                    return await self._before(deadline, step)
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise DatabaseError(exc) from exc
        finally:
            _DEADLINE.reset(token)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    async def _before(self, deadline: float, step: Callable[[], Awaitable[R]]) -> R:
        """`step`, cut at the deadline; one cut before it had a connection failed as a wait for the pool does."""
        connected: list[bool] = []
        token = _CONNECTED.set(connected)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await step()
        except TimeoutError as exc:
            if connected:
                raise
            raise self._all_busy() from exc
        finally:
            _CONNECTED.reset(token)

    def _all_busy(self) -> sa_exc.TimeoutError:
        return sa_exc.TimeoutError(f"all {self.pool.connections} connections stayed busy until the deadline")

    async def _to_the_end(self, step: Callable[[], Awaitable[R]]) -> R:
        """On SQLite, a step that got its connection runs to its end even when it is cancelled (a caller's
        timeout, a shutdown): cut in the middle of a statement, its connection was left to the garbage
        collector with its transaction open, and the file's one write lock with it, so every other write
        (the heartbeat's too) waited on it until a collection ran. The cancel then takes effect once the step
        ended (within SQLite's busy timeout); a step still waiting for the gate is cancelled at once."""
        connected: list[bool] = []
        token = _CONNECTED.set(connected)
        try:
            task = asyncio.ensure_future(step())  # the task copies the context, and so `connected`
        finally:
            _CONNECTED.reset(token)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not connected:
                task.cancel()
                raise
            self._finishing.add(task)  # kept referenced, should a second cancel stop the wait below
            task.add_done_callback(self._finished)
            await asyncio.wait([task])
            raise

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._finishing.discard(task)
        if not task.cancelled():
            task.exception()  # its caller was cancelled: whatever the step ran into is not for anyone now

    # --- schema ----------------------------------------------------------------------------------
    async def upgrade(self) -> None:
        """Apply Alembic migrations up to head; replicas starting together take turns (advisory lock)."""
        from alembic import command
        from alembic.config import Config

        migrations = Path(__file__).parent / "migrations"

        def run(connection: Any) -> None:
            config = Config()
            config.set_main_option("script_location", str(migrations))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with self.engine.begin() as conn:
            if not is_sqlite(self.url):
                await conn.execute(text("SELECT pg_advisory_xact_lock(7262001)"))
            await conn.run_sync(run)

    async def ping(self) -> None:
        """One round trip on the heartbeat's connection: a busy pool is not an unreachable database."""
        async with self.lease_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # --- conversations ---------------------------------------------------------------------------
    @retried
    async def session_id_for(self, key: ConversationKey, reference: dict[str, Any] | None = None) -> str:
        """The session of a thread, created on first use; concurrent first messages get one session."""
        found = await self.find_session_id(key)
        if found is not None:
            return found
        async with self._transaction() as conn:
            found, _ = await self._session_in(conn, key, reference)
        self._thread_cache[key] = found
        return found

    async def _session_in(
        self, conn: AsyncConnection, key: ConversationKey, reference: dict[str, Any] | None
    ) -> tuple[str, Conversation | None]:
        """In the transaction `conn`: the thread's session, inserted unless there is one (a concurrent insert
        of the same thread is waited for by the database, then read), and the session when this inserted it."""
        now = self.clock()
        where = {"platform": key.platform, "workspace": key.workspace, "channel": key.channel, "thread": key.thread}
        created = (await conn.execute(
            self._hot.new_session,
            {"id": new_id("s"), **where, "reference": reference, "created_at": now, "last_active_at": now},
        )).one_or_none()
        if created is not None:
            return created.id, _conversation(created)
        found = await conn.scalar(self._hot.session_of, where)
        assert found is not None
        return found, None

    @retried
    async def find_session_id(self, key: ConversationKey) -> str | None:
        """The session of a thread if one exists (a follow-up needs no mention only then)."""
        cached = self._thread_cache.get(key)
        if cached is not None:
            return cached
        found = await self._find_id(key)
        if found is not None:
            self._thread_cache[key] = found
        return found

    async def _find_id(self, key: ConversationKey) -> str | None:
        async with self._session() as db:
            return await db.scalar(self._id_of(key))

    @staticmethod
    def _id_of(key: ConversationKey) -> Any:
        return select(ConversationRow.id).where(
            ConversationRow.platform == key.platform,
            ConversationRow.workspace == key.workspace,
            ConversationRow.channel == key.channel,
            ConversationRow.thread == key.thread,
        )

    @retried
    async def get_session(self, session_id: str) -> Conversation | None:
        async with self._session() as db:
            row = await db.get(ConversationRow, session_id)
            return _conversation(row) if row else None

    @retried
    async def update_session(
        self,
        session_id: str,
        *,
        current_service: str | None = None,
        reference: dict[str, Any] | None = None,
    ) -> None:
        values: dict[str, Any] = {"last_active_at": self.clock()}
        if current_service is not None:
            values["current_service"] = current_service
        if reference is not None:
            values["reference"] = reference
        async with self._begin() as db:
            await db.execute(update(ConversationRow).where(ConversationRow.id == session_id).values(**values))

    # --- turns -----------------------------------------------------------------------------------
    async def _lock_thread(self, conn: AsyncConnection, session_id: str) -> None:
        """Serialise the turn bookkeeping of one thread across replicas until the transaction ends
        (SQLite has one writer at a time anyway)."""
        if self._postgres:
            await conn.execute(self._hot.lock_thread, {"ns": THREAD_LOCK, "session": session_id})

    @retried
    async def create_turn(self, session_id: str, request_id: str, text_: str, user_id: str, instance_id: str) -> int:
        """Record a queued turn; safe to repeat (a retry after a lost commit finds the first row)."""
        async with self._transaction() as conn:
            return await self._turn_in(conn, session_id, request_id, text_, user_id, instance_id)

    @retried
    async def record_turn(
        self, key: ConversationKey, reference: dict[str, Any] | None, request_id: str, text_: str, user_id: str,
        instance_id: str, *, start: bool = False, placeholder: dict[str, Any] | None = None,
    ) -> RecordedTurn:
        """`session_id_for` and `create_turn` in one transaction, and with `start` `start_turn` too (for a
        request that nothing in this process is ahead of: one transaction instead of two); safe to repeat."""
        async with self._transaction() as conn:
            session_id, created = self._thread_cache.get(key), None
            if session_id is None:
                session_id, created = await self._session_in(conn, key, reference)
            if start and created is not None:
                # a thread new in this transaction has no other turn (nor can another replica add one before
                # this commits): the turn is written running, without the thread's lock and the start's checks
                running = {"status": TurnState.RUNNING, "started_at": self.clock()}
                if placeholder is not None:
                    running["placeholder"] = placeholder
                turn_id = await self._turn_in(conn, session_id, request_id, text_, user_id, instance_id, running)
                started: TurnStart | None = TurnStart(created)
            else:
                turn_id = await self._turn_in(conn, session_id, request_id, text_, user_id, instance_id)
                started = await self._start_in(conn, turn_id, instance_id, placeholder) if start else None
        self._thread_cache[key] = session_id
        return RecordedTurn(session_id, turn_id, started)

    async def _turn_in(
        self, conn: AsyncConnection, session_id: str, request_id: str, text_: str, user_id: str, instance_id: str,
        running: dict[str, Any] | None = None,
    ) -> int:
        """Write the turn queued, or with `running` (its status, start time, placeholder) in a thread this
        transaction created."""
        if running is None:
            await self._lock_thread(conn, session_id)
        turn_id = (await conn.execute(self._hot.new_turn, {
            "session_id": session_id, "request_id": request_id, "instance_id": instance_id, "user_id": user_id,
            "text": text_, "status": TurnState.QUEUED, "created_at": self.clock(), **(running or {}),
        })).scalar_one_or_none()
        if turn_id is None:
            turn_id = await conn.scalar(self._hot.turn_of, {"request": request_id})
        assert turn_id is not None
        return turn_id

    @retried
    async def start_turn(
        self, turn_id: int, instance_id: str | None = None, placeholder: dict[str, Any] | None = None
    ) -> TurnStart:
        """Mark a turn running here, unless it is no longer active or (given `instance_id`) an earlier
        turn of its thread is still active on another replica: a thread's turns run one at a time, in
        the order they were recorded, whichever replica took them."""
        async with self._transaction(ahead=True) as conn:
            if instance_id is not None and self._postgres:  # recording and starting do not interleave
                await conn.execute(self._hot.lock_turn, {"ns": THREAD_LOCK, "turn_id": turn_id})
            return await self._start_in(conn, turn_id, instance_id, placeholder)

    async def _start_in(
        self, conn: AsyncConnection, turn_id: int, instance_id: str | None, placeholder: dict[str, Any] | None
    ) -> TurnStart:
        """`start_turn` in the transaction `conn`, which holds the thread's lock when `instance_id` is given."""
        values: dict[str, Any] = {"turn_id": turn_id, "status": TurnState.RUNNING, "started_at": self.clock()}
        if placeholder is not None:
            values["placeholder"] = placeholder
        stmt = self._hot.start
        if instance_id is not None:
            values.update(instance_id=instance_id, instance=instance_id)
            stmt = self._hot.start_in_order
        session_id = (await conn.execute(stmt, values)).scalar_one_or_none()
        if session_id is None:  # waiting for an earlier turn, or no longer active
            status = await conn.scalar(self._hot.status_of, {"turn_id": turn_id})
            return TurnStart(blocked=status in ACTIVE_TURN)
        conversation = (await conn.execute(self._hot.conversation, {"session": session_id})).one_or_none()
        return TurnStart(_conversation(conversation) if conversation else None)

    @retried
    async def set_placeholder(self, turn_id: int, placeholder: dict[str, Any]) -> None:
        """Remember where a running turn's placeholder is (posted after the turn started)."""
        async with self._begin() as db:
            await db.execute(update(TurnRow).where(TurnRow.id == turn_id).values(placeholder=placeholder))

    @retried
    async def turns_ended(self, turn_ids: Iterable[int]) -> set[int]:
        """Those of the given turns that are no longer active (finished, or taken over by another replica)."""
        ids = list(turn_ids)
        if not ids:
            return set()
        async with self._session() as db:
            return set(
                await db.scalars(select(TurnRow.id).where(TurnRow.id.in_(ids), TurnRow.status.not_in(ACTIVE_TURN)))
            )

    @retried
    async def update_turn(
        self,
        turn_id: int,
        status: TurnState,
        *,
        intent: str | None = None,
        service: str | None = None,
        answer: dict[str, Any] | None = None,
        error: str | None = None,
        elapsed_ms: int | None = None,
        remember_service: bool = False,
    ) -> bool:
        """Set a turn's status and results; with `remember_service`, `service` also becomes its
        conversation's current service (same transaction). False when the turn was no longer active
        (another replica took it over, or it was already final): it is not reopened."""
        values: dict[str, Any] = {"turn_id": turn_id, "status": status}
        now = self.clock()
        if status in FINAL_TURN:
            values["finished_at"] = now
        for name, value in (("intent", intent), ("service", service), ("answer", answer), ("error", error)):
            if value is not None:
                values[name] = value
        if elapsed_ms is not None:
            values["elapsed_ms"] = elapsed_ms
        remember = remember_service and bool(service)
        async with self._transaction(one_statement=not remember, ahead=True) as conn:
            if (await conn.execute(self._hot.finish, values)).rowcount != 1:
                return False
            if remember:
                await conn.execute(self._hot.remember_service,
                                   {"turn_id": turn_id, "current_service": service, "last_active_at": now})
            return True

    @retried
    async def get_turn(self, request_id: str) -> TurnRecord | None:
        async with self._session() as db:
            row = await db.scalar(select(TurnRow).where(TurnRow.request_id == request_id))
            return _turn(row) if row else None

    @retried
    async def recent_turns(self, session_id: str, limit: int = 10) -> list[TurnRecord]:
        async with self._session() as db:
            rows = await db.scalars(
                select(TurnRow).where(TurnRow.session_id == session_id).order_by(TurnRow.id.desc()).limit(limit)
            )
            return [_turn(r) for r in reversed(list(rows))]

    @retried
    async def active_turns(self) -> list[TurnRecord]:
        async with self._session() as db:
            rows = await db.scalars(select(TurnRow).where(TurnRow.status.in_(ACTIVE_TURN)).order_by(TurnRow.id))
            return [_turn(r) for r in rows]

    @retried
    async def request_cancel(self, key: ConversationKey) -> TurnRecord | None:
        """Flag the newest running turn of a thread for cancelling and return it; None when nothing runs
        there. The replica running it (`instance_id`) sees the flag on its heartbeat (`cancel_requests`)."""
        newest = (
            select(TurnRow.id)
            .join(ConversationRow, ConversationRow.id == TurnRow.session_id)
            .where(
                ConversationRow.platform == key.platform,
                ConversationRow.workspace == key.workspace,
                ConversationRow.channel == key.channel,
                ConversationRow.thread == key.thread,
                TurnRow.status == TurnState.RUNNING,
            )
            .order_by(TurnRow.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        async with self._begin() as db:
            row = await db.scalar(
                update(TurnRow)
                .where(TurnRow.id == newest, TurnRow.status == TurnState.RUNNING)
                .values(cancel_requested_at=self.clock())
                .returning(TurnRow)
            )
            return _turn(row) if row else None

    @retried
    async def cancel_requests(self, instance_id: str) -> list[str]:
        """Request ids of the instance's running turns that a "cancel" on any replica flagged."""
        async with self._session() as db:
            return list(
                await db.scalars(
                    select(TurnRow.request_id).where(
                        TurnRow.instance_id == instance_id,
                        TurnRow.status == TurnState.RUNNING,
                        TurnRow.cancel_requested_at.is_not(None),
                    )
                )
            )

    # --- instances: leases and crash recovery ----------------------------------------------------
    # A replica holds a lease on its turns that it renews on every heartbeat, on its own connection,
    # stamped by the database's clock. Its turns are taken over only once the lease has expired, and
    # an expired lease cannot be renewed: the replica learns it lost it and registers again.
    async def register(self, instance_id: str, lease_seconds: float) -> None:
        """Start (or restart, after losing it) this instance's lease."""
        now, until = self._now(), self._now(lease_seconds)
        stmt = self._dialect_insert(InstanceRow).values(id=instance_id, started_at=now, heartbeat_at=now, lease_until=until)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now, "lease_until": until})
        await self._lease_write(stmt)

    async def renew_lease(self, instance_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False when it had already expired (or was taken): it is lost."""
        now = self._now()
        stmt = (
            update(InstanceRow)
            .where(InstanceRow.id == instance_id, InstanceRow.lease_until > now)
            .values(heartbeat_at=now, lease_until=self._now(lease_seconds))
        )
        return await self._lease_write(stmt) == 1

    async def retire(self, instance_id: str) -> None:
        await self._lease_write(delete(InstanceRow).where(InstanceRow.id == instance_id))

    async def _lease_write(self, stmt: Any) -> int:
        """One statement on the heartbeat's connection (a short timeout, its caller's); how many rows it changed."""

        async def write() -> int:
            async with self._connected(), self.lease_engine.begin() as conn:
                return (await conn.execute(stmt)).rowcount  # type: ignore[attr-defined, no-any-return]

        return await (write() if self._postgres else self._to_the_end(write))

    def _leased(self, stale_after: float) -> Any:
        """Ids of the instances whose lease still runs. A row without a lease is from a replica that
        predates leases (during a rolling update): its heartbeat's age decides, as it did then."""
        now = self._now()
        return select(InstanceRow.id).where(
            or_(
                InstanceRow.lease_until > now,
                and_(InstanceRow.lease_until.is_(None), InstanceRow.heartbeat_at > self._now(-stale_after)),
            )
        )

    @retried
    async def interrupt_orphans(self, instance_id: str, stale_after: float) -> list[Interrupted]:
        """Mark interrupted the active turns of instances whose lease has expired (or that have no row);
        `instance_id` is the caller, whose own turns are never taken. One conditional UPDATE claims
        them, so two replicas sweeping at once never both report a turn."""
        leased = self._leased(stale_after)
        async with self._begin() as db:
            rows = list(
                await db.scalars(
                    update(TurnRow)
                    .where(
                        TurnRow.status.in_(ACTIVE_TURN),
                        TurnRow.instance_id != instance_id,
                        TurnRow.instance_id.not_in(leased),
                    )
                    .values(status=TurnState.INTERRUPTED, finished_at=self.clock())
                    .returning(TurnRow)
                    .execution_options(synchronize_session=False)
                )
            )
            conversations = {
                row.id: _conversation(row)
                for row in await db.scalars(
                    select(ConversationRow).where(ConversationRow.id.in_({r.session_id for r in rows}))
                )
            } if rows else {}
            await db.execute(delete(InstanceRow).where(InstanceRow.id != instance_id, InstanceRow.id.not_in(leased)))
        return [
            Interrupted(_turn(row), conversations[row.session_id]) for row in rows if row.session_id in conversations
        ]

    # --- platform event dedupe -------------------------------------------------------------------
    async def claim_event(self, platform: str, *event_ids: str) -> bool:
        """True for the first delivery of an event (on any replica), False for every repeat. Several ids
        of one event (e.g. its id and its channel+ts) are claimed together: True only when none was seen
        before. Claims made while another claim's transaction is in flight go together in the next one
        (group commit): a burst of events costs a few statements, not one transaction each."""
        return await self._claims.claim(tuple((platform, event_id) for event_id in dict.fromkeys(event_ids)))

    async def _insert_events(self, keys: list[EventKey]) -> set[EventKey]:
        """Insert (platform, event id) rows; returns those that were not there before. The rows carry a
        token of this write, so a retry after a commit that landed but whose answer was lost (a dropped
        connection) finds its own rows and still takes their events."""
        return await self._insert_claimed(new_id("clm"), keys)

    @retried
    async def _insert_claimed(self, token: str, keys: list[EventKey]) -> set[EventKey]:
        now = self.clock()
        rows = [{"platform": platform, "event_id": event_id, "received_at": now, "claimed_by": token}
                for platform, event_id in keys]
        async with self._connected(), self.claim_engine.connect() as conn:
            new: set[EventKey] = {(platform, event_id) for platform, event_id in await conn.execute(self._hot.new_events, rows)}
            if len(new) < len(keys):  # repeats, or rows that a write of this token committed before its answer was lost
                new |= {(platform, event_id)
                        for platform, event_id in await conn.execute(self._hot.claimed_by, {"token": token, "keys": keys})}
        return new

    @retried
    async def forget_events(self, older_than: timedelta) -> int:
        async with self._begin() as db:
            result = await db.execute(
                delete(ProcessedEventRow).where(ProcessedEventRow.received_at < self.clock() - older_than)
            )
            return result.rowcount or 0  # type: ignore[attr-defined]

    # --- approvals -------------------------------------------------------------------------------
    async def create_approval(self, proposal: Proposal, ttl_seconds: float) -> ApprovalRecord:
        now = self.clock()
        origin = proposal.origin
        row = ApprovalRow(
            id=new_id("apr"),
            session_id=origin.session_id,
            request_id=origin.request_id,
            kind=proposal.kind,
            target=proposal.target,
            params=proposal.params,
            description=proposal.description,
            requester=origin.user,
            platform=origin.platform,
            status=ApprovalState.PENDING,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
        async with self._begin() as db:
            db.add(row)
        return _approval(row)

    @retried
    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        async with self._session() as db:
            row = await db.get(ApprovalRow, approval_id)
            return _approval(row) if row else None

    async def transition_approval(
        self,
        approval_id: str,
        from_status: ApprovalState | Iterable[ApprovalState],
        to_status: ApprovalState,
        **values: Any,
    ) -> ApprovalRecord | None:
        """One atomic conditional UPDATE: returns the new record, or None when the row was not in
        `from_status` (someone else decided first, or it expired)."""
        allowed = [from_status] if isinstance(from_status, str) else list(from_status)
        stmt = update(ApprovalRow).where(ApprovalRow.id == approval_id, ApprovalRow.status.in_(allowed))
        if to_status == ApprovalState.APPROVED:
            stmt = stmt.where(ApprovalRow.expires_at > self.clock())
        async with self._begin() as db:
            result = await db.execute(stmt.values(status=to_status, **values))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = await db.get(ApprovalRow, approval_id)
            assert row is not None
            await db.refresh(row)
            return _approval(row)

    async def set_approval_message(self, approval_id: str, message_ref: dict[str, Any]) -> None:
        async with self._begin() as db:
            await db.execute(update(ApprovalRow).where(ApprovalRow.id == approval_id).values(message_ref=message_ref))

    async def due_for_expiry(self) -> list[ApprovalRecord]:
        async with self._session() as db:
            rows = await db.scalars(
                select(ApprovalRow).where(ApprovalRow.status == ApprovalState.PENDING, ApprovalRow.expires_at <= self.clock())
            )
            return [_approval(r) for r in rows]

    async def stuck_approvals(self, decided_before: datetime) -> list[ApprovalRecord]:
        """Approved but never finished: the process running the action stopped in between."""
        async with self._session() as db:
            rows = await db.scalars(
                select(ApprovalRow).where(ApprovalRow.status == ApprovalState.APPROVED, ApprovalRow.decided_at < decided_before)
            )
            return [_approval(r) for r in rows]

    async def approvals(self, status: ApprovalState | None = None, limit: int = 100) -> list[ApprovalRecord]:
        async with self._session() as db:
            stmt = select(ApprovalRow).order_by(ApprovalRow.created_at.desc()).limit(limit)
            if status:
                stmt = stmt.where(ApprovalRow.status == status)
            return [_approval(r) for r in await db.scalars(stmt)]

    # --- feedback on answers -----------------------------------------------------------------------
    async def add_feedback(self, request_id: str, user_id: str, rating: str) -> bool:
        """Store a person's rating of the answer to `request_id` (their earlier one is replaced); False when no
        such turn exists."""
        async with self._sessions.begin() as db:
            turn_id = await db.scalar(select(TurnRow.id).where(TurnRow.request_id == request_id))
            if turn_id is None:
                return False
            await db.execute(delete(FeedbackRow).where(FeedbackRow.turn_id == turn_id, FeedbackRow.user_id == user_id))
            await db.execute(insert(FeedbackRow).values(turn_id=turn_id, user_id=user_id, rating=rating, at=utcnow()))
            return True

    async def feedback(self, since: datetime | None = None, limit: int = 1000) -> list[FeedbackRecord]:
        """Ratings, newest first, each with its turn (the question and the answer as it was given)."""
        async with self._sessions() as db:
            stmt = (
                select(FeedbackRow, TurnRow).join(TurnRow, TurnRow.id == FeedbackRow.turn_id)
                .order_by(FeedbackRow.at.desc(), FeedbackRow.id.desc()).limit(limit)
            )
            if since is not None:
                stmt = stmt.where(FeedbackRow.at >= since)
            rows = (await db.execute(stmt)).all()
            return [FeedbackRecord(_aware(f.at), f.rating, f.user_id, _turn(t)) for f, t in rows]  # type: ignore[arg-type]

    # --- audit -----------------------------------------------------------------------------------
    async def audit(
        self,
        event: str,
        actor: str,
        *,
        approval_id: str | None = None,
        kind: str | None = None,
        target: str | None = None,
        detail: str | None = None,
        platform: str | None = None,
        workspace: str | None = None,
        channel: str | None = None,
        via: str | None = None,
    ) -> None:
        async with self._begin() as db:
            await db.execute(
                insert(AuditRow).values(
                    at=self.clock(),
                    event=event,
                    actor=actor,
                    approval_id=approval_id,
                    kind=kind,
                    target=target,
                    detail=detail,
                    platform=platform,
                    workspace=workspace,
                    channel=channel,
                    via=via,
                )
            )

    async def audit_log(self, since: datetime | None = None, limit: int = 1000) -> list[AuditRecord]:
        async with self._session() as db:
            stmt = select(AuditRow).order_by(AuditRow.id).limit(limit)
            if since is not None:
                stmt = stmt.where(AuditRow.at >= since)
            return [
                AuditRecord(r.id, _aware(r.at), r.event, r.actor, r.approval_id, r.kind, r.target, r.detail,  # type: ignore[arg-type]
                            r.platform, r.workspace, r.channel, r.via)
                for r in await db.scalars(stmt)
            ]
