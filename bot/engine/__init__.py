"""The diagnostic engine: understands a request and answers it from the tools."""

from bot.engine.base import Engine
from bot.engine.core import DiagnosticEngine

__all__ = ["DiagnosticEngine", "Engine"]
