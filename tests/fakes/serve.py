"""`srebot serve` as a real subprocess on 127.0.0.1, for the multi-replica and graceful-shutdown proofs.

    async with ServeProcess({"DATABASE_URL": url, **slack_env}, cwd=tmp_path) as bot:
        status, _ = await slack.deliver(bot.events_url, body)
        await bot.wait_for_log("stopping: no new work")
        code = await bot.stop(signal.SIGTERM)

The process runs `python -m bot serve --host 127.0.0.1 --port P` on a free port with exactly the
environment given (plus PATH/HOME/locale and Python's own variables: nothing of the developer's Slack,
database or backend settings leaks in) and `cwd` (so no stray ./srebot.toml is read). `start()` waits
until GET /healthz answers 200; a process that dies before that fails with its log. stderr and stdout
are captured line by line into `lines` (JSON log records under `serve`); `wait_for_log` waits on them
without sleeping. `stop(sig)` sends a signal and waits for the exit code; `kill()` is SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp

REPO = Path(__file__).resolve().parents[2]
# what a child process may inherit from the test runner's environment: how to run Python, nothing else
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "SYSTEMROOT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeFailed(AssertionError):
    pass


class ServeProcess:
    """One `srebot serve` subprocess (see the module docstring)."""

    def __init__(self, env: dict[str, str], *, cwd: str | Path, name: str = "srebot", start_timeout: float = 60.0):
        self.env = dict(env)
        self.cwd = str(cwd)
        self.name = name
        self.start_timeout = start_timeout
        self.port = 0
        self.url = ""
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.returncode: int | None = None
        self.exited_at: float | None = None
        self._changed = asyncio.Condition()
        self._readers: list[asyncio.Task[None]] = []

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> Self:
        for attempt in range(3):  # a free port can be taken by someone else before the child binds it
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            await self._spawn()
            try:
                await self._wait_healthy()
                return self
            except ServeFailed:
                if attempt < 2 and "address already in use" in self.log().lower():
                    continue
                raise
        raise AssertionError("unreachable")

    async def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith("PYTHON")}
        env.update({"PYTHONPATH": str(REPO), "SREBOT_TEAMS": "false", "SREBOT_LOG_LEVEL": "INFO", **self.env})
        self.lines = []
        self.returncode = None
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            cwd=self.cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [asyncio.create_task(self._read(self.process.stdout)),
                         asyncio.create_task(self._read(self.process.stderr))]
        self._watcher = asyncio.create_task(self._watch(self.process))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode("utf-8", errors="replace").rstrip("\n"))
            async with self._changed:
                self._changed.notify_all()

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)  # every line read before "exited"
        self.exited_at = time.monotonic()
        self.returncode = code
        async with self._changed:
            self._changed.notify_all()

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if self.returncode is not None:
                    raise ServeFailed(f"{self.name} exited with {self.returncode} before /healthz answered:\n{self.log()}")
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200 and (await response.json()) == {"status": "ok"}:
                            return
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    await self.kill()
                    raise ServeFailed(f"{self.name}: /healthz did not answer within {self.start_timeout:g} s:\n{self.log()}")
                await asyncio.sleep(0.1)  # polling a port that is not open yet: nothing to wait on

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit code (AssertionError with the log if it does not exit)."""
        if self.process is not None and self.returncode is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass
        return await self.wait_exit(timeout)

    async def kill(self) -> int:
        return await self.stop(signal.SIGKILL)

    async def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: self.returncode is not None)
        except TimeoutError:
            raise AssertionError(f"{self.name} did not exit within {timeout:g} s:\n{self.log()}") from None
        assert self.returncode is not None
        return self.returncode

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None and self.returncode is None:
            await self.kill()

    # --- HTTP and logs -----------------------------------------------------------------------------
    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the process's own /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/metrics") as response:
            text = await response.text()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def log(self) -> str:
        return "\n".join(self.lines[-200:])

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records printed so far (other lines skipped)."""
        found = []
        for line in self.lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return found

    async def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """The first output line containing `text`, waiting for it (fails with the log when the
        process exits or the time is up first)."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: found() is not None or self.returncode is not None)
        except TimeoutError:
            raise AssertionError(f"{self.name} logged no {text!r} within {timeout:g} s:\n{self.log()}") from None
        line = found()
        if line is None:
            raise AssertionError(f"{self.name} exited ({self.returncode}) without logging {text!r}:\n{self.log()}")
        return line


# --- what a Slack thread ended up showing ----------------------------------------------------------
def is_placeholder(args: dict[str, Any]) -> bool:
    """The "Looking into …" message a request shows while it runs (one context block, an hourglass)."""
    blocks = args.get("blocks") or []
    return (
        len(blocks) == 1
        and blocks[0].get("type") == "context"
        and ":hourglass" in json.dumps(blocks[0])
    )


@dataclass
class ThreadMessage:
    """One message the bot posted in a thread, with every chat.update it got afterwards."""

    ts: str
    posted: Any  # the chat.postMessage Call
    updates: list[Any] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        """The arguments of the last post or update: what the thread shows now."""
        return (self.updates[-1] if self.updates else self.posted).args

    @property
    def text(self) -> str:
        return (self.updates[-1] if self.updates else self.posted).text_blob()

    @property
    def placeholder(self) -> bool:
        return is_placeholder(self.final)


def thread_messages(slack: Any, channel: str, thread_ts: str) -> list[ThreadMessage]:
    """The bot's messages in a thread of `slack` (a SlackFake), in order, each with its updates."""
    messages: dict[str, ThreadMessage] = {}
    for call in slack.calls:
        if call.status != 200 or not call.response.get("ok"):
            continue
        if call.method == "chat.postMessage" and call.args.get("channel") == channel \
                and call.args.get("thread_ts") == thread_ts:
            messages[call.response["ts"]] = ThreadMessage(call.response["ts"], call)
        elif call.method == "chat.update" and call.args.get("channel") == channel \
                and call.args.get("ts") in messages:
            messages[call.args["ts"]].updates.append(call)
    return list(messages.values())


async def wait_for_thread(
    slack: Any, channel: str, thread_ts: str, ready: Callable[[list[ThreadMessage]], bool], timeout: float = 30.0
) -> list[ThreadMessage]:
    """Wait (woken by every Web API call the fake records, no sleeping) until `ready(messages)`."""
    changed: asyncio.Condition = slack._changed  # SlackFake notifies it on every call
    try:
        async with asyncio.timeout(timeout):
            async with changed:
                await changed.wait_for(lambda: ready(thread_messages(slack, channel, thread_ts)))
    except TimeoutError:
        seen = [(m.ts, m.placeholder, m.text[:160]) for m in thread_messages(slack, channel, thread_ts)]
        raise AssertionError(f"thread {channel}/{thread_ts} not as expected within {timeout:g} s: {seen}") from None
    return thread_messages(slack, channel, thread_ts)


def answers(messages: list[ThreadMessage]) -> list[ThreadMessage]:
    """The messages that are no (longer a) placeholder."""
    return [m for m in messages if not m.placeholder]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll an async check (a database row, a metric: things that notify nobody) until it returns a
    truthy value; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g} s (last: {value!r})")
        await asyncio.sleep(0.1)
