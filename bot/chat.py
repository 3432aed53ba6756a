"""`srebot chat`: an interactive terminal thread where proposed actions are decided at a prompt."""

from __future__ import annotations

import asyncio
import sys

from bot.app import Runtime
from bot.ports import Request
from bot.terminal import TerminalPort
from sessions.store import ConversationKey, new_id


async def _input(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


async def run_chat(runtime: Runtime, thread: str | None, user: str) -> int:
    thread = thread or new_id("t")
    key = ConversationKey("cli", "local", "terminal", thread)
    print(f"srebot chat — thread {thread}. Type 'help', or an empty line / Ctrl-D to leave.", file=sys.stderr)
    while True:
        text = await _input(f"{user}> ")
        if text is None or not text.strip():
            return 0
        port = TerminalPort()
        runtime.dispatcher.submit(Request(key=key, user=user, text=text, port=port))
        await port.answer
        await runtime.dispatcher.wait_idle()
        for approval in port.approvals:
            await _decide_at_prompt(runtime, approval.id)


async def _decide_at_prompt(runtime: Runtime, approval_id: str) -> None:
    choice = await _input(f"{approval_id}: [a]pprove, [r]eject or Enter to leave it pending? ")
    if not choice or choice.strip().lower()[:1] not in ("a", "r"):
        return
    decision = "approve" if choice.strip().lower().startswith("a") else "reject"
    approver = await _input("approver id (someone other than the requester): ")
    if not approver or not approver.strip():
        print("no approver given; left pending", file=sys.stderr)
        return
    outcome = await runtime.approvals.decide(approval_id, approver.strip(), decision, platform="cli")
    print(outcome.message)
