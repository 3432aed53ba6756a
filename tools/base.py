"""What every backend tool shares: uniform results, timeouts, retries, a single-flight TTL cache, bounds and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

import httpx
from cachetools import TTLCache
from prometheus_client import Counter, Histogram
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from tools.redact import redact

log = logging.getLogger("srebot.tools")

T = TypeVar("T")

TOOL_CALLS = Counter("srebot_tool_calls_total", "Backend tool calls", ["tool", "outcome"])
TOOL_LATENCY = Histogram(
    "srebot_tool_latency_seconds",
    "Backend tool call latency",
    ["tool"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@dataclass(frozen=True)
class ServiceRef:
    """What a tool needs to know of a service: where it runs and how to select its data."""

    name: str
    namespace: str
    deployment: str
    log_selector: str
    metric_templates: tuple[tuple[str, str], ...] = ()  # (signal, PromQL template) overrides
    cost_tag: str | None = None


class ErrorCode(StrEnum):
    NOT_CONFIGURED = "not_configured"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    BAD_QUERY = "bad_query"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    BACKEND_ERROR = "backend_error"


RETRYABLE = {ErrorCode.TIMEOUT, ErrorCode.UNREACHABLE, ErrorCode.RATE_LIMITED, ErrorCode.BACKEND_ERROR}


class ToolError(Exception):
    """A backend failure with a code the engine can reason about and a message a person can read."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = redact(message)
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


@dataclass
class ToolResult(Generic[T]):
    """The outcome of one tool operation: data, or an error; never both."""

    tool: str
    data: T | None = None
    error: ToolError | None = None
    ms: float = 0.0
    cached: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_text(self) -> str | None:
        return str(self.error) if self.error else None


def http_error(response: httpx.Response, what: str) -> ToolError:
    """Classify a non-2xx HTTP answer; the body is parsed defensively (JSON error shapes or plain text)."""
    status = response.status_code
    detail = _error_detail(response)
    message = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    if status in (400, 409, 422):  # a conflict (e.g. already acknowledged) does not go away on retry
        return ToolError(ErrorCode.BAD_QUERY, message)
    if status == 401:
        return ToolError(ErrorCode.UNAUTHORIZED, message)
    if status == 403:
        return ToolError(ErrorCode.FORBIDDEN, message)
    if status == 404:
        return ToolError(ErrorCode.NOT_FOUND, message)
    if status == 429:
        retry_after = response.headers.get("retry-after")
        return ToolError(
            ErrorCode.RATE_LIMITED, message, retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None
        )
    return ToolError(ErrorCode.BACKEND_ERROR, message)


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "reason"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key][:300]
    return str(body)[:300]


def exception_error(exc: BaseException, what: str) -> ToolError:
    """Map transport exceptions (httpx, asyncio) to tool errors."""
    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, httpx.TimeoutException)):
        return ToolError(ErrorCode.TIMEOUT, f"{what}: timed out")
    if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError, ConnectionError, OSError)):
        return ToolError(ErrorCode.UNREACHABLE, f"{what}: cannot connect ({exc.__class__.__name__}: {exc})")
    return ToolError(ErrorCode.BACKEND_ERROR, f"{what}: {exc.__class__.__name__}: {exc}")


def bound_list(items: list[T], limit: int, what: str) -> tuple[list[T], list[str]]:
    """Keep at most `limit` items and say what was cut, so a bounded answer is never silently partial."""
    if len(items) <= limit:
        return items, []
    return items[:limit], [f"{what}: showing {limit} of {len(items)}"]


def bound_text(text: str, limit: int, what: str) -> tuple[str, list[str]]:
    if len(text) <= limit:
        return text, []
    return text[-limit:], [f"{what}: kept the last {limit} of {len(text)} characters"]


