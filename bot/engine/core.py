"""Routes a parsed request to its playbook and assembles the Answer."""

from __future__ import annotations

from bot.answer import Answer, ToolStatus
from bot.actions import Actions
from bot.config import Settings
from bot.toolbox import Toolbox
from bot.engine.base import Engine
from bot.engine.intents import HELP_TEXT, parse
from bot.ports import Progress, Request
from sessions.store import Conversation

TOOL_NAMES = ("metrics", "logs", "kubernetes", "cost", "control_plane")


class DiagnosticEngine(Engine):
    def __init__(self, settings: Settings, toolbox: Toolbox, actions: Actions):
        self.settings = settings
        self.toolbox = toolbox
        self.actions = actions

    def acknowledgement(self, text: str, current_service: str | None) -> str:
        parsed = parse(text)
        if parsed.intent == "help":
            return "One moment…"
        subject = parsed.service or current_service
        return f"Looking into {subject}…" if subject else "Looking into it…"

    async def handle(self, request: Request, session: Conversation, progress: Progress) -> Answer:
        parsed = parse(request.text)
        if parsed.intent == "help":
            return Answer(intent="help", summary=HELP_TEXT, confidence=1.0, session_id=session.id)
        tools = [ToolStatus(name=name, ok=False, error="not configured") for name in TOOL_NAMES]
        return Answer(
            intent="chat",
            summary="No backend is configured, so nothing could be checked: " + ", ".join(TOOL_NAMES) + ".",
            tools=tools,
            session_id=session.id,
        )
