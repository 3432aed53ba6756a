"""A PostgreSQL server of the test's own (initdb + pg_ctl under /tmp, another port), to stop, freeze and
restart while srebot runs on it; the machine's shared server is never touched."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.fakes.serve import free_port

BIN = Path(os.environ.get("SREBOT_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres(*argv: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


class OwnPostgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="srebot-pg-"))
        self.data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            _as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"),
            check=True, capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    async def _ctl(self, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *_as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), *args),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[-1]} failed: {err.decode()[-500:]}")

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        await self._ctl("-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start")

    async def stop(self) -> None:
        """A fast shutdown: open connections are cut, new ones refused."""
        await self._ctl("-m", "fast", "-w", "-t", "60", "stop")

    def _pids(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def _signal(self, sig: int) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):  # a backend that ended meanwhile
                os.kill(pid, sig)

    def freeze(self) -> None:
        """Every server process stopped: connections stay open and nothing answers (a hung database)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    async def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.thaw()
            await self._ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
