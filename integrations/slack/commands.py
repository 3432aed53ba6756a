"""Parses the text of the `/sre` slash command into a subcommand the bot runs, or the help text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.wording import HELP_TEXT

# subcommand -> (usage, fewest words after it, most words after it or None)
SUBCOMMANDS: dict[str, tuple[str, int, int | None]] = {
    "help": ("help", 0, None),
    "diagnose": ("diagnose <service>", 1, None),
    "status": ("status", 0, 0),
    "logs": ("logs <service>", 1, None),
    "cost": ("cost [service] [period]", 0, 2),
    "incidents": ("incidents", 0, 0),
    "restart": ("restart <service>", 1, 1),
    "scale": ("scale <service> <replicas>", 2, 2),
    "rollback": ("rollback <service>", 1, 1),
    "cancel": ("cancel", 0, 0),
    # also in the help text, so they work from /sre as well
    "metrics": ("metrics <service>", 1, None),
    "pods": ("pods <service>", 1, 1),
    "capacity": ("capacity <service>", 1, 1),
    "alerts": ("alerts", 0, 0),
    "ack": ("ack incident <id>", 2, 2),
}


@dataclass(frozen=True)
class SreCommand:
    name: str  # a key of SUBCOMMANDS; "help" for empty, unknown or malformed input
    text: str  # what the dispatcher receives ("diagnose checkout")
    reply: str | None = None  # the immediate ephemeral answer, when the command is only answered


def help_reply(problem: str | None = None) -> str:
    return f"{problem}\n\n{HELP_TEXT}" if problem else HELP_TEXT


def parse_sre(text: str) -> SreCommand:
    words = text.split()
    if not words:
        return SreCommand("help", "help", help_reply())
    name, args = words[0].lower(), words[1:]
    spec = SUBCOMMANDS.get(name)
    if spec is None:
        return SreCommand("help", "help", help_reply(f"I don't know `/sre {words[0]}`."))
    usage, fewest, most = spec
    if name == "help":
        return SreCommand("help", "help", help_reply())
    wrong_count = len(args) < fewest or (most is not None and len(args) > most)
    if wrong_count or (name == "scale" and not re.fullmatch(r"\d{1,4}", args[1])) or (
        name == "ack" and args[0].lower() != "incident"
    ):
        return SreCommand("help", "help", help_reply(f"Usage: `/sre {usage}`"))
    return SreCommand(name, " ".join([name, *args]))
