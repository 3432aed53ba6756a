"""The LLM path of the engine: a google-adk LlmAgent on Gemini over the read tools, writes only proposed.

One `Agent` serves every request. Per request it runs the ADK loop in the ADK session of the thread
(`DatabaseSessionService` on the bot's own database: ADK session id = our session id, user id = the
requester, app "srebot"), so follow-ups see earlier turns, also after a restart. The playbook result
(`context`) goes to the model as redacted, bounded JSON; tool output is redacted and bounded too
(agent_tools). Limits per request: a token budget (`settings.llm_token_budget`), a number of tool calls
and a timeout. Any LLM problem - an error, a timeout, the budget - ends in the deterministic answer
(or, for a free-form question, a short "LLM unavailable" answer): this never raises for the LLM.

Write tools carry ADK's confirmation. When the model calls one, ADK pauses the run with an
`adk_request_confirmation` call; the loop turns it into an approval row (`Actions.propose`) and resumes
with a confirmation whose payload is that approval, so the model can say what it proposed. The tool
body only reports the payload: approving and executing happen later, through the approvals module.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.run_config import RunConfig
from google.adk.models import Gemini
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import DatabaseSessionService
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_confirmation import ToolConfirmation
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from bot.actions import Actions
from bot.answer import Action, Answer, Recommendation, ToolStatus
from bot.approvals import ActionFailed
from bot.config import Settings
from bot.engine.agent_tools import AgentTools, compact, dumps
from bot.telemetry import LLM_TOKENS
from bot.ports import Progress, Request
from bot.toolbox import Toolbox
from sessions.store import Conversation
from tools.redact import MASK, redact

log = logging.getLogger("srebot.engine.agent")

APP_NAME = "srebot"
# One ADK history per thread, shared by everyone in it (the prompt names who is asking).
THREAD_USER = "thread"
CONFIRMATION = (
    "adk_request_confirmation"  # google.adk.utils._function_call_names.REQUEST_CONFIRMATION_FUNCTION_CALL_NAME
)
CONTEXT_LIMIT = 6000  # characters of playbook JSON given to the model
MAX_CONTENTS = 60  # history entries sent per model call; older turns are dropped first
MAX_CONFIRMATION_ROUNDS = 3

INSTRUCTION = """\
You are srebot, the SRE assistant in a Slack or Microsoft Teams incident thread. Several engineers read
your answers during an incident: be short, concrete and argue like a good SRE.

- Lead with the most likely cause and the evidence for it (metric values with their thresholds, log
  patterns with counts, pod states and exit codes, rollout times and image versions, incidents, audit
  entries). Correlate changes with the onset ("errors started 2 min after the rollout of v2.1.0").
- Say what you ruled out and why (not OOM: exit code 1 and memory at 35 % of its limit; not the node;
  not image pull; not a quota). Say what is old news (a terminating pod of the previous ReplicaSet, a
  restart that already recovered) instead of raising it as the cause.
- Use the read tools to check facts rather than guess; say which backend could not be checked. When a
  playbook result is given, it was already checked: build on it and call tools only for what it lacks.
- You cannot change anything yourself and must never claim to have changed, restarted, scaled, rolled
  back, acknowledged or run anything. Propose a write action only through its write tool
  (restart_deployment, scale_deployment, rollback_deployment, acknowledge_incident, run_automation) and
  only when the evidence supports it; the tool files an approval that another person must approve.
  Mention the approval id it returns.
