"""Loads a scenario directory (shared/scenarios/FORMAT.md) into a `World`: the question and answer key of
scenario.yaml, and the data every backend serves, with the time markers resolved against the moment of loading.

A directory is a scenario when it holds `scenario.yaml`. A data file it lacks is read from its `base:`, a sibling
directory. "Now" is the load time in whole seconds; `"@-N"` (a whole string) in k8s.json and control_plane.json
becomes the RFC 3339 time now − N s, and `{@-N}` or `{@-N|strftime}` inside any string (log lines, the question,
the answer key's regexes) is replaced the same way.

Besides FORMAT.md's fields, scenario.yaml may carry what the repository's own scenarios need and the shared
format does not describe (see eval/README.md): `followups` (more questions in the same thread, each with its own
`expect`), `backends` (`down`: answers on a closed port, `off`: not configured, `slow`: seconds per request),
`approvers` and `window`.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DATA_FILES = ("k8s.json", "logs.json", "metrics.json", "control_plane.json", "config.toml")
BACKENDS = ("metrics", "logs", "kubernetes", "control_plane")
# kinds that are the service themselves instead of a Deployment
WORKLOAD_KINDS = ("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob", "Pod")

_EXACT = re.compile(r"@([+-]\d+(?:\.\d+)?)")
_INLINE = re.compile(r"\{@([+-]\d+(?:\.\d+)?)(?:\|([^}]*))?\}")


class ScenarioError(Exception):
    """A scenario that cannot be loaded; the message names the file and the problem."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Workload(_Spec):
    kind: str = "Deployment"
    name: str
    exists: bool = True


class Expect(_Spec):
    required: list[str] = []
    forbidden: list[str] = []
    critical: bool | None = None
    action: Literal["rollback", "restart", "scale"] | None = None


class Signal(_Spec):
    query: str
    range: tuple[float, float]


class Followup(_Spec):
    question: str
    expect: Expect = Expect()


class Backends(_Spec):
    down: list[str] = []
    off: list[str] = []
    slow: dict[str, float] = {}


class ScenarioSpec(_Spec):
    name: str
    question: str
    service: str
    namespace: str
    workload: Workload | None = None
    expect: Expect = Expect()
    facts: dict[str, str] = {}
    fault: str | None = None
    signals: list[Signal] = []
    source: Any = None
    upstream: Any = None
    anchor: Any = None
    base: str | None = None
    not_expressed: Any = None
    # the repository's own extensions (module docstring)
    followups: list[Followup] = []
    backends: Backends = Backends()
    approvers: list[str] = Field(default_factory=lambda: ["eval-approver"])
    window: str | None = None


@dataclass
class LogEntry:
    """One line of logs.json, its time made absolute."""

    at: datetime
    labels: dict[str, str]
    line: str
    previous: bool = False


