"""Write actions: what each would change (shown before approval) and running it through the tools (after)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bot.answer import Action
from bot.approvals import ActionFailed, Approvals
from bot.policy import Actor
from bot.toolbox import Toolbox
from sessions.store import ApprovalRecord
from tools.base import ErrorCode, ToolError, ToolResult

KINDS = ("restart", "scale", "rollback", "ack_incident", "run_automation")


class ActionError(ActionFailed):
    """An action cannot be proposed or failed to run; the message is for the thread."""


def _split_target(target: str) -> tuple[str, str]:
    namespace, _, name = target.partition("/")
    if not name:
        raise ActionError(f"target {target!r} is not namespace/deployment")
    return namespace, name


def _data(result: ToolResult[Any]) -> Any:
    if not result.ok:
        assert result.error is not None
        raise ActionError(str(result.error))
    return result.data


class Actions:
    def __init__(self, toolbox: Toolbox, approvals: Approvals):
        self.toolbox = toolbox
        self.approvals = approvals

    async def describe(self, action: Action) -> str:
        """Exactly what will change, read fresh from the backend ("replicas 3 → 5")."""
        kube = self.toolbox.kubernetes
        if action.kind == "scale":
            namespace, name = _split_target(action.target)
            change = _data(await kube.describe_scale(namespace, name, _replicas(action.params)))
            return f"scale {namespace}/{name}: replicas {change.from_replicas} → {change.to_replicas}"
        if action.kind == "rollback":
            namespace, name = _split_target(action.target)
            plan = _data(await kube.describe_rollback(namespace, name))
            return (
                f"roll back {namespace}/{name}: image {', '.join(_tags(plan.from_images))} → "
                f"{', '.join(_tags(plan.to_images))} (revision {plan.from_revision} → {plan.to_revision})"
            )
        if action.kind == "restart":
            namespace, name = _split_target(action.target)
            report = _data(await kube.deployment_status(namespace, name))
            live = [pod for pod in report.pods if not pod.terminating]
            return f"restart {len(live)} pod{'s' if len(live) != 1 else ''} of {namespace}/{name} (rolling restart)"
        if action.kind == "ack_incident":
            return await self._describe_ack(action)
        if action.kind == "run_automation":
            targets = action.params.get("target_resources") or []
            on = f" on {', '.join(targets)}" if targets else ""
            parameters = action.params.get("parameters") or {}
            args = f" with {parameters}" if parameters else ""
            return f"run automation {action.target}{on}{args}"
        raise ActionError(f"unknown action {action.kind!r}")

    async def _describe_ack(self, action: Action) -> str:
        """"acknowledge incident INC-101 “Checkout error rate above 5%” (critical, new → acknowledged)";
        the title and state come from the control plane when the incident is among the open ones."""
        found = await self.toolbox.control_plane.open_incidents()
        if found.error is not None and found.error.code == ErrorCode.NOT_CONFIGURED:
            raise ActionError(str(found.error))
        incident = next((i for i in (found.data.items if found.data else []) if i.id == action.target), None)
        title = incident.title if incident else action.params.get("title")
        text = f"acknowledge incident {action.target}" + (f" “{title}”" if title else "")
        if incident is not None:
            text += f" ({incident.severity}, {incident.status} → acknowledged)"
        return text

    async def propose(
        self,
        action: Action,
        *,
        requester: str | Actor,
        platform: str,
        session_id: str | None = None,
        request_id: str | None = None,
    ) -> ApprovalRecord:
        """An approval row for `action`; raises ActionError when the change cannot even be described
        (e.g. no previous revision to roll back to), NotAllowed (an ActionError too) when the policy refuses
        `requester` this kind of action in the session's conversation."""
        description = await self.describe(action)
        return await self.approvals.propose(
            kind=action.kind,
            target=action.target,
            params=action.params,
            description=description,
            requester=requester,
            platform=platform,
            session_id=session_id,
            request_id=request_id,
        )

    async def execute(self, approval: ApprovalRecord) -> str:
        """Run an approved action once; returns what happened, raises ActionError on failure."""
        try:
            return await self._execute(approval)
        except ToolError as exc:
            raise ActionError(str(exc)) from exc

    async def _execute(self, approval: ApprovalRecord) -> str:
        kube, cp = self.toolbox.kubernetes, self.toolbox.control_plane
        params = approval.params
        if approval.kind == "restart":
            namespace, name = _split_target(approval.target)
            _data(await kube.restart(namespace, name, datetime.now(timezone.utc)))
            return f"rollout restarted for {namespace}/{name}"
        if approval.kind == "scale":
            namespace, name = _split_target(approval.target)
            change = _data(await kube.scale(namespace, name, _replicas(params)))
            return f"{namespace}/{name} scaled: replicas {change.from_replicas} → {change.to_replicas}"
        if approval.kind == "rollback":
            namespace, name = _split_target(approval.target)
            plan = _data(await kube.rollback(namespace, name))
            return (
                f"{namespace}/{name} rolled back to revision {plan.to_revision} "
                f"({', '.join(_tags(plan.to_images))})"
            )
        if approval.kind == "ack_incident":
            comment = params.get("comment") or f"Acknowledged via srebot (approval {approval.id})"
            incident = _data(await cp.acknowledge_incident(approval.target, approval.decided_by or "srebot", comment))
            return f"incident {incident.id} acknowledged ({incident.status})"
        if approval.kind == "run_automation":
            started = _data(
                await cp.execute_automation(
                    approval.target,
                    dict(params.get("parameters") or {}),
                    list(params.get("target_resources") or []),
                    bool(params.get("dry_run", False)),
                )
            )
            return f"automation {approval.target} started: execution {started.execution_id} ({started.status})"
        raise ActionError(f"unknown action {approval.kind!r}")


def _replicas(params: dict[str, Any]) -> int:
    try:
        replicas = int(params["replicas"])
    except (KeyError, TypeError, ValueError):
        raise ActionError("scale needs a replica count, e.g. `scale checkout 5`") from None
    if replicas < 0:
        raise ActionError(f"cannot scale to {replicas} replicas")
    return replicas


def _tags(images: list[str]) -> list[str]:
    """'registry/shop/checkout:v2.1.0' reads better as 'v2.1.0' in a one-line change."""
    return [image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else image for image in images]
