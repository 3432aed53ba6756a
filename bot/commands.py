"""The command vocabulary (`/sre diagnose checkout`, or the same words in a message): each command's usage, what
it does and which arguments it takes, the help text made from them, and parsing a command line."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    does: str
    arguments: str = ""  # a regex the words after the name must match, joined by single spaces

    def takes(self, words: list[str]) -> bool:
        return re.fullmatch(self.arguments, " ".join(words), re.IGNORECASE) is not None


_SERVICE = r"\S+"
COMMANDS: tuple[Command, ...] = (
    Command("diagnose", "diagnose <service>", "why is it failing or slow (metrics, logs, Kubernetes, changes, incidents)", r".+"),
    Command("logs", "logs <service>", "top error patterns in the window", r".+"),
    Command("metrics", "metrics <service>", "golden signals; promql: <expr> for a free query", r".+"),
    Command("pods", "pods <service>", "deployment, rollout and pod state", _SERVICE),
    Command("capacity", "capacity <service>", "CPU and memory against requests and limits", _SERVICE),
    Command("cost", "cost [service] [7d|30d]", "spend by service, period over period", r"(\S+( \S+)?)?"),
    Command("incidents", "incidents", "open incidents"),
    Command("alerts", "alerts", "firing alerts, then diagnosed"),
    Command("restart", "restart <service>", "proposed; runs after someone else approves", _SERVICE),
    Command("scale", "scale <service> <replicas>", "proposed; runs after someone else approves", r"\S+ \d{1,4}"),
    Command("rollback", "rollback <service>", "proposed; runs after someone else approves", _SERVICE),
    Command("ack", "ack incident <id>", "acknowledge an incident (after approval)", r"incident \S+"),
    Command("status", "status", "work in flight"),
    Command("cancel", "cancel", "stop the running request in this thread"),
    Command("help", "help", "this list", r".*"),
)
BY_NAME = {command.name: command for command in COMMANDS}

HELP_TEXT = "\n".join(
    [
        "I'm srebot. Ask me in a thread, DM me, or use /sre:",
        *(f"• {command.usage} — {command.does}" for command in COMMANDS if command.name != "help"),
        'Follow-ups in a thread need no mention: "and its logs?", "what changed?".',
    ]
)


@dataclass(frozen=True)
class Parsed:
    name: str  # a command's name; "help" for empty, unknown or malformed input
    text: str  # what the dispatcher receives ("diagnose checkout")
    reply: str | None = None  # the immediate answer, when the command is only answered (help, usage)


def help_reply(problem: str | None = None) -> str:
    return f"{problem}\n\n{HELP_TEXT}" if problem else HELP_TEXT


def parse_command(text: str, prefix: str = "/sre") -> Parsed:
    """A command line ("diagnose checkout") as the request it makes, or the help it gets instead."""
    words = text.split()
    if not words:
        return Parsed("help", "help", help_reply())
    name, args = words[0].lower(), words[1:]
    command = BY_NAME.get(name)
    if command is None:
        return Parsed("help", "help", help_reply(f"I don't know `{prefix} {words[0]}`."))
    if name == "help":
        return Parsed("help", "help", help_reply())
    if not command.takes(args):
        return Parsed("help", "help", help_reply(f"Usage: `{prefix} {command.usage}`"))
    return Parsed(name, " ".join([name, *args]))