@dataclass
class World:
    path: Path
    spec: ScenarioSpec
    now: datetime
    k8s: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    logs: list[LogEntry] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    control_plane: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    config: str = ""  # the catalog (config.toml), written out as the bot's configuration file

    @property
    def name(self) -> str:
        return self.spec.name

    def fact(self, pattern: str) -> str:
        """The readable name of a required regex, or the regex itself."""
        return next((name for name, regex in self.spec.facts.items() if regex == pattern), pattern)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_times(value: Any, now: datetime) -> Any:
    """`value` with every time marker replaced (module docstring), recursively through lists and dicts."""
    if isinstance(value, dict):
        return {k: resolve_times(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_times(v, now) for v in value]
    if not isinstance(value, str) or "@" not in value:
        return value
    if exact := _EXACT.fullmatch(value):
        return rfc3339(now + timedelta(seconds=float(exact.group(1))))

    def inline(match: re.Match[str]) -> str:
        moment = now + timedelta(seconds=float(match.group(1)))
        return moment.strftime(match.group(2)) if match.group(2) else rfc3339(moment)

    return _INLINE.sub(inline, value)


def is_scenario(path: Path) -> bool:
    return (path / "scenario.yaml").is_file()


def scenario_dirs(where: Path) -> list[Path]:
    """`where` itself when it is a scenario, else the scenarios directly inside it, by name."""
    if is_scenario(where):
        return [where]
    return sorted(p for p in where.iterdir() if p.is_dir() and is_scenario(p))


def load_world(path: Path, *, now: datetime | None = None) -> World:
    """The scenario at `path`, with "now" = `now` (default: this second)."""
    now = now or datetime.fromtimestamp(int(time.time()), UTC)
    spec_file = path / "scenario.yaml"
    try:
        raw = yaml.safe_load(spec_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{spec_file}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{spec_file}: not a mapping")
    try:
        spec = ScenarioSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"{spec_file}: {problems}") from None
    for bad in set(spec.backends.down + spec.backends.off + list(spec.backends.slow)) - set(BACKENDS):
        raise ScenarioError(f"{spec_file}: backends: unknown backend {bad!r} (one of {', '.join(BACKENDS)})")
    if spec.workload and spec.workload.kind not in WORKLOAD_KINDS:
        raise ScenarioError(f"{spec_file}: workload.kind {spec.workload.kind!r} (one of {', '.join(WORKLOAD_KINDS)})")
    spec = _resolved_spec(spec, now)
    world = World(path=path, spec=spec, now=now)

    k8s = _read_json(_data_file(path, "k8s.json", spec.base), {})
    if not isinstance(k8s, dict) or not all(isinstance(v, list) for v in k8s.values()):
        raise ScenarioError(f"{path}/k8s.json: must be an object of lists, {{plural: [object, …]}}")
    world.k8s = {plural: resolve_times(objects, now) for plural, objects in k8s.items()}
    for plural in ("deployments", "replicasets", "pods", "events"):
        world.k8s.setdefault(plural, [])

    logs = _read_json(_data_file(path, "logs.json", spec.base), [])
    try:
        world.logs = [
            LogEntry(
                at=now + timedelta(seconds=float(entry["t"])),
                labels={str(k): str(v) for k, v in entry["labels"].items()},
                line=resolve_times(entry["line"], now),
                previous=bool(entry.get("previous", False)),
            )
            for entry in logs
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ScenarioError(f"{path}/logs.json: every entry needs t, labels and line: {exc!r}") from None

    metrics = _read_json(_data_file(path, "metrics.json", spec.base), [])
    if not isinstance(metrics, list):
        raise ScenarioError(f"{path}/metrics.json: must be a list of series")
    world.metrics = metrics

    control_plane = _read_json(_data_file(path, "control_plane.json", spec.base), {})
    world.control_plane = resolve_times(control_plane, now)

    config = _data_file(path, "config.toml", spec.base)
    world.config = config.read_text() if config else default_catalog(spec)
    try:
        tomllib.loads(world.config)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{config}: not valid TOML: {exc}") from None
    return world


def default_catalog(spec: ScenarioSpec) -> str:
    """FORMAT.md's catalog for a world without config.toml: one entry for its service."""
    return (
        f'[defaults]\nnamespace = "{spec.namespace}"\nwindow = "{spec.window or "15m"}"\napproval_ttl = "30m"\n\n'
        f'[services."{spec.service}"]\nnamespace = "{spec.namespace}"\ndeployment = "{spec.service}"\n'
        f"logs = '{{namespace=\"{spec.namespace}\", app=\"{spec.service}\"}}'\n"
    )


def _resolved_spec(spec: ScenarioSpec, now: datetime) -> ScenarioSpec:
    """The question, follow-ups and answer key with `{@-N…}` markers replaced (an answer may have to name a time)."""
    data = spec.model_dump()
    for key in ("question", "expect", "facts", "followups"):
        data[key] = resolve_times(data[key], now)
    return ScenarioSpec.model_validate(data)


def _data_file(path: Path, name: str, base: str | None, seen: frozenset[Path] = frozenset()) -> Path | None:
    """`name` in `path`, else in its base (a sibling directory, which may have a base of its own)."""
    if (path / name).is_file():
        return path / name
    if base is None:
        return None
    parent = path.parent / base
    if parent in seen or not is_scenario(parent):
        raise ScenarioError(f"{path}: base {base!r} is not a sibling scenario directory (or bases loop)")
    try:
        parent_base = yaml.safe_load((parent / "scenario.yaml").read_text()).get("base")
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise ScenarioError(f"{parent}/scenario.yaml: cannot read: {exc}") from None
    return _data_file(parent, name, parent_base, seen | {path})


def _read_json(path: Path | None, default: Any) -> Any:
    if path is None:
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