class Backend:
    """Base of one backend's tool: runs its operations with timeout, retries, cache and single-flight.

    Subclasses set `name`, say whether they are `configured`, and call `run()` for each operation.
    """

    name = "backend"

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.2,
        cache_ttl: float = 15.0,
        cache_size: int = 1024,
    ):
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._cache: TTLCache[Hashable, Any] = TTLCache(maxsize=cache_size, ttl=cache_ttl) if cache_ttl > 0 else None  # type: ignore[assignment]
        self._inflight: dict[Hashable, asyncio.Task[ToolResult[Any]]] = {}
        self.backend_calls = 0  # operations that reached the backend, for the cache benchmark and tests

    @property
    def configured(self) -> bool:
        return True

    def not_configured_reason(self) -> str:
        return f"{self.name} is not configured"

    async def ping(self) -> ToolResult[str]:
        """A cheap read that proves the configuration and the backend (for `srebot check` and /readyz)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections; the backend may be used again afterwards."""

    async def run(
        self,
        op: str,
        fn: Callable[[], Awaitable[T]],
        *,
        key: Hashable | None = None,
        timeout: float | None = None,
        write: bool = False,
    ) -> ToolResult[T]:
        """Run `fn` as operation `op`. With a `key`, identical concurrent calls share one backend call
        and a success is cached for the backend's TTL. A `write` runs exactly once: a retried write
        could act twice, and a cached one would not act at all."""
        result = await self._run(op, fn, None if write else key, timeout, 1 if write else self.attempts)
        # Notes travel inside the data, so that a cached answer still says what it left out.
        notes = getattr(result.data, "notes", None)
        if isinstance(notes, list):
            result.notes.extend(notes)
        return result

    async def _run(
        self, op: str, fn: Callable[[], Awaitable[T]], key: Hashable | None, timeout: float | None, attempts: int
    ) -> ToolResult[T]:
        tool = f"{self.name}.{op}"
        started = time.perf_counter()
        if not self.configured:
            TOOL_CALLS.labels(tool, "not_configured").inc()
            return ToolResult(tool, error=ToolError(ErrorCode.NOT_CONFIGURED, self.not_configured_reason()))
        cache_key = (op, key) if key is not None else None
        if cache_key is None:
            return await self._backend_call(tool, fn, timeout, attempts, started)
        if self._cache is not None and cache_key in self._cache:
            TOOL_CALLS.labels(tool, "cached").inc()
            return ToolResult(tool, data=self._cache[cache_key], ms=0.0, cached=True)
        shared = self._inflight.get(cache_key)
        joined = shared is not None
        if shared is None:
            # The shared call is a task of its own, not part of the first caller: a caller whose own
            # deadline or cancel ends its wait must not cancel the call the others are waiting for.
            shared = asyncio.create_task(self._backend_call(tool, fn, timeout, attempts, started), name=f"tool-{tool}")
            self._inflight[cache_key] = shared
            shared.add_done_callback(lambda task: self._settle_shared(cache_key, task))
        result = await asyncio.shield(shared)
        if joined:
            return ToolResult(tool, data=result.data, error=result.error, ms=_ms(started), cached=result.ok)
        return result

    def _settle_shared(self, cache_key: Hashable, task: asyncio.Task[ToolResult[Any]]) -> None:
        """A shared call ended: later callers start afresh, or read its success from the cache."""
        self._inflight.pop(cache_key, None)
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if result.ok and self._cache is not None:
            self._cache[cache_key] = result.data

    async def _backend_call(
        self, tool: str, fn: Callable[[], Awaitable[T]], timeout: float | None, attempts: int, started: float
    ) -> ToolResult[T]:
        try:
            data = await self._attempts(tool, fn, timeout or self.timeout, attempts)
        except ToolError as exc:
            elapsed = _ms(started)
            TOOL_CALLS.labels(tool, exc.code.value).inc()
            TOOL_LATENCY.labels(tool).observe(elapsed / 1000)
            log.warning("tool failed", extra={"tool": tool, "error": str(exc), "ms": round(elapsed, 1)})
            return ToolResult(tool, error=exc, ms=elapsed)
        elapsed = _ms(started)
        TOOL_CALLS.labels(tool, "ok").inc()
        TOOL_LATENCY.labels(tool).observe(elapsed / 1000)
        log.info("tool ok", extra={"tool": tool, "ms": round(elapsed, 1)})
        return ToolResult(tool, data=data, ms=elapsed)

    async def _attempts(self, tool: str, fn: Callable[[], Awaitable[T]], timeout: float, attempts: int) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, attempts)),
            wait=_wait_honouring_retry_after(self.backoff),
            retry=retry_if_exception(lambda e: isinstance(e, ToolError) and e.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.backend_calls += 1
                try:
                    async with asyncio.timeout(timeout):
                        return await fn()
                except ToolError:
                    raise
                except Exception as exc:
                    raise exception_error(exc, tool) from exc
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises


class HttpBackend(Backend):
    """A backend spoken to over HTTP at one base URL, through one pooled client."""

    def __init__(self, url: str | None, *, api_prefix: str = "", **options: Any):
        super().__init__(**options)
        self.url = url.rstrip("/") if url else None
        self._api_prefix = api_prefix
        self._client: httpx.AsyncClient | None = None

    @property
    def configured(self) -> bool:
        return self.url is not None

    def _http(self) -> httpx.AsyncClient:
        # One pooled client: a diagnosis fires a burst of requests at the same server.
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=f"{self.url}{self._api_prefix}", timeout=self.timeout)
        return self._client

    async def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = await self._http().get(path, params=params)
        if response.status_code >= 400:
            raise http_error(response, f"{self.name} {path}")
        return response.json()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _wait_honouring_retry_after(backoff: float) -> Callable[[Any], float]:
    exponential = wait_exponential(multiplier=backoff, max=10)

    def wait(retry_state: Any) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, ToolError) and exc.retry_after is not None:
            return min(exc.retry_after, 30.0)
        return exponential(retry_state)

    return wait


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
