"""The `srebot` command line (docs/design.md 3.1): serve, ask, chat, check, db upgrade, approve/reject, audit, feedback,
and the development commands demo, bench and eval (from devtools, loaded only by them)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from bot.config import ConfigError, Settings, load_settings, parse_duration
from bot.logging_setup import setup_logging

T = TypeVar("T")

if TYPE_CHECKING:
    from bot.app import Runtime

log = logging.getLogger("srebot.cli")

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srebot", description="Chat-ops SRE bot for Slack and Microsoft Teams.")
    parser.add_argument("--config", help="TOML config file (default: $SREBOT_CONFIG or ./srebot.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (Slack, Teams, health, metrics)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 3000")

    ask = sub.add_parser("ask", help="one request through the dispatcher and engine")
    ask.add_argument("text", nargs="+")
    ask.add_argument("--thread", help="continue the session of this thread key")
    ask.add_argument("--user", default=None, help="who is asking (default: your login name)")
    ask.add_argument("--json", action="store_true", help="print the Answer JSON")

    chat = sub.add_parser("chat", help="an interactive terminal thread")
    chat.add_argument("--thread", help="thread key (default: a new thread)")
    chat.add_argument("--user", default=None)

    sub.add_parser("check", help="configuration and reachability of every backend")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations to DATABASE_URL")

    for decision in ("approve", "reject"):
        p = sub.add_parser(decision, help=f"{decision} a pending action")
        p.add_argument("approval_id")
        p.add_argument("--user", required=True,
                       help="who you are: the approval rules apply to this name, and the thread and the audit log "
                       "say it was decided via CLI")

    bench = sub.add_parser("bench", help="measure ack latency, first reply, throughput, fan-out, cache, RSS")
    bench.add_argument("--quick", action="store_true", help="small counts for CI (a few seconds)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")

    evaluation = sub.add_parser("eval", help="run the engine against scenario worlds and grade its answers")
    evaluation.add_argument("dir", help="a directory of scenario directories (with scenario.yaml), or one of them")
    evaluation.add_argument("--json", action="store_true", help="print the results (and answers) as JSON")
    evaluation.add_argument("--only", default=None, help="only the scenarios whose name contains this")

    demo = sub.add_parser("demo", help="the bot's job in five minutes, on a simulated shop (nothing to configure)")
    demo.add_argument("--out", default="srebot-demo", help="where the Slack and Teams preview goes (./srebot-demo)")
    demo.add_argument("--no-chat", action="store_true", help="only the guided part, no interactive turn after it")

    audit = sub.add_parser("audit", help="print the audit log")
    audit.add_argument("--since", default=None, help="a duration back from now (24h, 7d) or an ISO time")
    audit.add_argument("--json", action="store_true")
    feedback = sub.add_parser("feedback", help="list the ratings people gave answers (thumbs up / down)")
    feedback.add_argument("--since", default=None, help="a duration back from now (24h, 7d) or an ISO time")
    feedback.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(config_path=args.config)
    except ConfigError as exc:
        print(f"srebot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    default_format = "json" if args.command == "serve" else "text"
    quiet = args.command != "serve"
    setup_logging(settings.log_format or default_format, "WARNING" if quiet and settings.log_level == "INFO" else settings.log_level)
    handler = COMMANDS[args.command]
    try:
        return asyncio.run(handler(settings, args))
    except ConfigError as exc:  # found while building the runtime, e.g. an unknown action kind in [policy]
        print(f"srebot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAIL
    except BrokenPipeError:  # the reader of our output went away (`| head`): nothing left to say, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL


# --- commands ------------------------------------------------------------------------------------
async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import Runtime
    from bot.web import serve

    if settings.teams_mode == "local" and not _loopback(args.host):
        print(f"srebot: SREBOT_TEAMS_INSECURE=local accepts unauthenticated Teams requests, so it listens on "
              f"loopback only; use --host 127.0.0.1 (not {args.host}) or set MICROSOFT_APP_ID", file=sys.stderr)
        return EXIT_CONFIG
    await serve(Runtime(settings), args.host, args.port or settings.port)
    return EXIT_OK


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _user(args: argparse.Namespace) -> str:
    if args.user:
        return args.user
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "terminal"


async def _with_runtime(settings: Settings, body: Callable[[Runtime], Awaitable[int]]) -> int:
    from bot.app import Runtime

    runtime = Runtime(settings)
    try:
        await runtime.start()
    except Exception as exc:
        print(f"srebot: cannot open the database at {_mask_url(settings.database_url)} "
              f"({exc.__class__.__name__}: {' '.join(str(exc).split())})", file=sys.stderr)
        await runtime.store.close()
        return EXIT_FAIL
    try:
        return await body(runtime)
    finally:
        await runtime.stop()


async def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ports import Request
    from bot.terminal import TerminalPort
    from sessions.store import ConversationKey, new_id

    async def run(runtime: Runtime) -> int:
        port = TerminalPort(as_json=args.json)
        thread = args.thread or new_id("t")
        request = Request(
            key=ConversationKey("cli", "local", "terminal", thread), user=_user(args), text=" ".join(args.text), port=port
        )
        runtime.dispatcher.submit(request)
        answer = await port.answer
        await runtime.dispatcher.wait_idle()
        if not args.json and not args.thread:
            print(f"(continue this thread with --thread {thread})", file=sys.stderr)
        return EXIT_OK if answer.status == "completed" else EXIT_FAIL

    return await _with_runtime(settings, run)


async def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.chat import run_chat

    return await _with_runtime(settings, lambda runtime: run_chat(runtime, args.thread, _user(args)))


async def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import Runtime
    from bot.exposure import insecurities

    runtime = Runtime(settings)
    try:
        # the platforms as `serve` builds them: a configuration error they find (an alert destination's
        # serviceUrl outside the allow-list) stops `check` as it would stop the server
        runtime.attach_platforms()
        checks = await runtime.checks()
    finally:
        await runtime.store.close()
    rows = [("setting", "value")]
    rows += [
        ("DATABASE_URL", _mask_url(settings.database_url)),
        ("config file", settings.config_file or "(none)"),
        ("services in catalog", ", ".join(settings.services) or "(none)"),
        ("Slack", "on" + (" (Socket Mode)" if settings.slack_app_token else " (HTTP)") if settings.slack_enabled else "off"),
        ("Teams", _teams_state(settings)),
        ("LLM", f"on ({settings.model})" if settings.llm_enabled else "off (deterministic engine)"),
        ("approvers", ", ".join(settings.approvers) or "(none: actions cannot be approved)"),
        ("policy", f"[policy]: {len(settings.policy.channels)} channel(s) listed, others read-only"
         if settings.policy is not None else "none: anyone proposes anywhere, SREBOT_APPROVERS approve"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    print(f"{'backend':<{width}}  reachability")
    failed = False
    for name, state in checks.items():
        print(f"{name:<{width}}  {state}")
        failed = failed or state.startswith("error")
    problems = insecurities(settings)
    print()
    print("security: " + ("ok" if not problems else "INSECURE"))
    for problem in problems:
        print(f"  - {problem}")
    return EXIT_FAIL if failed or problems else EXIT_OK


def _teams_state(settings: Settings) -> str:
    extra = f"; replies also to {', '.join(settings.teams_service_urls)}" if settings.teams_service_urls else ""
    if settings.teams_mode == "auth":
        tenant = (f", tenant {settings.microsoft_app_tenant_id}" if settings.microsoft_app_tenant_id else
                  "; no MICROSOFT_APP_TENANT_ID, so nobody may propose or approve from Teams")
        return f"on ({settings.microsoft_app_type}{tenant}; every request's token validated){extra}"
    if settings.teams_mode == "local":
        return f"INSECURE local mode: requests not authenticated, loopback only{extra}"
    return "off" + ("" if settings.teams_enabled else " (SREBOT_TEAMS=off)") + " (set MICROSOFT_APP_ID to turn it on)"


def _mask_url(url: str) -> str:
    from tools.redact import redact

    return redact(url)


async def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from sessions.store import Store

    store = Store(settings.database_url)
    try:
        try:
            async with asyncio.timeout(10):
                await store.ping()
        except Exception as exc:
            print(f"srebot: cannot reach the database at {_mask_url(settings.database_url)} "
                  f"({exc.__class__.__name__}: {' '.join(str(exc).split())})", file=sys.stderr)
            return EXIT_FAIL
        try:
            await store.upgrade()
        except Exception as exc:
            print(f"srebot: migration failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
            return EXIT_FAIL
    finally:
        await store.close()
    print(f"database at {_mask_url(settings.database_url)} is up to date")
    return EXIT_OK


async def cmd_decide(settings: Settings, args: argparse.Namespace) -> int:
    """`srebot approve|reject ID --user U`: the same decision path as the buttons; the approval message
    where it was posted (Slack, Teams) is updated and the outcome posted in its thread."""

    from sessions.store import ApprovalState

    async def run(runtime: Runtime) -> int:
        runtime.attach_platforms()
        outcome = await runtime.approvals.decide(args.approval_id, args.user, args.command, platform="cli")
        print(outcome.message, file=sys.stdout if outcome.accepted else sys.stderr)
        where = outcome.approval.platform if outcome.approval else None
        if outcome.accepted and where and where not in runtime.notifiers:
            print(f"srebot: the approval message in {where} was not updated: {where} is not configured here",
                  file=sys.stderr)
        failed = outcome.approval is not None and outcome.approval.status == ApprovalState.FAILED
        return EXIT_OK if outcome.accepted and not failed else EXIT_FAIL

    return await _with_runtime(settings, run)


def since_of(value: str | None) -> datetime | None:
    """--since: a duration back from now (24h, 7d) or an ISO time; raises ValueError for anything else."""
    if not value:
        return None
    try:
        return datetime.now(timezone.utc) - timedelta(seconds=parse_duration(value))
    except ValueError:
        try:
            since = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"--since {value!r} is neither a duration (24h) nor an ISO time") from None
    return since if since.tzinfo is not None else since.replace(tzinfo=timezone.utc)


async def read_since(settings: Settings, since: str | None, read: Callable[[Any, datetime | None], Awaitable[T]]) -> T | None:
    """`read(store, since)` on the configured database, for --since; None (after saying why) when --since is
    not a duration or a time."""
    from sessions.store import Store

    try:
        moment = since_of(since)
    except ValueError as exc:
        print(f"srebot: {exc}", file=sys.stderr)
        return None
    store = Store(settings.database_url)
    try:
        await store.upgrade()
        return await read(store, moment)
    finally:
        await store.close()


async def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    rows = await read_since(settings, args.since, lambda store, since: store.audit_log(since))
    if rows is None:
        return EXIT_CONFIG
    if args.json:
        print(json.dumps([vars(r) for r in rows], default=str, indent=2))
        return EXIT_OK
    for row in rows:
        what = " ".join(x for x in (row.kind, row.target) if x)
        where = " ".join(x for x in (row.platform, row.workspace, row.channel) if x)
        how = " ".join(x for x in (f"via {row.via}" if row.via else "", f"in {where}" if where else "") if x)
        detail = " ".join(row.detail.split()) if row.detail else ""
        print(f"{row.at:%Y-%m-%d %H:%M:%S} {row.event:<9} {row.actor:<16} {row.approval_id or '-':<28} {what}"
              + (f" [{how}]" if how else "") + (f" — {detail}" if detail else ""))
    if not rows:
        print("(no audit entries)")
    return EXIT_OK


async def cmd_feedback(settings: Settings, args: argparse.Namespace) -> int:
    """Ratings of answers, newest first: when, 👍/👎, who, the question and the answer's verdict line. A thumbs-down
    is a case for the eval corpus."""
    from bot.answer import Answer
    from bot.presentation import headline_of, verdict_of
    from tools.redact import redact

    rows = await read_since(settings, args.since, lambda store, since: store.feedback(since))
    if rows is None:
        return EXIT_CONFIG
    entries = []
    for row in rows:
        answer = Answer.model_validate(row.turn.answer) if row.turn.answer else None
        entries.append({
            "at": row.at.isoformat(), "rating": row.rating, "user": row.user_id, "request_id": row.turn.request_id,
            "question": redact(row.turn.text), "intent": row.turn.intent, "service": row.turn.service,
            "verdict": verdict_of(answer).title if answer else None, "headline": headline_of(answer) if answer else None,
        })
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    for entry in entries:
        mark = "👍" if entry["rating"] == "good" else "👎"
        print(f"{entry['at'][:19].replace('T', ' ')} {mark} {entry['user']:<16} {entry['request_id']:<28} "
              f"“{' '.join(entry['question'].split())}” → {entry['verdict'] or '(no answer)'}")
    if not entries:
        print("(no feedback)")
    return EXIT_OK


async def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from devtools.bench import run_bench

    return await run_bench(settings, args)


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from devtools.demo import run_demo

    interactive = not args.no_chat and sys.stdin.isatty()
    return await run_demo(out=Path(args.out), interactive=interactive)


async def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from devtools.eval import evaluate

    return await evaluate(Path(args.dir), as_json=args.json, only=args.only)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "serve": cmd_serve,
    "ask": cmd_ask,
    "chat": cmd_chat,
    "check": cmd_check,
    "db": cmd_db,
    "approve": cmd_decide,
    "reject": cmd_decide,
    "audit": cmd_audit,
    "feedback": cmd_feedback,
    "bench": cmd_bench,
    "eval": cmd_eval,
    "demo": cmd_demo,
}
