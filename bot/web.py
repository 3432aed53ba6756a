"""The aiohttp application of `srebot serve` (health, readiness, metrics, the configured platforms) and
serving it until SIGTERM with a drain."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.app import Runtime
from bot.exposure import insecurities

log = logging.getLogger("srebot.web")

RUNTIME = web.AppKey("runtime", Runtime)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[RUNTIME].checks()
    ready = checks.get("database") == "ok"
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(runtime: Runtime, *, manage_runtime: bool = True) -> web.Application:
    """The web app with every configured platform mounted. With `manage_runtime`, the app starts and
    stops the runtime (migrations, dispatcher, drain) with its own lifecycle."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    settings = runtime.settings
    if settings.alerts_enabled:  # without a token the endpoint does not exist (404)
        from bot.alerts.receiver import PATH, make_handler

        assert settings.alerts_token is not None
        app.router.add_post(PATH, make_handler(runtime.alerts, settings.alerts_token.get_secret_value()))
    if settings.slack_enabled:
        from integrations.slack import mount_slack

        mount_slack(app, runtime)
    if settings.teams_mode != "off":  # off: /api/messages is not there at all (404)
        from integrations.teams import mount_teams

        mount_teams(app, runtime)
    if manage_runtime:

        async def start(_: web.Application) -> None:
            await runtime.start(wait_for_database=False)

        async def stop(_: web.Application) -> None:
            await runtime.stop()

        app.on_startup.insert(0, start)
        app.on_shutdown.append(stop)
    return app


async def serve(runtime: Runtime, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, let the platforms finish what they took,
    drain the dispatcher and close every client."""
    settings = runtime.settings
    # The app starts the runtime (on_startup) and stops it last in on_shutdown: after the platforms have
    # finished taking what they acknowledged (events being deduplicated, approval clicks being executed),
    # so no accepted work meets a closed toolbox or database.
    app = build_app(runtime)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("serving", extra={"host": host, "port": port, "slack": settings.slack_enabled})
    for problem in insecurities(settings):
        log.warning("insecure configuration: %s", problem)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    socket_mode = None
    if settings.slack_enabled and settings.slack_app_token is not None:
        from integrations.slack import start_socket_mode

        socket_mode = await start_socket_mode(app, runtime)
    await stop.wait()
    log.info("stopping: no new work, draining", extra={"drain_seconds": settings.drain_seconds})
    if socket_mode is not None:
        await socket_mode.close_async()
    # stop listening; platforms finish what they took; the dispatcher drains (runtime.stop); clients close
    await runner.cleanup()
    log.info("stopped")
