"""`srebot chat`: an interactive terminal thread where proposed actions are decided at a prompt.

After an answer that proposed actions, each is offered at a prompt ([a]pprove / [r]eject / leave it
pending). At any time `approve ID [as USER]` or `reject ID [as USER]` decides an approval, this
thread's or one posted in Slack or Teams. Every decision goes through `Approvals.decide`, with the
same rules as the buttons: approvers only, never the requester; the thread and the audit log say it was
decided in `srebot chat`.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable

from bot.app import Runtime
from sessions.store import Actor
from bot.ports import Request
from bot.terminal import TerminalPort
from sessions.store import ConversationKey, new_id

PLATFORM = "cli"
DECIDE = re.compile(
    r"^\s*(?P<decision>approve|reject)\s+(?P<id>apr_\w+)(?:\s+(?:as|--user)\s+(?P<user>\S+))?\s*$", re.IGNORECASE
)


async def _input(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


async def run_chat(
    runtime: Runtime, thread: str | None, user: str, *, port: Callable[[str], TerminalPort] = lambda _: TerminalPort()
) -> int:
    """The chat loop; `port(text)` makes each request's port (the demo's also previews what it shows)."""
    runtime.attach_platforms()  # a decision here updates an approval message posted in Slack or Teams
    thread = thread or new_id("t")
    key = ConversationKey(PLATFORM, "local", "terminal", thread)
    print(f"srebot chat — thread {thread}. Type 'help', 'approve ID [as USER]' / 'reject ID', "
          "or an empty line / Ctrl-D to leave.", file=sys.stderr)
    while True:
        text = await _input(f"{user}> ")
        if text is None or not text.strip():
            return 0
        command = DECIDE.match(text)
        if command:
            await decide(runtime, command["id"], command["user"] or user, command["decision"].lower())
            continue
        reply = port(text)
        runtime.dispatcher.submit(Request(key=key, user=user, text=text, port=reply))
        await reply.answer
        await runtime.dispatcher.wait_idle()
        for approval in reply.approvals:
            await _decide_at_prompt(runtime, approval.id, user)


async def decide(runtime: Runtime, approval_id: str, user: str, decision: str) -> bool:
    actor = Actor(user, PLATFORM, "local", "terminal", via="chat")
    outcome = await runtime.approvals.decide(approval_id, actor, decision)
    print(outcome.message, file=sys.stdout if outcome.accepted else sys.stderr)
    return outcome.accepted


async def _decide_at_prompt(runtime: Runtime, approval_id: str, requester: str) -> None:
    choice = (await _input(f"{approval_id}: [a]pprove, [r]eject or Enter to leave it pending? ") or "").strip().lower()
    if choice[:1] not in ("a", "r"):
        print(f"left pending; later: approve {approval_id} as USER", file=sys.stderr)
        return
    if choice.startswith("r"):  # the requester may withdraw their own request
        decider = (await _input(f"rejected by (Enter: {requester}): ") or "").strip() or requester
        await decide(runtime, approval_id, decider, "reject")
        return
    approver = (await _input("approver id (an approver other than the requester): ") or "").strip()
    if not approver:
        print("no approver given; left pending", file=sys.stderr)
        return
    await decide(runtime, approval_id, approver, "approve")
