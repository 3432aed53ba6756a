"""The diagnostic engine: understands a request (intent and service), runs its playbook, optionally hands
the result to the LLM agent, and returns one redacted Answer."""

from __future__ import annotations

from datetime import UTC, datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.actions import REGISTRY, Actions
from bot.answer import Answer, Intent
from bot.config import Settings
from bot.engine import diagnosis, playbooks
from bot.engine.base import Engine
from bot.engine.calls import Calls
from bot.engine.intents import ACTIONS, NEEDS_SERVICE, Parsed, parse
from bot.engine.playbooks import Context
from bot.engine.resolve import Resolution, Resolver, Target
from bot.engine.text import join
from bot.ports import Progress, Request
from bot.toolbox import Toolbox
from bot.commands import HELP_TEXT
from sessions.store import Conversation
from tools.redact import redact

if TYPE_CHECKING:
    from bot.engine.agent import Agent

# engine intent -> Answer intent (the Answer's enum has no "pods", "changes" or per-action intents)
ANSWER_INTENT: dict[str, Intent] = {"pods": "diagnose", "changes": "diagnose", **{a: "action" for a in ACTIONS}}
AGENT_INTENTS = {"diagnose", "changes", "alerts", "chat"}
MAX_KNOWN_SHOWN = 25


