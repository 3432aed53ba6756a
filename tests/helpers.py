"""Small test doubles shared by tests: a recording reply port and a scriptable engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.answer import Answer
from bot.engine.base import Engine
from bot.ports import Progress, Request
from sessions.store import ApprovalRecord, Conversation


class RecordingPort:
    """A ReplyPort that keeps everything it is given, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.done = asyncio.Event()

    async def progress(self, text: str) -> None:
        self.events.append(("progress", text))

    async def post(self, message: Answer | str) -> None:
        self.events.append(("post", message))
        self.done.set()

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        self.events.append(("approval", approval))

    @property
    def answers(self) -> list[Answer]:
        return [m for kind, m in self.events if kind == "post" and isinstance(m, Answer)]

    @property
    def texts(self) -> list[str]:
        return [m for kind, m in self.events if kind == "post" and isinstance(m, str)]

    async def wait(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.done.wait(), timeout)


class ScriptedEngine(Engine):
    """An engine whose work is a coroutine chosen by the test (sleeps, failures, ordering probes)."""

    def __init__(self, work: Callable[[Request], Awaitable[str]] | None = None) -> None:
        self.work = work
        self.started: list[str] = []
        self.finished: list[str] = []

    def acknowledgement(self, text: str) -> str:
        return f"Looking into {text}…"

    async def handle(self, request: Request, session: Conversation, progress: Progress) -> Answer:
        self.started.append(request.text)
        await progress(f"working on {request.text}")
        summary = await self.work(request) if self.work else f"done: {request.text}"
        self.finished.append(request.text)
        return Answer(intent="chat", summary=summary, session_id=session.id, service=request.text.split()[-1])
