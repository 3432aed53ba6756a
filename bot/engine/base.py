"""The engine interface the dispatcher runs requests on."""

from __future__ import annotations

from abc import ABC, abstractmethod

from bot.answer import Answer
from bot.ports import Progress, Request
from sessions.store import Conversation


class Engine(ABC):
    @abstractmethod
    def acknowledgement(self, text: str) -> str:
        """The placeholder shown at once ("Looking into checkout…"), from the message alone: it goes out
        before anything is read or written, so it must not do I/O."""

    @abstractmethod
    async def handle(self, request: Request, session: Conversation, progress: Progress) -> Answer:
        """Answer one request in the context of its session."""
