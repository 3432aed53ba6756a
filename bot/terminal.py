"""The terminal as a platform: a ReplyPort that prints, used by `srebot ask` and `srebot chat`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import TextIO

from bot import wording
from bot.answer import Answer
from bot.render import to_text
from sessions.store import ApprovalRecord, Conversation


def approval_text(approval: ApprovalRecord) -> str:
    return (
        f"Approval {approval.id}: {approval.description}\n"
        f"  requested by {approval.requester}; expires {approval.expires_at:%H:%M:%S} UTC\n"
        f"  decide with: srebot approve {approval.id} --user YOU   (or reject)"
    )


def write(text: str, stream: TextIO) -> None:
    """Print a line; when the reader has gone (`srebot ask … | head -1`), stop writing there instead of failing,
    so the request still ends and the process exits quietly."""
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        except (OSError, ValueError):  # not a real file (a test's StringIO): nothing more to silence
            pass


class TerminalPort:
    """Prints progress to stderr and the answer to stdout; resolves `answer` when the request is done."""

    def __init__(self, *, as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None):
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.approvals: list[ApprovalRecord] = []

    async def progress(self, text: str) -> None:
        write(f"… {text}", self.err)

    async def post(self, message: Answer | str) -> None:
        if isinstance(message, str):
            write(message, self.out)
            if not self.answer.done():  # control replies (cancel) end an `ask` too
                self.answer.set_result(Answer(summary=message, session_id="none"))
            return
        if self.as_json:
            write(json.dumps(message.to_json(), indent=2, ensure_ascii=False), self.out)
        else:
            write(to_text(message), self.out)
        if not self.answer.done():
            self.answer.set_result(message)

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        self.approvals.append(approval)
        write(approval_text(approval), self.err if self.as_json else self.out)

    async def tell_privately(self, text: str) -> bool:
        return False  # the terminal is private already: the answer says why


class TerminalNotifier:
    """Out-of-request messages for terminal threads: printed when this process is the one running."""

    platform = "cli"

    async def say(self, conversation: Conversation, message: Answer | str) -> None:
        text = message if isinstance(message, str) else to_text(message)
        write(f"[{conversation.key.thread}] {text}", sys.stderr)

    async def approval_changed(self, approval: ApprovalRecord, conversation: Conversation | None) -> None:
        write(f"Approval {approval.id}: {wording.approval_status(approval)}", sys.stderr)
