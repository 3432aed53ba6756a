"""Write actions, each kind declared once: its typed parameters, how it reads before approval ("replicas
3 → 5"), how it runs after, and how a chat request or an LLM tool call becomes one.

A new action is one subclass of `ActionType` registered with `@declare`: every list of kinds (the intents
the engine answers, the agent's write tools, the approval path) is read from `REGISTRY`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.answer import Action
from bot.approvals import ActionFailed, Approvals, NotAllowed
from sessions.store import ApprovalRecord, Origin, Proposal
from tools.base import ErrorCode, ServiceRef, ToolError, ToolResult

if TYPE_CHECKING:
    from bot.ports import Request
    from bot.toolbox import Toolbox


class ActionError(ActionFailed):
    """An action cannot be proposed or failed to run; the message is for the thread."""


class NotProposed(Exception):
    """A chat request for an action that needs something first ("How many replicas?"); the message is the answer."""


# --- what a declaration is given ------------------------------------------------------------------
Read = Callable[[str, Coroutine[Any, Any, ToolResult[Any]]], Awaitable[Any]]


@dataclass(frozen=True)
class Asked:
    """A chat request for an action as the engine understood it: the service it names (if any), the
    parameters its words gave, and `read`, which calls a backend so that the answer lists the call and
    returns its data (None when the backend failed)."""

    service: ServiceRef | None
    params: dict[str, Any]
    toolbox: Toolbox
    read: Read


# The LLM tools' way to find a service by name or alias; raises ValueError for none.
ServiceLookup = Callable[[str, str], ServiceRef]


def told(tool_context: Any) -> dict[str, Any]:
    """What a write tool tells the model: the approval its call became (the agent's loop put it in the
    confirmation's payload), or why none could be made. The tool body never changes anything."""
    confirmation = getattr(tool_context, "tool_confirmation", None)
    payload = getattr(confirmation, "payload", None)
    if not isinstance(payload, dict):
        return {"ok": False, "error": "not proposed: write actions go through an approval"}
    return payload


# --- the declaration ------------------------------------------------------------------------------
P = TypeVar("P", bound=BaseModel)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ActionType(ABC, Generic[P]):
    """One kind of write action."""

    kind: ClassVar[str]  # the Answer's action kind and the engine's intent
    params: ClassVar[type[BaseModel]] = NoParams
    needs_service: ClassVar[bool] = True  # the request must name a service (restart checkout)
    usage: ClassVar[str] = ""  # said when the parameters do not fit
    # The agent's write tool: its name, signature and docstring are what the model sees; its body only
    # reports what the call became (`told`).
    tool: ClassVar[Callable[..., Awaitable[dict[str, Any]]]]

    @property
    def label(self) -> str:
        return self.kind.replace("_", " ")

    def parse(self, params: dict[str, Any]) -> P:
        try:
            return self.params.model_validate(params)  # type: ignore[return-value]
        except ValidationError as exc:
            error = exc.errors()[0]
            if error["type"] == "value_error" and "error" in error.get("ctx", {}):
                raise ActionError(str(error["ctx"]["error"])) from None
            raise ActionError(self.usage or f"{self.label}: {error['msg']}") from None

    def action(self, target: str, params: BaseModel | None = None) -> Action:
        """The Action of this kind; only the parameters given are kept, as the Answer shows them."""
        return Action(kind=self.kind, target=target, params=params.model_dump(exclude_unset=True) if params else {})

    def preparing(self, subject: str | None) -> str:
        """The acknowledgement of a chat request ("Preparing restart of checkout…"); no I/O."""
        return f"Preparing {self.label} of {subject}…" if subject else f"Preparing {self.label}…"

    @abstractmethod
    async def describe(self, toolbox: Toolbox, target: str, params: P) -> str:
        """Exactly what will change, read fresh from the backend; raises ActionError when it cannot be."""

    @abstractmethod
    async def execute(self, toolbox: Toolbox, approval: ApprovalRecord, params: P) -> str:
        """Run it once, after approval; returns what happened, raises on failure."""

    @abstractmethod
    async def from_chat(self, asked: Asked) -> Action:
        """The action a chat request asks for; raises NotProposed with what to say instead."""

    @abstractmethod
    def from_tool(self, args: dict[str, Any], service: ServiceLookup) -> Action:
        """The action an LLM write-tool call asks for; ValueError when the call does not name one."""


REGISTRY: dict[str, ActionType[Any]] = {}
T = TypeVar("T", bound=type[ActionType[Any]])


def declare(cls: T) -> T:
    REGISTRY[cls.kind] = cls()
    return cls


def kind_of(name: str) -> ActionType[Any]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ActionError(f"unknown action {name!r}") from None


def by_tool(tool: str) -> ActionType[Any] | None:
    return next((kind for kind in REGISTRY.values() if kind.tool.__name__ == tool), None)


# --- helpers of the declarations ------------------------------------------------------------------
def split_target(target: str) -> tuple[str, str]:
    namespace, _, name = target.partition("/")
    if not name:
        raise ActionError(f"target {target!r} is not namespace/deployment")
    return namespace, name


def data(result: ToolResult[Any]) -> Any:
    if not result.ok:
        assert result.error is not None
        raise ActionError(str(result.error))
    return result.data


def tags(images: list[str]) -> list[str]:
    """'registry/shop/checkout:v2.1.0' reads better as 'v2.1.0' in a one-line change."""
    return [image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else image for image in images]


class DeploymentAction(ActionType[P]):
    """An action on a service's Kubernetes deployment; its target is "namespace/deployment"."""

    def deployment(self, asked: Asked) -> str:
        assert asked.service is not None, "a service is resolved before a deployment action"
        return f"{asked.service.namespace}/{asked.service.deployment}"

    def deployment_of(self, args: dict[str, Any], service: ServiceLookup) -> str:
        ref = service(str(args.get("service") or ""), str(args.get("namespace") or ""))
        return f"{ref.namespace}/{ref.deployment}"

    async def from_chat(self, asked: Asked) -> Action:
        return self.action(self.deployment(asked))

    def from_tool(self, args: dict[str, Any], service: ServiceLookup) -> Action:
        return self.action(self.deployment_of(args, service))


# --- the declarations -----------------------------------------------------------------------------
async def restart_deployment(service: str, namespace: str = "", tool_context: Any = None) -> dict[str, Any]:
    """Propose a rolling restart of a service's deployment. Nothing changes until an authorised
    person other than the requester approves it in the thread."""
    return told(tool_context)


@declare
class Restart(DeploymentAction[NoParams]):
    kind = "restart"
    tool = staticmethod(restart_deployment)

    async def describe(self, toolbox: Toolbox, target: str, params: NoParams) -> str:
        namespace, name = split_target(target)
        report = data(await toolbox.kubernetes.deployment_status(namespace, name))
        live = [pod for pod in report.pods if not pod.terminating]
        return f"restart {len(live)} pod{'s' if len(live) != 1 else ''} of {namespace}/{name} (rolling restart)"

    async def execute(self, toolbox: Toolbox, approval: ApprovalRecord, params: NoParams) -> str:
        namespace, name = split_target(approval.target)
        data(await toolbox.kubernetes.restart(namespace, name, datetime.now(timezone.utc)))
        return f"rollout restarted for {namespace}/{name}"


class ScaleParams(BaseModel):
    replicas: int

    @field_validator("replicas")
    @classmethod
    def _not_negative(cls, replicas: int) -> int:
        if replicas < 0:
            raise ValueError(f"cannot scale to {replicas} replicas")
        return replicas


async def scale_deployment(
    service: str, replicas: int, namespace: str = "", tool_context: Any = None
) -> dict[str, Any]:
    """Propose scaling a service's deployment to `replicas`. Nothing changes until an authorised person
    other than the requester approves it in the thread."""
    return told(tool_context)


@declare
class Scale(DeploymentAction[ScaleParams]):
    kind = "scale"
    params = ScaleParams
    usage = "scale needs a replica count, e.g. `scale checkout 5`"
    tool = staticmethod(scale_deployment)

    async def describe(self, toolbox: Toolbox, target: str, params: ScaleParams) -> str:
        namespace, name = split_target(target)
        change = data(await toolbox.kubernetes.describe_scale(namespace, name, params.replicas))
        return f"scale {namespace}/{name}: replicas {change.from_replicas} → {change.to_replicas}"

    async def execute(self, toolbox: Toolbox, approval: ApprovalRecord, params: ScaleParams) -> str:
        namespace, name = split_target(approval.target)
        change = data(await toolbox.kubernetes.scale(namespace, name, params.replicas))
        return f"{namespace}/{name} scaled: replicas {change.from_replicas} → {change.to_replicas}"

    async def from_chat(self, asked: Asked) -> Action:
        if "replicas" not in asked.params:
            name = asked.service.name if asked.service else "checkout"
            raise NotProposed(f"How many replicas? Say e.g. “scale {name} 5”.")
        return self.action(self.deployment(asked), ScaleParams(replicas=asked.params["replicas"]))

    def from_tool(self, args: dict[str, Any], service: ServiceLookup) -> Action:
        target = self.deployment_of(args, service)
        replicas = int(args.get("replicas", -1))
        if not 0 <= replicas <= 1000:
            raise ValueError(f"replicas must be between 0 and 1000, not {args.get('replicas')!r}")
        return self.action(target, ScaleParams(replicas=replicas))


async def rollback_deployment(service: str, namespace: str = "", tool_context: Any = None) -> dict[str, Any]:
    """Propose rolling a service's deployment back to its previous revision. Nothing changes until an
    authorised person other than the requester approves it in the thread."""
    return told(tool_context)


@declare
class Rollback(DeploymentAction[NoParams]):
    kind = "rollback"
    tool = staticmethod(rollback_deployment)

    async def describe(self, toolbox: Toolbox, target: str, params: NoParams) -> str:
        namespace, name = split_target(target)
        plan = data(await toolbox.kubernetes.describe_rollback(namespace, name))
        return (
            f"roll back {namespace}/{name}: image {', '.join(tags(plan.from_images))} → "
            f"{', '.join(tags(plan.to_images))} (revision {plan.from_revision} → {plan.to_revision})"
        )

    async def execute(self, toolbox: Toolbox, approval: ApprovalRecord, params: NoParams) -> str:
        namespace, name = split_target(approval.target)
        plan = data(await toolbox.kubernetes.rollback(namespace, name))
        return f"{namespace}/{name} rolled back to revision {plan.to_revision} ({', '.join(tags(plan.to_images))})"


class AckParams(BaseModel):
    title: str | None = None  # shown when the control plane cannot be asked
    comment: str | None = None  # stored with the acknowledgement


async def acknowledge_incident(incident_id: str, comment: str = "", tool_context: Any = None) -> dict[str, Any]:
    """Propose acknowledging a control-plane incident. Nothing changes until an authorised person other
    than the requester approves it in the thread."""
    return told(tool_context)


@declare
class AckIncident(ActionType[AckParams]):
    kind = "ack_incident"
    params = AckParams
    needs_service = False
    tool = staticmethod(acknowledge_incident)

    def preparing(self, subject: str | None) -> str:
        return f"Preparing {self.label}…"

    async def describe(self, toolbox: Toolbox, target: str, params: AckParams) -> str:
        """"acknowledge incident INC-101 “Checkout error rate above 5%” (critical, new → acknowledged)";
        the title and state come from the control plane when the incident is among the open ones."""
        found = await toolbox.control_plane.open_incidents()
        if found.error is not None and found.error.code == ErrorCode.NOT_CONFIGURED:
            raise ActionError(str(found.error))
        incident = next((i for i in (found.data.items if found.data else []) if i.id == target), None)
        title = incident.title if incident else params.title
        text = f"acknowledge incident {target}" + (f" “{title}”" if title else "")
        if incident is not None:
            text += f" ({incident.severity}, {incident.status} → acknowledged)"
        return text

    async def execute(self, toolbox: Toolbox, approval: ApprovalRecord, params: AckParams) -> str:
        comment = params.comment or f"Acknowledged via srebot (approval {approval.id})"
        incident = data(
            await toolbox.control_plane.acknowledge_incident(approval.target, approval.decided_by or "srebot", comment)
        )
        return f"incident {incident.id} acknowledged ({incident.status})"

    async def from_chat(self, asked: Asked) -> Action:
        wanted = str(asked.params["incident_id"])
        listing = await asked.read("control_plane", asked.toolbox.control_plane.open_incidents())
        incident = next((i for i in listing.items if i.id.lower() == wanted.lower()), None) if listing else None
        if listing is not None and incident is None:
            raise NotProposed(f"{wanted} is not an open incident (resolved, or no such id).")
        if incident is None:
            return self.action(wanted)
        return self.action(incident.id, AckParams(title=incident.title) if incident.title else None)

    def from_tool(self, args: dict[str, Any], service: ServiceLookup) -> Action:
        incident = str(args.get("incident_id") or "").strip()
        if not incident:
            raise ValueError("an incident id is required")
        comment = str(args.get("comment") or "").strip()
        return self.action(incident, AckParams(comment=comment) if comment else None)


class AutomationParams(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    target_resources: list[str] = Field(default_factory=list)
    dry_run: bool = False
    script_name: str | None = None  # what the chat request called it


async def run_automation(
    script_id: str,
    target_resources: list[str] | None = None,
    parameters_json: str = "",
    dry_run: bool = False,
    tool_context: Any = None,
) -> dict[str, Any]:
    """Propose running a control-plane automation script (parameters as a JSON object string) on target
    resources. Nothing runs until an authorised person other than the requester approves it."""
    return told(tool_context)


@declare
class RunAutomation(ActionType[AutomationParams]):
    kind = "run_automation"
    params = AutomationParams
    needs_service = False
    tool = staticmethod(run_automation)

    async def describe(self, toolbox: Toolbox, target: str, params: AutomationParams) -> str:
        on = f" on {', '.join(params.target_resources)}" if params.target_resources else ""
        args = f" with {params.parameters}" if params.parameters else ""
        return f"run automation {target}{on}{args}"

    async def execute(self, toolbox: Toolbox, approval: ApprovalRecord, params: AutomationParams) -> str:
        started = data(
            await toolbox.control_plane.execute_automation(
                approval.target, dict(params.parameters), list(params.target_resources), params.dry_run
            )
        )
        return f"automation {approval.target} started: execution {started.execution_id} ({started.status})"

    async def from_chat(self, asked: Asked) -> Action:
        wanted = str(asked.params["script"])
        listing = await asked.read("control_plane", asked.toolbox.control_plane.scripts())
        script = (
            next((s for s in listing.items if wanted.lower() in (s.id.lower(), s.name.lower())), None)
            if listing
            else None
        )
        if listing is not None and script is None:
            names = ", ".join(s.name for s in listing.items) or "none"
            raise NotProposed(f"There is no automation script {wanted}; available: {names}.")
        declared = {str(p.get("name")) for p in script.parameters if isinstance(p, dict)} if script else set()
        service = asked.service
        return self.action(
            script.id if script else wanted,
            AutomationParams(
                parameters={"service": service.name} if service and "service" in declared else {},
                target_resources=[service.name] if service else [],
                script_name=script.name if script else wanted,
            ),
        )

    def from_tool(self, args: dict[str, Any], service: ServiceLookup) -> Action:
        script = str(args.get("script_id") or "").strip()
        if not script:
            raise ValueError("a script id is required")
        raw = str(args.get("parameters_json") or "").strip() or "{}"
        try:
            parameters = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"parameters_json is not JSON: {exc}") from None
        if not isinstance(parameters, dict):
            raise ValueError("parameters_json must be a JSON object")
        return self.action(
            script,
            AutomationParams(
                target_resources=[str(r) for r in args.get("target_resources") or []],
                parameters=parameters,
                dry_run=bool(args.get("dry_run", False)),
            ),
        )


class SilenceParams(BaseModel):
    matchers: dict[str, str]  # label = value, every one must match
    seconds: float = Field(3600, gt=0, le=7 * 86400)

    @field_validator("matchers")
    @classmethod
    def _some(cls, matchers: dict[str, str]) -> dict[str, str]:
        if not matchers:
            raise ValueError("a silence needs at least one label to match")
        return matchers


def matcher_text(matchers: dict[str, str]) -> str:
    """'alertname="HighErrorRate",service="checkout"': a silence's target as Alertmanager writes matchers."""
    return ",".join(f'{name}="{value}"' for name, value in sorted(matchers.items()))


async def silence_alerts(labels_json: str, hours: float = 1.0, tool_context: Any = None) -> dict[str, Any]:
    """Propose an Alertmanager silence for the alerts whose labels equal every entry of `labels_json` (a JSON
    object, e.g. {"alertname": "HighErrorRate", "service": "checkout"}) for `hours`. Nothing is silenced until
    an authorised person other than the requester approves it in the thread."""
    return told(tool_context)


@declare
class Silence(ActionType[SilenceParams]):
    """Alertmanager API v2 silence; proposed from an alert thread's "Silence" button (bot.alerts) or by the agent."""

    kind = "silence"
    params = SilenceParams
    needs_service = False
    tool = staticmethod(silence_alerts)

    def _length(self, seconds: float) -> str:
        return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds / 60:g}m"

    async def describe(self, toolbox: Toolbox, target: str, params: SilenceParams) -> str:
        if not toolbox.alertmanager.configured:
            raise ActionError(toolbox.alertmanager.not_configured_reason())
        return f"silence alerts matching {matcher_text(params.matchers)} for {self._length(params.seconds)} in Alertmanager"

    async def execute(self, toolbox: Toolbox, approval: ApprovalRecord, params: SilenceParams) -> str:
        now = datetime.now(timezone.utc)
        silence = data(
            await toolbox.alertmanager.create_silence(
                params.matchers,
                now,
                now + timedelta(seconds=params.seconds),
                created_by=approval.requester,
                comment=f"Silenced via srebot, approved by {approval.decided_by} (approval {approval.id})",
            )
        )
        return f"silence {silence.id} created in Alertmanager until {silence.ends_at:%H:%M} UTC"

    async def from_chat(self, asked: Asked) -> Action:
        raise NotProposed("Silences are proposed from an alert's thread: press Silence on its message.")

    def from_tool(self, args: dict[str, Any], service: ServiceLookup) -> Action:
        try:
            labels = json.loads(str(args.get("labels_json") or "{}"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"labels_json is not JSON: {exc}") from None
        if not isinstance(labels, dict) or not labels:
            raise ValueError("labels_json must be a JSON object with at least one label")
        hours = float(args.get("hours") or 1.0)
        if not 0 < hours <= 168:
            raise ValueError(f"hours must be between 0 and 168, not {args.get('hours')!r}")
        matchers = {str(k): str(v) for k, v in labels.items()}
        return self.action(matcher_text(matchers), SilenceParams(matchers=matchers, seconds=hours * 3600))


# --- the service the composition root builds ------------------------------------------------------
class Actions:
    """Describes, proposes and executes the declared actions over one toolbox."""

    def __init__(self, toolbox: Toolbox, approvals: Approvals):
        self.toolbox = toolbox
        self.approvals = approvals

    async def describe(self, action: Action) -> str:
        """Exactly what will change, read fresh from the backend ("replicas 3 → 5")."""
        kind = kind_of(action.kind)
        return await kind.describe(self.toolbox, action.target, kind.parse(action.params))

    async def propose(self, action: Action, origin: Origin) -> ApprovalRecord:
        """An approval row for `action`; raises ActionError when the change cannot even be described
        (e.g. no previous revision to roll back to)."""
        description = await self.describe(action)
        return await self.approvals.propose(
            Proposal(action.kind, action.target, action.params, description, origin)
        )

    async def propose_for(self, action: Action, request: Request, session_id: str, told: set[str]) -> ApprovalRecord:
        """`propose` on behalf of the person behind `request`. When the policy refuses them, they are told why
        privately (once per reason: `told` keeps what this request already said) and the ActionFailed raised
        says only that, for their thread; where there is no one to tell privately, it says the reason."""
        try:
            return await self.propose(action, request.origin(session_id))
        except NotAllowed as exc:
            reason = str(exc)
            if reason not in told and not await request.port.tell_privately(reason):
                raise
            told.add(reason)
            raise NotAllowed(NotAllowed.PUBLIC) from exc

    async def execute(self, approval: ApprovalRecord) -> str:
        """Run an approved action once; returns what happened, raises ActionError on failure."""
        kind = kind_of(approval.kind)
        try:
            return await kind.execute(self.toolbox, approval, kind.parse(approval.params))
        except ToolError as exc:
            raise ActionError(str(exc)) from exc
