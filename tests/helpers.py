"""Small test doubles shared by tests: a recording reply port, the one scripted engine, the Answer schema."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.answer import Answer
from bot.engine.base import Engine
from bot.ports import Progress, Request
from sessions.store import ApprovalRecord, Conversation

# the contracts the bot keeps (docs/contracts); SREBOT_CONTRACTS points at another copy to check against it
CONTRACTS = Path(os.environ.get("SREBOT_CONTRACTS", Path(__file__).resolve().parents[1] / "docs" / "contracts"))
ANSWER_SCHEMA = json.loads((CONTRACTS / "answer.schema.json").read_text())


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

    async def tell_privately(self, text: str) -> bool:
        self.events.append(("private", text))
        return True

    @property
    def answers(self) -> list[Answer]:
        return [m for kind, m in self.events if kind == "post" and isinstance(m, Answer)]

    @property
    def texts(self) -> list[str]:
        return [m for kind, m in self.events if kind == "post" and isinstance(m, str)]

    async def wait(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.done.wait(), timeout)


class ScriptedEngine(Engine):
    """The tests' one engine. It records the `requests` it saw, says `steps` as progress, holds at `gate`, waits
    `delay`, raises `error`, and answers with `answer` (an Answer, or a function of the request and session,
    maybe async), else with the text `work(request)` returns, else "Answer to “<text>”."; the answer is about
    the text's last word as its service. `started` and `finished` are events; `done` lists the texts
    answered, in order."""

    def __init__(
        self,
        work: Callable[[Request], Awaitable[str]] | None = None,
        *,
        answer: Answer | Callable[[Request, Conversation], Answer | Awaitable[Answer]] | None = None,
        steps: tuple[str, ...] = (),
        delay: float = 0.0,
        error: Exception | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.work = work
        self.answer = answer
        self.steps = steps
        self.delay = delay
        self.error = error
        self.gate = gate
        self.requests: list[Request] = []
        self.done: list[str] = []
        self.started = asyncio.Event()
        self.finished = asyncio.Event()

    def acknowledgement(self, text: str) -> str:
        return f"Looking into “{text}”…"

    async def handle(self, request: Request, session: Conversation, progress: Progress) -> Answer:
        self.requests.append(request)
        self.started.set()
        try:
            for step in self.steps:
                await progress(step)
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.error is not None:
                raise self.error
            answer = await self._answer(request, session)
            self.done.append(request.text)
            return answer
        finally:
            self.finished.set()

    async def _answer(self, request: Request, session: Conversation) -> Answer:
        if isinstance(self.answer, Answer):
            return self.answer.model_copy(update={"session_id": session.id})
        if self.answer is not None:
            result = self.answer(request, session)
            return await result if inspect.isawaitable(result) else result
        summary = await self.work(request) if self.work else f"Answer to “{request.text}”."
        return Answer(intent="chat", summary=summary, session_id=session.id, service=request.text.split()[-1])
