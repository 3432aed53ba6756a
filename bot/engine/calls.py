"""Runs a playbook's backend calls concurrently: each bounded in time, recorded as a ToolStatus, and reported
as progress when it finishes ("metrics ✓ 120 ms · logs ✓ 80 ms · kubernetes ✗ timeout")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

from bot.answer import ToolStatus
from bot.ports import Progress
from tools.base import ErrorCode, ToolError, ToolResult

NOT_CONFIGURED = "not configured"


def status_of(name: str, result: ToolResult[Any]) -> ToolStatus:
    if result.error is None:
        return ToolStatus(name=name, ok=True, ms=round(result.ms, 1))
    if result.error.code is ErrorCode.NOT_CONFIGURED:
        return ToolStatus(name=name, ok=False, ms=None, error=NOT_CONFIGURED)
    return ToolStatus(name=name, ok=False, ms=round(result.ms, 1), error=str(result.error))


def combine(name: str, parts: dict[str, ToolResult[Any]]) -> ToolResult[dict[str, ToolResult[Any]]]:
    """Several operations of one backend as one result: an error when any failed (naming which), the
    slowest one's time, and every part as data so that what did answer is still used."""
    failed = {op: r.error for op, r in parts.items() if r.error is not None}
    ms = max((r.ms for r in parts.values()), default=0.0)
    error: ToolError | None = None
    if failed:
        codes = {e.code for e in failed.values()}
        if len(failed) == len(parts) and len(codes) == 1:
            error = next(iter(failed.values()))
        else:
            code = next(iter(failed.values())).code
            error = ToolError(code, "; ".join(f"{op}: {e}" for op, e in failed.items()))
    return ToolResult(name, data=parts, error=error, ms=ms)


def brief(status: ToolStatus) -> str:
    if status.ok:
        return f"{status.name} ✓ {status.ms:.0f} ms" if status.ms is not None else f"{status.name} ✓"
    reason = status.error or "failed"
    if reason != NOT_CONFIGURED:
        reason = reason.split(":", 1)[0]  # the error code: timeout, unreachable, forbidden, ...
    return f"{status.name} ✗ {reason}"


class Calls:
    """Named backend calls of one answer, run together."""

    def __init__(self, progress: Progress, *, deadline: float):
        self.progress = progress
        self.deadline = deadline  # seconds one named call may take in all (its retries included)
        self.statuses: list[ToolStatus] = []

    async def run(
        self, calls: dict[str, Coroutine[Any, Any, ToolResult[Any]]], intro: str | None = None
    ) -> dict[str, ToolResult[Any]]:
        """Every call at once; returns each result by name. Progress: `intro`, then one line per finished call."""
        if intro:
            await self.progress(intro)
        tasks = {asyncio.create_task(self._bounded(name, call)): name for name, call in calls.items()}
        results: dict[str, ToolResult[Any]] = {}
        statuses: list[ToolStatus] = []
        done_lines: list[str] = []
        pending = set(tasks)
        try:
            while pending:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    name = tasks[task]
                    results[name] = task.result()
                    status = status_of(name, results[name])
                    statuses.append(status)
                    done_lines.append(brief(status))
                waiting = [tasks[t] for t in pending]
                await self.progress(" · ".join(done_lines) + (f" · waiting for {', '.join(waiting)}…" if waiting else ""))
        finally:
            for task in pending:
                task.cancel()
        # the answer lists tools in the order they were asked, not the order they finished
        order = list(calls)
        self.statuses += sorted(statuses, key=lambda s: order.index(s.name))
        return results

    async def _bounded(self, name: str, call: Awaitable[ToolResult[Any]]) -> ToolResult[Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.deadline):
                return await call
        except TimeoutError:
            ms = (time.perf_counter() - started) * 1000
            return ToolResult(
                name, error=ToolError(ErrorCode.TIMEOUT, f"{name}: no answer within {self.deadline:g} s"), ms=ms
            )