- Secrets in tool output appear as [REDACTED]; never try to reveal or guess them.
- Plain text for chat: a short paragraph, then bullets if needed. No tables, no headings.
"""


class _Stop(Exception):
    """The loop was stopped by a limit of this request (token budget, tool calls) or an error the model
    answered with; the message says which, in words a person reads (the model's own error text is logged)."""


# the model's error codes (a finish reason or an API status) as a person reads them
MODEL_ERRORS = {
    "SAFETY": "the model declined to answer (safety filter)",
    "PROHIBITED_CONTENT": "the model declined to answer (safety filter)",
    "BLOCKLIST": "the model declined to answer (safety filter)",
    "RECITATION": "the model declined to answer (recitation filter)",
    "MAX_TOKENS": "the model's answer was cut off at its length limit",
    "RESOURCE_EXHAUSTED": "the model's quota is used up for now",
    "429": "the model's quota is used up for now",
    "UNAVAILABLE": "the model service is unavailable",
    "503": "the model service is unavailable",
    "DEADLINE_EXCEEDED": "the model did not answer in time",
    "UNAUTHENTICATED": "the model refused srebot's API key",
    "PERMISSION_DENIED": "the model refused srebot's API key",
}


def model_trouble(code: str) -> str:
    """'the model's quota is used up for now'; an API code not listed above as it is ('INVALID_ARGUMENT'); anything
    else (ADK reports a raised exception by its class name) as 'the model call failed'."""
    if code.upper() in MODEL_ERRORS:
        return MODEL_ERRORS[code.upper()]
    return f"the model returned error {code}" if re.fullmatch(r"[A-Z0-9_]{2,40}", code) else "the model call failed"


@dataclass
class _Turn:
    """What one request has used and produced so far."""

    request: Request
    session: Conversation
    progress: Progress
    tokens: int = 0
    tool_calls: int = 0
    limit_hit: str | None = None
    proposals: dict[tuple[str, str], Recommendation] = field(default_factory=dict)  # filed by this request
    proposed_before: dict[tuple[str, str], Recommendation] = field(default_factory=dict)  # by the playbook
    texts: list[str] = field(default_factory=list)
    told: set[str] = field(default_factory=set)  # refusals the asker was already told privately


class Agent:
    def __init__(
        self,
        settings: Settings,
        toolbox: Toolbox,
        actions: Actions,
        *,
        model: BaseLlm | str | None = None,
        timeout: float = 30.0,
        max_tool_calls: int = 8,
    ):
        self.settings = settings
        self.actions = actions
        self.timeout = timeout
        self.max_tool_calls = max_tool_calls
        self.tools = AgentTools(settings, toolbox)
        self._secret = settings.google_api_key.get_secret_value() if settings.google_api_key else ""
        self._model, self._unavailable = self._build_model(model)
        self._turns: dict[str, _Turn] = {}
        self._runner: Runner | None = None
        self._sessions: DatabaseSessionService | None = None
        self._prepared = False

    def _build_model(self, model: BaseLlm | str | None) -> tuple[BaseLlm | None, str | None]:
        if isinstance(model, BaseLlm):
            return model, None
        if not self._secret:
            return None, "GOOGLE_API_KEY is not set"
        gemini = Gemini(
            model=model or self.settings.model,
            base_url=self.settings.google_gemini_base_url,
            # the key goes to google-genai only, which sends it as the x-goog-api-key header
            client_kwargs={"api_key": self._secret},
            retry_options=types.HttpRetryOptions(attempts=2, initial_delay=1.0),
        )
        return gemini, None

    def _runner_for_use(self) -> Runner:
        if self._runner is None:
            assert self._model is not None
            agent = LlmAgent(
                name="srebot",
                model=self._model,
                description="SRE assistant for incident threads",
                instruction=INSTRUCTION,
                tools=self.tools.function_tools(),
                generate_content_config=types.GenerateContentConfig(temperature=0.2, max_output_tokens=2048),
                before_model_callback=self._before_model,
                after_model_callback=self._after_model,
                before_tool_callback=self._before_tool,
            )
            # ADK creates its own tables (sessions, events, app_states, user_states, adk_internal_metadata)
            self._sessions = DatabaseSessionService(db_url=self.settings.database_url)
            self._runner = Runner(
                app_name=APP_NAME, agent=agent, session_service=self._sessions, auto_create_session=True
            )
        return self._runner

    async def aclose(self) -> None:
        runner, sessions, self._runner, self._sessions = self._runner, self._sessions, None, None
        if runner is not None:
            try:
                await runner.close()
            except Exception as exc:  # closing must not fail a shutdown
                log.warning("closing the ADK runner failed: %s", self._scrub(str(exc)))
        if sessions is not None:
            await sessions.close()
        if isinstance(self._model, Gemini) and runner is not None:
            try:
                await self._model.api_client.aio.aclose()
            except Exception as exc:
                log.debug("closing the Gemini client failed: %s", self._scrub(str(exc)))

    # --- one request ---------------------------------------------------------------------------
    async def answer(
        self, request: Request, session: Conversation, context: Answer | None, progress: Progress
    ) -> Answer:
        started = time.perf_counter()
        if self._unavailable is not None:
            return self._fallback(context, session, self._unavailable, started)
        turn = _Turn(request, session, progress)
        for recommendation in context.recommendations if context else []:
            if recommendation.action is not None and recommendation.approval_id:
                turn.proposed_before[(recommendation.action.kind, recommendation.action.target)] = recommendation
        self._turns[session.id] = turn
        reason: str | None = None
        try:
            await _say(progress, "Thinking it through…")
            async with asyncio.timeout(self.timeout):
                await self._converse(turn, self._prompt(request, session, context))
        except TimeoutError:
            reason = f"timed out after {self.timeout:g} s"
        except _Stop as exc:
            reason = str(exc)[:300]
        except Exception as exc:  # any LLM or ADK failure: the deterministic answer stands
            # the person reads "the model call failed"; the exception goes to the log with the request id
            log.warning("LLM call failed", extra={"request_id": request.request_id,
                                                  "error": self._scrub(f"{exc.__class__.__name__}: {str(exc)[:300]}")})
            reason = turn.limit_hit or "the model call failed"
        finally:
            self._turns.pop(session.id, None)
        text = self._scrub("\n\n".join(t for t in turn.texts if t.strip())).strip()
        if reason is None and not text and not turn.proposals:
            reason = turn.limit_hit or "the model gave no answer"
        if reason is not None:
            log.warning(
                "LLM unavailable, answering without it",
                extra={"request_id": request.request_id, "error": self._scrub(reason), "tokens": turn.tokens},
            )
            return self._fallback(context, session, reason, started, proposals=list(turn.proposals.values()))
        if not text:
            text = "Proposed: " + "; ".join(r.title for r in turn.proposals.values()) + "."
        return self._assemble(context, session, text, list(turn.proposals.values()), started)

    async def _converse(self, turn: _Turn, prompt: str) -> None:
        runner = self._runner_for_use()
        await self._prepare()
        message: types.Content | None = types.Content(role="user", parts=[types.Part(text=prompt)])
        run_config = RunConfig(max_llm_calls=self.max_tool_calls + 4)
        for _ in range(MAX_CONFIRMATION_ROUNDS + 1):
            if message is None:
                return
            confirmations: list[types.FunctionCall] = []
            async with aclosing(
                runner.run_async(
                    user_id=THREAD_USER, session_id=turn.session.id, new_message=message, run_config=run_config
                )
            ) as events:
                async for event in events:
                    if event.error_code:
                        if turn.limit_hit:
                            raise _Stop(turn.limit_hit)
                        log.warning("the model answered with an error",
                                    extra={"request_id": turn.request.request_id, "code": event.error_code,
                                           "error": self._scrub(event.error_message or "")[:500]})
                        raise _Stop(model_trouble(str(event.error_code)))
                    confirmations += [c for c in event.get_function_calls() if c.name == CONFIRMATION]
                    if event.content and event.content.role == "model" and event.is_final_response():
                        text = "".join(p.text for p in event.content.parts or [] if p.text and not p.thought)
                        if text.strip():
                            turn.texts.append(text)
            message = None
            if confirmations:
                parts = [await self._confirm(turn, call) for call in confirmations]
                message = types.Content(role="user", parts=parts)
        if message is not None:
            raise _Stop("too many write proposals in one request")

    async def _prepare(self) -> None:
        """ADK creates its tables on first use; replicas starting together may race, so try twice."""
        if self._prepared:
            return
        assert self._sessions is not None
        try:
            await self._sessions.prepare_tables()
        except Exception:
            await asyncio.sleep(0.2)
            await self._sessions.prepare_tables()
        self._prepared = True

    async def _confirm(self, turn: _Turn, call: types.FunctionCall) -> types.Part:
        """Answer ADK's confirmation request for a write tool call: file the approval (once per action
        and target in a request, none when the playbook already filed it) and confirm with it as payload,
        or say why it could not be proposed."""
        original = (call.args or {}).get("originalFunctionCall") or {}
        name, args = original.get("name", ""), original.get("args") or {}
        try:
            action = self.tools.action_for(name, args)
            key = (action.kind, action.target)
            recommendation = turn.proposals.get(key) or turn.proposed_before.get(key)
            if recommendation is None:
                await _say(turn.progress, f"Proposing {action.kind} of {action.target}…")
                approval = await self.actions.propose_for(action, turn.request, turn.session.id, turn.told)
                recommendation = Recommendation(
                    title=approval.description[:1].upper() + approval.description[1:],
                    action=action,
                    approval_id=approval.id,
                )
                turn.proposals[key] = recommendation
            payload: dict[str, Any] = {
                "ok": True,
                "status": "proposed, awaiting approval",
                "approval_id": recommendation.approval_id,
                "change": recommendation.title,
                "note": "Nothing has been changed. Another authorised person must approve it in the thread.",
            }
        except (ActionFailed, ValueError) as exc:
            payload = {"ok": False, "status": "not proposed", "error": redact(str(exc))[:500]}
        confirmation = ToolConfirmation(confirmed=True, payload=payload)
        return types.Part(
            function_response=types.FunctionResponse(
                name=CONFIRMATION, id=call.id, response=confirmation.model_dump(by_alias=True, exclude_none=True)
            )
        )

    # --- ADK callbacks: limits and progress ----------------------------------------------------
    def _turn_of(self, context: CallbackContext | ToolContext) -> _Turn | None:
        return self._turns.get(context.session.id)

    async def _before_model(self, callback_context: CallbackContext, llm_request: LlmRequest) -> LlmResponse | None:
        turn = self._turn_of(callback_context)
        budget = self.settings.llm_token_budget
        if turn is not None and turn.tokens >= budget:
            turn.limit_hit = f"token budget of {budget} exceeded ({turn.tokens} used)"
            return LlmResponse(error_code="SREBOT_LIMIT", error_message=turn.limit_hit)
        _trim_history(llm_request)
        return None

    async def _after_model(self, callback_context: CallbackContext, llm_response: LlmResponse) -> LlmResponse | None:
        usage = llm_response.usage_metadata
        if usage is None or llm_response.partial:
            return None
        prompt = usage.prompt_token_count or 0
        completion = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        LLM_TOKENS.labels("prompt").inc(prompt)
        LLM_TOKENS.labels("completion").inc(completion)
        turn = self._turn_of(callback_context)
        if turn is not None:
            turn.tokens += max(usage.total_token_count or 0, prompt + completion)
        return None

    async def _before_tool(
        self, tool: BaseTool, args: dict[str, Any], tool_context: ToolContext
    ) -> dict[str, Any] | None:
        turn = self._turn_of(tool_context)
        if turn is None or tool_context.tool_confirmation is not None:  # a confirmed write resumes: counted already
            return None
        turn.tool_calls += 1
        if turn.tool_calls > self.max_tool_calls:
            turn.limit_hit = f"tool call limit of {self.max_tool_calls} reached"
            return {"ok": False, "error": f"{turn.limit_hit} for this request: answer now with what you have"}
        subject = redact(str(args.get("service") or args.get("pod") or args.get("namespace") or ""))[:80]
        await _say(turn.progress, f"Checking {tool.name.replace('_', ' ')}{f' of {subject}' if subject else ''}…")
        return None

    # --- prompt and answer ---------------------------------------------------------------------
    def _prompt(self, request: Request, session: Conversation, context: Answer | None) -> str:
        lines = [f"{request.user} asks: {redact(request.text)}"]
        if session.current_service:
            lines.append(f"The thread is about the service {session.current_service}.")
        if context is not None:
            brief = compact(_context_brief(context), limit=CONTEXT_LIMIT)["data"]
            lines += [
                "The deterministic playbook already ran; its result (JSON):",
                dumps(brief),
                (
                    "Write the answer for the thread from it: the cause with its evidence, what was ruled out, "
                    "and what to do. Call tools only for what it leaves open."
                ),
            ]
        else:
            lines.append("Answer the question; check facts with the read tools.")
        return "\n".join(lines)

    def _assemble(
        self, context: Answer | None, session: Conversation, text: str, proposals: list[Recommendation], started: float
    ) -> Answer:
        ms = _ms(started)
        llm = ToolStatus(name="llm", ok=True, ms=ms)
        return _answer_from(context, session, summary=text, llm=llm, proposals=proposals)

    def _fallback(
        self,
        context: Answer | None,
        session: Conversation,
        reason: str,
        started: float,
        *,
        proposals: list[Recommendation] | None = None,
    ) -> Answer:
        reason = self._scrub(reason)
        llm = ToolStatus(name="llm", ok=False, ms=_ms(started), error=reason)
        if context is not None:
            summary = f"LLM unavailable ({reason}); this is the deterministic answer. {context.summary}"
            return _answer_from(context, session, summary=summary, llm=llm, proposals=proposals or [])
        summary = (
            f"LLM unavailable ({reason}), so free-form questions cannot be answered right now. "
            "The built-in commands still work: say `help` to see them."
        )
        answer = _answer_from(None, session, summary=summary, llm=llm, proposals=proposals or [])
        return answer.model_copy(update={"status": "failed", "confidence": 0.0})

    def _scrub(self, text: str) -> str:
        text = redact(text)
        return text.replace(self._secret, MASK) if self._secret else text


def _answer_from(
    context: Answer | None, session: Conversation, *, summary: str, llm: ToolStatus, proposals: list[Recommendation]
) -> Answer:
    base = context or Answer(intent="chat", summary=summary, confidence=0.5)
    return base.model_copy(
        update={
            "summary": summary,
            "recommendations": _merge(base.recommendations, proposals),
            "tools": [t for t in base.tools if t.name != "llm"] + [llm],
            "session_id": session.id,
            "elapsed_ms": base.elapsed_ms + (llm.ms or 0.0),
        }
    )


def _merge(existing: list[Recommendation], proposals: list[Recommendation]) -> list[Recommendation]:
    """The playbook's recommendations plus the proposals, one per action kind and target; a proposal's
    approval id goes onto the playbook's recommendation of the same action."""
    merged = [r.model_copy() for r in existing]
    index = {_key(r.action): i for i, r in enumerate(merged) if r.action is not None}
    for proposal in proposals:
        at = index.get(_key(proposal.action))
        if at is None:
            index[_key(proposal.action)] = len(merged)
            merged.append(proposal)
        elif merged[at].approval_id is None:
            merged[at] = merged[at].model_copy(update={"approval_id": proposal.approval_id})
    return merged


def _key(action: Action | None) -> tuple[str, str] | None:
    return (action.kind, action.target) if action is not None else None


def _context_brief(context: Answer) -> dict[str, Any]:
    return {
        "intent": context.intent,
        "service": context.service,
        "namespace": context.namespace,
        "summary": context.summary,
        "findings": [f.model_dump(exclude_none=True) for f in context.ranked().findings],
        "ruled_out": [r.model_dump() for r in context.ruled_out],
        "recommendations": [
            {"title": r.title, **({"approval_id": r.approval_id} if r.approval_id else {})}
            for r in context.recommendations
        ],
        "tools": [{"name": t.name, "ok": t.ok, **({"error": t.error} if t.error else {})} for t in context.tools],
        "confidence": context.confidence,
    }


def _trim_history(llm_request: LlmRequest) -> None:
    """Keep the newest MAX_CONTENTS entries, starting at a user's text so no call loses its response."""
    contents = llm_request.contents
    if len(contents) <= MAX_CONTENTS:
        return
    start = len(contents) - MAX_CONTENTS
    while start < len(contents) - 1 and not _is_user_text(contents[start]):
        start += 1
    llm_request.contents = contents[start:]


def _is_user_text(content: types.Content) -> bool:
    return content.role == "user" and any(p.text for p in content.parts or [])


async def _say(progress: Progress, text: str) -> None:
    try:
        await progress(text)
    except Exception as exc:  # a progress line is never worth failing the answer
        log.debug("progress update failed: %s", exc)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
