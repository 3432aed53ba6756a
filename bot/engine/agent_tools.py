"""The function tools of the Gemini agent: read tools over the Toolbox, write tools that only propose.

Every read tool answers the model with compact JSON that is redacted (tools.redact) and bounded in size
before the model sees it. Write tools are declared with ADK's confirmation (`require_confirmation=True`):
ADK never runs their body until the agent's loop has turned the call into an approval row and confirmed
it with that approval's id, so a body only reports the proposal; nothing is ever executed from here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Literal

from google.adk.tools import FunctionTool
from pydantic import BaseModel

from bot.actions import REGISTRY, by_tool
from bot.answer import Action
from bot.config import ServiceConfig, Settings, parse_duration
from bot.toolbox import Toolbox, service_ref
from tools.base import ServiceRef, ToolResult
from tools.redact import redact, redact_data

TOOL_OUTPUT_LIMIT = 4000  # characters of JSON per tool answer the model sees
_STRING_LIMIT = 1000  # one string inside a structure (a log sample, a message)


# --- compact, redacted, bounded JSON -------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Plain JSON data from tool results (dataclasses, pydantic models, datetimes); None and empty values
    are left out, since the model pays for every character."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump(mode="python"))
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        items = ((str(k), jsonable(v)) for k, v in value.items())
        return {k: v for k, v in items if v not in (None, [], {}, "")}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def compact(
    value: Any, *, limit: int = TOOL_OUTPUT_LIMIT, keep_tail: bool = False, notes: list[str] | None = None
) -> dict[str, Any]:
    """`value` as redacted JSON data of at most about `limit` characters, saying what was cut.

    Lists are shortened from the end (tools rank their items most relevant first); a long text keeps its
    end when `keep_tail` (logs: the newest lines matter) and its beginning otherwise."""
    data = redact_data(jsonable(value))
    said = [redact(note) for note in notes or []]
    budget = limit - len(dumps(said)) - 30
    for _ in range(3):  # what was cut is said in notes, which take room too: fit again if they overflow
        fitted, cuts = _fit(copy.deepcopy(data), max(200, budget), keep_tail)
        out: dict[str, Any] = {"ok": True, "data": fitted}
        if said or cuts:
            out["notes"] = said + cuts
        excess = len(dumps(out)) - limit
        if excess <= 0:
            break
        budget -= excess
    return out


def failure(error: str) -> dict[str, Any]:
    return {"ok": False, "error": redact(error)[:_STRING_LIMIT]}


def from_result(result: ToolResult[Any], *, keep_tail: bool = False) -> dict[str, Any]:
    if not result.ok:
        return failure(result.error_text or "failed")
    return compact(result.data, keep_tail=keep_tail, notes=list(dict.fromkeys(result.notes)))


def _fit(data: Any, limit: int, keep_tail: bool) -> tuple[Any, list[str]]:
    if isinstance(data, str):
        return _clip(data, limit, keep_tail), (
            [f"text: kept {limit} of {len(data)} characters"] if len(data) > limit else []
        )
    data = _clip_strings(data, _STRING_LIMIT)
    shortened: dict[str, tuple[int, int]] = {}  # list path -> (kept, original)
    for _ in range(64):
        if len(dumps(data)) <= limit:
            break
        lists = [(len(dumps(items)), path, items) for path, items in _lists(data, "data") if len(items) > 1]
        if lists:
            _, path, items = max(lists, key=lambda entry: entry[0])
            original = shortened.get(path, (len(items), len(items)))[1]
            del items[max(1, len(items) // 2) :]
            shortened[path] = (len(items), original)
            continue
        text_path = _longest_string(data)
        if text_path is None:
            break
        parent, key = text_path
        parent[key] = _clip(parent[key], max(40, len(parent[key]) // 2), keep_tail)
    cuts = [f"{path}: showing {kept} of {original}" for path, (kept, original) in shortened.items()]
    if len(dumps(data)) > limit:
        text = dumps(data)
        return _clip(text, limit, keep_tail), cuts + [f"output: kept {limit} of {len(text)} characters"]
    return data, cuts


def _clip(text: str, limit: int, keep_tail: bool) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :] if keep_tail else text[: limit - 1] + "…"


def _clip_strings(data: Any, limit: int) -> Any:
    if isinstance(data, str):
        return _clip(data, limit, False)
    if isinstance(data, dict):
        return {k: _clip_strings(v, limit) for k, v in data.items()}
    if isinstance(data, list):
        return [_clip_strings(v, limit) for v in data]
    return data


def _lists(data: Any, path: str) -> list[tuple[str, list[Any]]]:
    found: list[tuple[str, list[Any]]] = []
    if isinstance(data, list):
        found.append((path, data))
        for item in data:
            found += _lists(item, path + "[]")
    elif isinstance(data, dict):
        for key, value in data.items():
            found += _lists(value, f"{path}.{key}")
    return found


def _longest_string(data: Any) -> tuple[Any, Any] | None:
    best: tuple[int, Any, Any] | None = None
    stack = [data]
    while stack:
        node = stack.pop()
        pairs = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in pairs:
            if isinstance(value, str) and len(value) > 40 and (best is None or len(value) > best[0]):
                best = (len(value), node, key)
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return None if best is None else (best[1], best[2])


# --- the tools ---------------------------------------------------------------------------------


class AgentTools:
    """The agent's tools over one Toolbox; a write tool's call becomes an Action through `action_for`."""

    def __init__(self, settings: Settings, toolbox: Toolbox):
        self.settings = settings
        self.toolbox = toolbox

    def function_tools(self) -> list[FunctionTool]:
        reads: list[Callable[..., Any]] = [
            self.golden_signals,
            self.promql_query,
            self.error_log_patterns,
            self.recent_logs,
            self.deployment_status,
            self.pod_logs,
            self.list_deployments,
            self.open_incidents,
            self.firing_alerts,
            self.audit_logs,
            self.cost_by,
            self.service_cost,
        ]
        # the write tools are the declared actions' (bot.actions): ADK runs their body only once the call is an approval
        writes = [kind.tool for kind in REGISTRY.values()]
        return [FunctionTool(fn) for fn in reads] + [FunctionTool(fn, require_confirmation=True) for fn in writes]

    # --- helpers ---------------------------------------------------------------------------
    def service(self, service: str, namespace: str = "") -> ServiceRef:
        """The catalog entry of a name or alias; an unknown name is a deployment of that name in
        `namespace` (default: the configured default namespace)."""
        name = service.strip()
        if not name:
            raise ValueError("a service name is required")
        found = self.settings.service(name)
        if found is None or (namespace and found.namespace != namespace):
            found = ServiceConfig(name=found.name if found else name, namespace=namespace or None)
        return service_ref(self.settings, found)

    def _window(self, window: str) -> tuple[str, float]:
        text = (window or self.settings.defaults.window).strip()
        seconds = parse_duration(text)
        if seconds <= 0 or seconds > 7 * 86400:
            raise ValueError(f"window {text!r} must be between 1s and 7d")
        return text, seconds

    def _thresholds(self) -> dict[str, tuple[float, float]]:
        return {k: tuple(v) for k, v in self.settings.thresholds.model_dump().items()}  # type: ignore[misc]

    # --- reads -----------------------------------------------------------------------------
    async def golden_signals(self, service: str, namespace: str = "", window: str = "") -> dict[str, Any]:
        """Golden signals of a service over a window (e.g. "15m"): request rate, error ratio, p99 latency,
        CPU and memory ratio of limits, restarts; each with value, an hour-earlier baseline, trend, health
        against the thresholds and the onset time of a problem."""
        try:
            text, _ = self._window(window)
            ref = self.service(service, namespace)
        except ValueError as exc:
            return failure(str(exc))
        return from_result(await self.toolbox.metrics.golden_signals(ref, text, self._thresholds()))

    async def promql_query(self, query: str) -> dict[str, Any]:
        """Run one PromQL instant query against Prometheus; returns the series with their latest values."""
        return from_result(await self.toolbox.metrics.query(query))

    async def error_log_patterns(self, service: str, namespace: str = "", window: str = "") -> dict[str, Any]:
        """The most frequent error/warning log line patterns of a service in a window (Loki), with counts,
        first/last seen and a sample line."""
        try:
            _, seconds = self._window(window)
            ref = self.service(service, namespace)
        except ValueError as exc:
            return failure(str(exc))
        return from_result(await self.toolbox.logs.error_patterns(ref, seconds))

    async def recent_logs(self, service: str, namespace: str = "", window: str = "", limit: int = 50) -> dict[str, Any]:
        """The newest log lines of a service in a window (Loki), oldest first."""
        try:
            _, seconds = self._window(window)
            ref = self.service(service, namespace)
        except ValueError as exc:
            return failure(str(exc))
        size = max(1, min(int(limit), 200))
        return from_result(await self.toolbox.logs.tail(ref.log_selector, seconds, size), keep_tail=True)

    async def deployment_status(self, service: str, namespace: str = "") -> dict[str, Any]:
        """Kubernetes state of a service's deployment: replicas, conditions, current and previous rollout
        (revision, images, age), pods (readiness, restarts, waiting reason, last termination with exit
        code) and Warning events of the look-back window."""
        try:
            ref = self.service(service, namespace)
            _, seconds = self._window("")
        except ValueError as exc:
            return failure(str(exc))
        result = await self.toolbox.kubernetes.deployment_status(
            ref.namespace, ref.deployment, window_seconds=int(seconds)
        )
        return from_result(result)

    async def pod_logs(
        self, pod: str, namespace: str = "", container: str = "", previous: bool = False, tail_lines: int = 100
    ) -> dict[str, Any]:
        """The last lines of a pod's log; `previous=true` reads the crashed instance before the restart."""
        result = await self.toolbox.kubernetes.pod_logs(
            namespace or self.settings.defaults.namespace,
            pod,
            container=container or None,
            previous=bool(previous),
            tail_lines=max(1, min(int(tail_lines), 300)),
        )
        return from_result(result, keep_tail=True)

    async def list_deployments(self, namespace: str = "") -> dict[str, Any]:
        """Kubernetes deployments of one namespace, or of all namespaces when none is given."""
        return from_result(await self.toolbox.kubernetes.list_deployments(namespace or None))

    async def open_incidents(self, service: str = "") -> dict[str, Any]:
        """Open (new or acknowledged) incidents of the SRE control plane, those about `service` when given."""
        return from_result(await self.toolbox.control_plane.open_incidents(service.strip() or None))

    async def firing_alerts(self, service: str = "") -> dict[str, Any]:
        """Firing alerts of the SRE control plane, those about `service` when given."""
        return from_result(await self.toolbox.control_plane.firing_alerts(service.strip() or None))

    async def audit_logs(self, service: str, window: str = "") -> dict[str, Any]:
        """What was done to a service (deploys, config changes, restarts) in the window, newest first,
        from the control plane's audit log."""
        try:
            _, seconds = self._window(window or "2h")
            ref = self.service(service)
        except ValueError as exc:
            return failure(str(exc))
        return from_result(await self.toolbox.control_plane.audit_logs(ref.name, seconds))

    async def cost_by(self, period_days: int = 7, group_by: Literal["service", "tag"] = "service") -> dict[str, Any]:
        """Cloud cost (AWS Cost Explorer) of the last `period_days` days against the period before, grouped
        by AWS service or by the service tag, with the top movers."""
        if group_by not in ("service", "tag"):
            return failure("group_by must be 'service' or 'tag'")
        days = max(1, min(int(period_days), 90))
        return from_result(await self.toolbox.cost.cost_by(days, group_by=group_by))

    async def service_cost(self, service: str, period_days: int = 7) -> dict[str, Any]:
        """Cloud cost of one service (by its cost tag) over the last `period_days` days against the period before."""
        try:
            ref = self.service(service)
        except ValueError as exc:
            return failure(str(exc))
        days = max(1, min(int(period_days), 90))
        return from_result(await self.toolbox.cost.service_cost(ref.cost_tag or ref.name, days))

    def action_for(self, tool: str, args: dict[str, Any]) -> Action:
        """The Action a write tool's call proposes; ValueError when the call does not name one."""
        kind = by_tool(tool)
        if kind is None:
            raise ValueError(f"{tool} is not a write tool")
        return kind.from_tool(args, self.service)
