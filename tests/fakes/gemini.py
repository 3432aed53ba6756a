"""Two stand-ins for Gemini that let the real ADK agent loop run offline.

`ScriptedLlm` is a google-adk `BaseLlm`: each model call takes the next step of its script (parts to
answer with, an exception to raise, a delay) and records the `LlmRequest` it was given.

`FakeGemini` is an aiohttp server on 127.0.0.1 speaking the Gemini REST API that google-genai talks to:
`POST /{version}/models/{model}:generateContent` (JSON) and `:streamGenerateContent?alt=sse` (server-sent
events), answering with candidates whose parts hold `functionCall`s or text, and `usageMetadata`. It
records every request with its path, query, headers and JSON body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from pydantic import Field

# --- in-process: a scripted BaseLlm ----------------------------------------------------------------


def call(name: str, **args: Any) -> types.Part:
    return types.Part(function_call=types.FunctionCall(name=name, args=args))


def text(value: str) -> types.Part:
    return types.Part(text=value)


@dataclass
class Sleep:
    """A step that waits (to provoke the agent's timeout) before answering with `parts`."""

    seconds: float
    parts: list[types.Part] = field(default_factory=lambda: [text("too late")])


Step = list[types.Part] | BaseException | Sleep | Callable[[LlmRequest], list[types.Part]]


class ScriptedLlm(BaseLlm):
    """Answers model calls from `script`, one step per call; records each request."""

    model: str = "scripted-gemini"
    script: list[Any] = Field(default_factory=list)
    requests: list[LlmRequest] = Field(default_factory=list)
    prompt_tokens: int = 120
    completion_tokens: int = 30

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        # contents and config copied deeply (ADK keeps editing them); tools_dict holds live tools, kept as is
        self.requests.append(
            llm_request.model_copy(
                update={
                    "contents": [c.model_copy(deep=True) for c in llm_request.contents],
                    "config": llm_request.config.model_copy(deep=True),
                }
            )
        )
        if not self.script:
            raise AssertionError(f"model called {len(self.requests)} times; the script has no step left")
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            step = step.parts
        parts = step(llm_request) if callable(step) else step
        yield LlmResponse(
            content=types.Content(role="model", parts=parts),
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=self.prompt_tokens,
                candidates_token_count=self.completion_tokens,
                total_token_count=self.prompt_tokens + self.completion_tokens,
            ),
        )

    def seen(self) -> str:
        """Everything the model was sent (instructions, history, tool responses) as one JSON text."""
        return "\n".join(
            json.dumps(
                {
                    "system": str(r.config.system_instruction) if r.config else None,
                    "contents": [c.model_dump(mode="json", exclude_none=True) for c in r.contents],
                },
                ensure_ascii=False,
            )
            for r in self.requests
        )

    def function_responses(self, name: str) -> list[dict[str, Any]]:
        """The responses of tool `name` in the last request the model received."""
        last = self.requests[-1]
        return [
            p.function_response.response or {}
            for c in last.contents
            for p in c.parts or []
            if p.function_response is not None and p.function_response.name == name
        ]


# --- over the wire: a fake Gemini REST API --------------------------------------------------------


def rest_call(name: str, **args: Any) -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": args}}


def rest_text(value: str) -> dict[str, Any]:
    return {"text": value}


@dataclass
class RecordedCall:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


RestStep = list[dict[str, Any]] | Callable[[dict[str, Any]], list[dict[str, Any]]]


class FakeGemini:
    """Gemini's generateContent / streamGenerateContent over HTTP, answering from a script of part lists
    (or functions of the request body returning them); past the script, an error of `error_status`."""

    def __init__(self, script: list[RestStep] | None = None, *, prompt_tokens: int = 200, completion_tokens: int = 40):
        self.script: list[RestStep] = list(script or [])
        self.calls: list[RecordedCall] = []
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.error_status = 500  # what a call answers once the script is used up
        app = web.Application()
        app.router.add_post("/{version}/models/{target}", self._models)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    async def __aenter__(self) -> Self:
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.close()

    async def _models(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        body = await request.json()
        self.calls.append(RecordedCall(request.method, request.path, dict(request.query), dict(request.headers), body))
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, "NOT_FOUND", f"method {method} is not supported by this fake")
        if not self.script:
            return _error(
                self.error_status, "INVALID_ARGUMENT" if self.error_status < 500 else "INTERNAL", "no step left"
            )
        step = self.script.pop(0)
        parts = step(body) if callable(step) else step
        payload = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {
                "promptTokenCount": self.prompt_tokens,
                "candidatesTokenCount": self.completion_tokens,
                "totalTokenCount": self.prompt_tokens + self.completion_tokens,
            },
            "modelVersion": model,
        }
        if method == "generateContent":
            return web.json_response(payload)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"data: {json.dumps(payload)}\r\n\r\n".encode())
        await response.write_eof()
        return response


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": reason}}, status=status)
