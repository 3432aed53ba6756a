"""A loopback Slack (Web API, file uploads, response_url hooks, Socket Mode) on 127.0.0.1 that real Slack clients talk to, with payload builders and Slack-style request signing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from devtools.loopback.serving import serve


@dataclass
class Call:
    """One Web API request as the fake received it."""

    method: str
    args: dict[str, Any]
    token: str | None
    status: int = 200  # what the fake answered: 429 when rate limited, 0 when it hung up
    at: float = field(default_factory=time.monotonic)
    response: dict[str, Any] = field(default_factory=dict)

    def text_blob(self) -> str:
        """Every string in the arguments (text, blocks, files) joined, for containment checks."""
        return "\n".join(_strings(self.args))


@dataclass
class Upload:
    file_id: str
    filename: str
    content: str
    data: bytes = b""  # the bytes as uploaded (a PNG chart is not text)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def sign(body: str | bytes, secret: str, timestamp: int | str) -> str:
    """The `X-Slack-Signature` of a body: v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def signed_headers(
    body: str, secret: str, *, timestamp: int | None = None, content_type: str | None = None,
    retry_num: int | None = None,
) -> dict[str, str]:
    """Headers of a signed request; the content type follows the body (JSON or form)."""
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(body, secret, ts),
        "Content-Type": content_type
        or ("application/json" if body.lstrip().startswith("{") else "application/x-www-form-urlencoded"),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers


class _Service:
    """`async with` for something with `start()` (returning itself) and `close()`."""

    async def start(self) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SlackFake(_Service):
    """A fake Slack that the real `slack_sdk` / Bolt clients talk to (point `SLACK_API_URL` at `api_url`).

    It records every call and answers like Slack:

        async with SlackFake() as slack:
            env = {"SLACK_API_URL": slack.api_url, "SLACK_BOT_TOKEN": slack.bot_token,
                   "SLACK_SIGNING_SECRET": slack.signing_secret}
            ...
            body = slack.event_body(slack.app_mention("<@UBOT> diagnose checkout"))
            status, text = await slack.deliver(bot_url + "/slack/events", body)
            call = await slack.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == ts)

    Web API methods answered: auth.test (the bot's `bot_user_id` / `bot_id` / `team_id`),
    chat.postMessage (a new `ts`), chat.update, chat.postEphemeral, files.getUploadURLExternal,
    the upload URL itself (content kept in `uploads`), files.completeUploadExternal, chat.startStream (a
    new `ts`), views.publish, apps.connections.open (a ws:// URL of this server) and usergroups.users.list (the
    members set in `user_groups`, else `no_such_subteam`). Any other method answers `{"ok": true}`.

    Recording: `calls` (a `Call` per Web API request, in order, with the method, the parsed form or JSON
    arguments, the token, the HTTP status sent back and the monotonic time it arrived), `calls_to(method)`,
    `texts()` (every string a message carried, for "nothing was dropped" checks), `uploads`, `responses`
    (posts to response_url).

    Failures on demand: `rate_limit(n, retry_after=1, method=None)` answers HTTP 429 with Retry-After to
    the next n calls (of `method`, or of any method); `disconnect(n, method=None)` closes the connection
    of the next n calls without an answer; `fail(method, error, times)` answers `{"ok": false, "error": ...}`
    (HTTP 200, as Slack does; `calls_to` still lists those, check `call.response["ok"]`).

    Payloads exactly as Slack sends them: `app_mention`, `message` (events), `event_body` (the
    event_callback envelope), `slash_command` (form body), `block_actions` (form body with `payload=`),
    `sign` / `signed_headers`, and `deliver` to POST them signed to a bot.

    Socket Mode: after the bot calls apps.connections.open it connects to `ws_url`; `send_envelope`
    pushes an `events_api` (or other) envelope and `wait_for_ack(envelope_id)` returns the bot's ack.

    Waiting: `wait_for(method, predicate, timeout)` and `wait_for_count(...)` wait on the record
    (woken by every call, no sleeping).
    """

    def __init__(
        self,
        *,
        team_id: str = "T0TEAM",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        bot_token: str = "xoxb-fake-token",
        app_token: str = "xapp-fake-token",
        signing_secret: str = "fake-signing-secret",
        api_app_id: str = "A0SREBOT",
    ):
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.api_app_id = api_app_id
        self.user_groups: dict[str, list[str]] = {}  # user group id (S…) -> member ids, for usergroups.users.list
        self.calls: list[Call] = []
        self.uploads: list[Upload] = []
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_url
        self.socket_acks: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._limits: list[tuple[str | None, int]] = []  # (method or None, retry_after), one per limited call
        self._failures: dict[str, list[str]] = {}
        self._drops: list[str | None] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> SlackFake:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{hook}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner, self.url = await serve(app)
        self.url += "/"
        return self

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL should be (ends with "/")."""
        return self.url + "api/"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "socket"

    # --- failures on demand ----------------------------------------------------------------------
    def rate_limit(self, count: int = 1, *, retry_after: int = 1, method: str | None = None) -> None:
        """The next `count` calls (of `method`, or any) answer 429 with `Retry-After: retry_after`."""
        self._limits += [(method, retry_after)] * count

    def fail(self, method: str, error: str = "channel_not_found", times: int = 1) -> None:
        """The next `times` calls of `method` answer {"ok": false, "error": error}."""
        self._failures.setdefault(method, []).extend([error] * times)

    def disconnect(self, count: int = 1, *, method: str | None = None) -> None:
        """The next `count` calls (of `method`, or any) get their connection closed without an answer."""
        self._drops += [method] * count

    # --- recording -------------------------------------------------------------------------------
    def calls_to(self, method: str, predicate: Callable[[Call], bool] | None = None) -> list[Call]:
        """Answered (non-429) calls of a method, in order, optionally filtered."""
        return [c for c in self.calls if c.method == method and c.status == 200 and (predicate is None or predicate(c))]

    def texts(self) -> str:
        """Every string any message or upload carried: to check that nothing was dropped."""
        return "\n".join([c.text_blob() for c in self.calls] + [u.content for u in self.uploads])

    async def wait_for(
        self, method: str, predicate: Callable[[Call], bool] | None = None, timeout: float = 5.0
    ) -> Call:
        """The first answered call of `method` matching `predicate`, waiting for it up to `timeout` s."""
        return (await self.wait_for_count(method, 1, predicate, timeout))[0]

    async def wait_for_count(
        self, method: str, count: int, predicate: Callable[[Call], bool] | None = None, timeout: float = 5.0
    ) -> list[Call]:
        """At least `count` matching calls; AssertionError naming what was seen if they do not come."""

        def ready() -> bool:
            return len(self.calls_to(method, predicate)) >= count

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(ready)
        except TimeoutError:
            seen = [(c.method, c.status, c.args.get("text", "")[:80]) for c in self.calls]
            raise AssertionError(f"no {count}× {method} matching within {timeout} s; calls: {seen}") from None
        return self.calls_to(method, predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- Web API ---------------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = dict(request.query)
        body = await request.read()
        content_type = request.content_type
        if body:
            if content_type == "application/json":
                args.update(json.loads(body))
            elif content_type == "multipart/form-data":
                form = await request.post()
                args.update({k: v for k, v in form.items() if isinstance(v, str)})
            else:
                args.update(dict(parse_qsl(body.decode(), keep_blank_values=True)))
        for key, value in list(args.items()):  # form fields carry JSON for blocks, files, ...
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    args[key] = json.loads(value)
                except ValueError:
                    pass
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth else args.get("token")
        call = Call(method=method, args=args, token=token)
        self.calls.append(call)
        try:
            drop = next((i for i, m in enumerate(self._drops) if m in (None, method)), None)
            if drop is not None:
                self._drops.pop(drop)
                call.status = 0
                assert request.transport is not None
                request.transport.close()  # the client sees the server disconnect
                raise web.HTTPServiceUnavailable()
            limited = next((i for i, (m, _) in enumerate(self._limits) if m in (None, method)), None)
            if limited is not None:
                _, retry_after = self._limits.pop(limited)
                call.status = 429
                call.response = {"ok": False, "error": "ratelimited"}
                return web.json_response(call.response, status=429, headers={"Retry-After": str(retry_after)})
            if self._failures.get(method):
                call.response = {"ok": False, "error": self._failures[method].pop(0)}
            else:
                call.response = self._answer(method, args, request)
            return web.json_response(call.response)
        finally:
            await self._notify()

    def next_ts(self) -> str:
        """A fresh message timestamp, increasing like Slack's."""
        return f"{1_700_000_000 + next(self._ts)}.{next(self._ids):06d}"

    def _answer(self, method: str, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        channel = args.get("channel") or args.get("channel_id")
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake Team", "user": "srebot",
                    "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                    "is_enterprise_install": False}
        if method == "chat.postMessage":
            ts = self.next_ts()
            message = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "ts": ts,
                       "text": args.get("text", ""), "thread_ts": args.get("thread_ts")}
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            return {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text", "")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.next_ts()}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ids):08d}"
            self.uploads.append(Upload(file_id, args.get("filename", ""), ""))
            return {"ok": True, "upload_url": f"{self.url}upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = args.get("files") or []
            return {"ok": True, "files": [{"id": f.get("id"), "title": f.get("title")} for f in files]}
        if method == "chat.startStream":
            return {"ok": True, "channel": channel, "ts": self.next_ts()}
        if method == "chat.getPermalink":
            ts = str(args.get("message_ts", ""))
            return {"ok": True, "channel": channel,
                    "permalink": f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}"}
        if method == "views.publish":
            return {"ok": True, "view": {"id": f"V{next(self._ids):08d}", **(args.get("view") or {})}}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.ws_url}
        if method == "usergroups.users.list":
            members = self.user_groups.get(args.get("usergroup", ""))
            return {"ok": True, "users": members} if members is not None else {"ok": False, "error": "no_such_subteam"}
        return {"ok": True}

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        data = await request.read()
        content = data.decode("utf-8", errors="replace")
        for upload in self.uploads:
            if upload.file_id == file_id:
                upload.content = content
                upload.data = data
        await self._notify()
        return web.Response(text=f"OK - {len(data)}")

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        await self._notify()
        return web.Response(text="ok")

    # --- Socket Mode -----------------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self._sockets),
                            "debug_info": {"host": "fake"}, "connection_info": {"app_id": self.api_app_id}})
        await self._notify()
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.socket_acks.append(json.loads(message.data))
                    await self._notify()
        finally:
            self._sockets.remove(ws)
        return ws

    async def wait_for_socket(self, timeout: float = 5.0) -> None:
        """Until a Socket Mode client is connected."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._sockets))

    async def send_envelope(
        self, payload: dict[str, Any], *, type: str = "events_api", retry_attempt: int = 0,
        accepts_response_payload: bool = False,
    ) -> str:
        """Push an envelope to the connected client; returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        await self._sockets[-1].send_json({
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        })
        return envelope_id

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((a for a in self.socket_acks if a.get("envelope_id") == envelope_id), None)

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        return found()  # type: ignore[return-value]

    # --- payloads as Slack sends them ------------------------------------------------------------
    def app_mention(
        self, text: str, *, user: str = "U0ALICE", channel: str = "C0INCIDENT", ts: str | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        ts = ts or self.next_ts()
        event = {
            "type": "app_mention", "user": user, "text": text, "ts": ts, "team": self.team_id,
            "channel": channel, "event_ts": ts, "client_msg_id": str(uuid.uuid4()),
            "blocks": [{"type": "rich_text", "block_id": "b1",
                        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}],
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def message(
        self, text: str, *, user: str | None = "U0ALICE", channel: str = "C0INCIDENT", channel_type: str = "channel",
        ts: str | None = None, thread_ts: str | None = None, subtype: str | None = None, bot_id: str | None = None,
    ) -> dict[str, Any]:
        ts = ts or self.next_ts()
        event: dict[str, Any] = {"type": "message", "text": text, "ts": ts, "team": self.team_id, "channel": channel,
                                 "event_ts": ts, "channel_type": channel_type}
        if user:
            event["user"] = user
        if thread_ts:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = "U0ALICE"
        if subtype:
            event["subtype"] = subtype
        if bot_id:
            event["bot_id"] = bot_id
            event["bot_profile"] = {"id": bot_id, "name": "a bot", "team_id": self.team_id}
        if subtype is None and bot_id is None:
            event["client_msg_id"] = str(uuid.uuid4())
        return event

    def event_body(self, event: dict[str, Any], *, event_id: str | None = None) -> str:
        """The event_callback envelope of Events API deliveries, as a JSON body."""
        return json.dumps(self.event_payload(event, event_id=event_id))

    def event_payload(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        return {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": self.team_id, "user_id": self.bot_user_id,
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
            "event_context": f"4-{uuid.uuid4().hex}",
        }

    def slash_command(
        self, text: str, *, command: str = "/sre", user: str = "U0ALICE", channel: str = "C0INCIDENT",
    ) -> str:
        """A slash command's form body."""
        return urlencode({
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "incident",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": f"{self.url}response/{uuid.uuid4().hex}",
            "trigger_id": f"{next(self._ids)}.{uuid.uuid4().hex[:12]}",
        })

    def block_actions(
        self, action_id: str, value: str, *, user: str = "U0BOB", channel: str = "C0INCIDENT",
        message_ts: str | None = None, thread_ts: str | None = None, block_id: str = "approval",
        element: str = "button", home: bool = False,
    ) -> str:
        """A button click's form body (`payload=` JSON): on a message, or in the App Home (`home=True`).
        `element` "feedback_buttons" is a click on a feedback button."""
        message_ts = message_ts or self.next_ts()
        message: dict[str, Any] = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id,
                                   "ts": message_ts, "text": "Approval needed", "blocks": []}
        if thread_ts:
            message["thread_ts"] = thread_ts
        clicked: dict[str, Any] = {"action_id": action_id, "block_id": block_id, "value": value, "type": element,
                                   "action_ts": f"{time.time():.6f}"}
        if element == "button":
            clicked["text"] = {"type": "plain_text", "text": action_id, "emoji": True}
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": self.team_id},
            "api_app_id": self.api_app_id,
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": f"{next(self._ids)}.{uuid.uuid4().hex[:12]}",
            "team": {"id": self.team_id, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "incident"},
            "message": message,
            "state": {"values": {}},
            "response_url": f"{self.url}response/{uuid.uuid4().hex}",
            "actions": [clicked],
        }
        if home:
            view_id = f"V{next(self._ids):08d}"
            for key in ("channel", "message", "response_url"):
                del payload[key]
            payload["container"] = {"type": "view", "view_id": view_id}
            payload["view"] = {"id": view_id, "type": "home", "blocks": [], "state": {"values": {}}}
        return urlencode({"payload": json.dumps(payload)})

    # --- sending to a bot ------------------------------------------------------------------------
    async def deliver(
        self, url: str, body: str, *, secret: str | None = None, timestamp: int | None = None,
        retry_num: int | None = None, content_type: str | None = None, session: aiohttp.ClientSession | None = None,
    ) -> tuple[int, str]:
        """POST a body signed like Slack does to a bot's URL; returns (status, response text). Pass a
        `session` to reuse its connections (load generation); without one a session is opened for the call."""
        headers = signed_headers(body, secret or self.signing_secret, timestamp=timestamp,
                                 content_type=content_type, retry_num=retry_num)
        if session is not None:
            async with session.post(url, data=body.encode(), headers=headers) as response:
                return response.status, await response.text()
        async with aiohttp.ClientSession() as own, own.post(url, data=body.encode(), headers=headers) as response:
            return response.status, await response.text()