class DiagnosticEngine(Engine):
    def __init__(
        self,
        settings: Settings,
        toolbox: Toolbox,
        actions: Actions,
        agent: Agent | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.settings = settings
        self.clock = clock  # "now" of a diagnosis: what is recent, what is old news
        self.toolbox = toolbox
        self.actions = actions
        self.agent = agent
        self.resolver = Resolver(settings, toolbox.kubernetes)

    # --- acknowledgement (no I/O) ----------------------------------------------------------------
    def acknowledgement(self, text: str) -> str:
        parsed = parse(text, self.resolver.names())
        if parsed.intent == "help":
            return "One moment…"
        if parsed.intent == "incidents":
            return "Looking at open incidents…"
        if parsed.intent == "alerts":
            return "Looking at firing alerts…"
        if parsed.intent == "cost":
            return "Looking at cost…"
        if parsed.intent == "metrics" and "expr" in parsed.params:
            return "Running the query…"
        subject = self.resolver.mentioned(parsed)
        if parsed.intent in ACTIONS:
            return REGISTRY[parsed.intent].preparing(subject)
        return f"Looking into {subject}…" if subject else "Looking into it…"

    # --- handling --------------------------------------------------------------------------------
    async def handle(self, request: Request, session: Conversation, progress: Progress) -> Answer:
        # every platform's requests pass here; one that can tell a person privately (Slack) asks before
        refusal = await self.actions.approvals.policy.refusal(request.actor, "ask", where=session.key)
        if refusal is not None:
            return Answer.failure(refusal, session_id=session.id)
        parsed = await self.resolver.parse(request.text)
        ctx = Context(
            self.settings,
            self.toolbox,
            self.actions,
            request,
            session,
            progress,
            Calls(progress, deadline=self.settings.tool_timeout * 2.5),
            self.clock(),
        )
        if request.alert is not None:
            answer = await diagnosis.alert_group(ctx, self.resolver, request.alert)
        else:
            answer = await self._route(ctx, parsed)
        if self.agent is not None and self.settings.llm_enabled and parsed.intent in AGENT_INTENTS:
            answer = await self._agent(ctx, parsed, answer)
        return redact_answer(answer)

    async def _route(self, ctx: Context, parsed: Parsed) -> Answer:
        intent = parsed.intent
        if intent == "help":
            return ctx.answer(intent="help", summary=HELP_TEXT, confidence=1.0, tools=[])
        if intent == "metrics" and "expr" in parsed.params:
            return await playbooks.promql(ctx, str(parsed.params["expr"]))
        if intent == "alerts":
            return await diagnosis.alerts(ctx, self.resolver)
        if intent in ("chat", "incidents", "cost") or (intent in ACTIONS and intent not in NEEDS_SERVICE):
            # the service is optional here
            resolution = await self._optional_service(parsed, ctx.session.current_service, intent)
            if resolution.unknown or resolution.ambiguous:
                return await self._not_found(ctx, parsed, resolution)
            target = resolution.target
            if intent == "chat":
                return self._chat(ctx, target)
            if intent == "incidents":
                return await playbooks.incidents(ctx, target)
            if intent == "cost":
                return await playbooks.cost(ctx, target, playbooks.cost_days(parsed.params))
            return await playbooks.action(ctx, intent, target, parsed.params)
        resolution = await self.resolver.resolve(parsed, ctx.session.current_service)
        if resolution.target is None:
            return await self._not_found(ctx, parsed, resolution)
        target = resolution.target
        answer = await self._service_playbook(ctx, parsed, target)
        if resolution.ignored:
            note = f"(I don't know {join(resolution.ignored, 'or')}, so this is about {target.name}, this thread's service.) "
            answer = answer.model_copy(update={"summary": note + answer.summary})
        if resolution.elsewhere:
            note = (f"{target.ref.deployment} is not in namespace {resolution.elsewhere} (nothing of that name there); it "
                    f"runs in {target.namespace}, so this is about {target.namespace}/{target.ref.deployment}. ")
            answer = answer.model_copy(update={"summary": note + answer.summary})
        return answer

    async def _service_playbook(self, ctx: Context, parsed: Parsed, target: Target) -> Answer:
        intent = parsed.intent
        if intent == "diagnose":
            return await diagnosis.diagnose(ctx, target)
        if intent == "changes":
            return await diagnosis.diagnose(ctx, target, focus="changes")
        if intent == "pods":
            return await diagnosis.pods(ctx, target)
        if intent == "logs":
            return await playbooks.logs(ctx, target)
        if intent == "metrics":
            return await playbooks.metrics(ctx, target)
        if intent == "capacity":
            return await playbooks.capacity(ctx, target)
        return await playbooks.action(ctx, intent, target, parsed.params)

    async def _optional_service(self, parsed: Parsed, current: str | None, intent: str) -> Resolution:
        """For intents that work without a service: a service only when the text names one."""
        if intent == "chat":
            key = self.resolver.from_catalog(parsed.text)
            return Resolution(self.resolver.catalog_target(key) if key else None)
        if parsed.explicit or self.resolver.from_catalog(parsed.text):
            return await self.resolver.resolve(parsed, None)
        for word in parsed.candidates:
            found = await self.resolver.lookup(word)
            if found is not None:
                return found
        return Resolution()

    async def _not_found(self, ctx: Context, parsed: Parsed, resolution: Resolution) -> Answer:
        intent = ANSWER_INTENT.get(parsed.intent, parsed.intent)
        known = await self.resolver.known()
        shown = ", ".join(known[:MAX_KNOWN_SHOWN]) + (" …" if len(known) > MAX_KNOWN_SHOWN else "")
        if resolution.ambiguous:
            summary = (
                f"{resolution.ambiguous[0].split('/')[-1]} runs in several namespaces: "
                f"{join(resolution.ambiguous, 'or')}. Say which, e.g. “{parsed.intent} {resolution.ambiguous[0]}”, "
                "or add it to the catalog."
            )
        elif resolution.unknown:
            summary = f"I don't know {resolution.unknown}; known services: {shown or 'none yet (add [services] to the config)'}."
        else:
            example = f"{parsed.intent if parsed.intent in NEEDS_SERVICE else 'diagnose'} {known[0] if known else 'checkout'}"
            summary = f"Which service? Say e.g. “{example}”; known services: {shown or 'none yet'}."
        return ctx.answer(intent=intent, summary=summary, tools=list(ctx.calls.statuses))

    def _chat(self, ctx: Context, target: Target | None) -> Answer:
        name = target.name if target else (ctx.session.current_service or "checkout")
        summary = (
            "I answer free-form questions only with an LLM (GOOGLE_API_KEY is not set), but these work now: "
            f"“diagnose {name}”, “logs {name}”, “metrics {name}”, “pods {name}”, “what changed?”, "
            "“incidents”, “alerts”, “cost 7d”. Say “help” for the full list."
        )
        fields: dict[str, Any] = {"service": target.name, "namespace": target.namespace} if target else {}
        return ctx.answer(intent="chat", summary=summary, **fields)

    async def _agent(self, ctx: Context, parsed: Parsed, answer: Answer) -> Answer:
        """The LLM writes the final answer from the playbook's; any failure keeps the playbook's."""
        assert self.agent is not None
        context = None if parsed.intent == "chat" else answer
        try:
            final = await self.agent.answer(ctx.request, ctx.session, context, ctx.progress)
        except Exception:  # the agent falls back itself; this guards the guard
            return answer
        if context is not None and not final.tools:
            final = final.model_copy(update={"tools": answer.tools})
        return final


def redact_answer(answer: Answer) -> Answer:
    """Every text of the answer with secrets masked (backend data reaches summaries, titles and evidence)."""
    return answer.model_copy(
        update={
            "summary": redact(answer.summary),
            "findings": [
                f.model_copy(
                    update={
                        "title": redact(f.title),
                        "evidence": redact(f.evidence) if f.evidence else f.evidence,
                        "value": redact(f.value) if isinstance(f.value, str) else f.value,
                    }
                )
                for f in answer.findings
            ],
            "recommendations": [r.model_copy(update={"title": redact(r.title)}) for r in answer.recommendations],
            "ruled_out": [r.model_copy(update={"why": redact(r.why)}) for r in answer.ruled_out],
            "tools": [t.model_copy(update={"error": redact(t.error) if t.error else t.error}) for t in answer.tools],
        }
    )
