"""Scenario directories (shared/scenarios/FORMAT.md) read straight into the engine's Evidence, without servers: the
failure catalogue's unit tests run on API objects exactly as a world writes them."""
from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.engine.causes.base import meta, name
from bot.engine.findings import Evidence
from tools.control_plane import Alert, Resource
from tools.kubernetes import CLUSTER_KINDS, CONTEXT_KINDS, WORKLOAD_KINDS, Snapshot, _configmaps_referenced
from tools.logs import LogPattern, LogReport, _level, _pattern

SHARED = Path("/work/shared/scenarios")
_MARK = re.compile(r"\{@(-?\d+)(?:\|([^}]*))?\}")


def _times(value: Any, now: datetime) -> Any:
    if isinstance(value, str):
        if re.fullmatch(r"@-?\d+", value):
            return (now + timedelta(seconds=int(value[1:]))).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _MARK.sub(lambda m: (now + timedelta(seconds=int(m.group(1)))).strftime(m.group(2) or "%Y-%m-%dT%H:%M:%SZ"),
                         value)
    if isinstance(value, list):
        return [_times(v, now) for v in value]
    if isinstance(value, dict):
        return {k: _times(v, now) for k, v in value.items()}
    return value


def _read(directory: Path, file: str, default: Any) -> Any:
    path = directory / file
    if not path.exists():
        spec = yaml.safe_load((directory / "scenario.yaml").read_text())
        if spec.get("base"):
            return _read(directory.parent / spec["base"], file, default)
        return default
    return json.loads(path.read_text())


def _matches(labels: dict[str, str], selector: dict[str, Any]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def load(directory: Path, now: datetime | None = None) -> tuple[dict[str, Any], Evidence]:
    """The scenario's spec and the Evidence the engine would gather for its service (no metrics)."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    spec = yaml.safe_load((directory / "scenario.yaml").read_text())
    k8s = _times(_read(directory, "k8s.json", {}), now)
    logs = _read(directory, "logs.json", [])
    cp = _times(_read(directory, "control_plane.json", {}), now)
    ns = spec["namespace"]
    workload_spec = spec.get("workload") or {}
    wanted = workload_spec.get("name") or spec["service"]

    def items(plural: str, namespace: str | None = ns) -> list[dict[str, Any]]:
        return [o for o in k8s.get(plural, []) if namespace is None or meta(o).get("namespace") == namespace]

    workload, kind = None, None
    for candidate, plural in WORKLOAD_KINDS.items():
        workload = next((o for o in items(plural) if name(o) == wanted), None)
        if workload is not None:
            kind = candidate
            break
    snap = Snapshot(ns, wanted, kind, workload)
    selector = (workload or {}).get("spec", {}).get("selector") or {}
    if kind == "Pod":
        snap.pods = [workload]  # type: ignore[list-item]
    elif selector:
        snap.pods = [p for p in items("pods") if _matches(meta(p).get("labels") or {}, selector)]
    uid = meta(workload).get("uid")
    snap.replicasets = [rs for rs in items("replicasets") if any(r.get("uid") == uid for r in meta(rs).get(
        "ownerReferences") or [])] if kind == "Deployment" else []
    snap.events = items("events") + [e for e in k8s.get("events", []) if (e.get("involvedObject") or {}).get(
        "kind") == "Node" and meta(e).get("namespace") != ns]
    for plural in CONTEXT_KINDS:
        snap.objects[plural] = items(plural)
    for plural in CLUSTER_KINDS:
        snap.objects[plural] = k8s[plural] if plural in k8s else (None if plural == "nodes" else [])
    if kind == "Job":
        snap.objects["jobs"] = [workload]  # type: ignore[list-item]
    snap.secret_names = {name(s) for s in items("secrets")}
    configmaps = {name(c): c for c in items("configmaps")}
    snap.configmaps = {c: configmaps.get(c) for c in _configmaps_referenced([workload, *snap.pods])}
    snap.dns = [d for d in items("deployments", "kube-system") if (meta(d).get("labels") or {}).get("k8s-app")
                == "kube-dns"]
    if snap.objects["nodes"] is not None:
        words = re.findall(r"[\w.-]+", spec["question"])
        node_names = [name(n) for n in snap.objects["nodes"]]
        chosen = [n for n in node_names if n in words or n.split(".")[0] in words] + sorted(
            {(p.get("spec") or {}).get("nodeName") for p in snap.pods} - {None})
        snap.node_pods = {n: [p for p in k8s.get("pods", []) if (p.get("spec") or {}).get("nodeName") == n]
                          for n in chosen}
    pod_logs: dict[str, str] = {}
    for pod in snap.pods:
        for status in ((pod.get("status") or {}).get("initContainerStatuses") or []) + (
                (pod.get("status") or {}).get("containerStatuses") or []):
            term = (status.get("state") or {}).get("terminated") or {}
            previous = bool(status.get("restartCount"))
            if not previous and term.get("exitCode") in (0, None):
                continue
            lines = [e["line"] for e in sorted(logs, key=lambda e: e["t"])
                     if e["labels"].get("pod") == name(pod) and e["labels"].get("container", status["name"]) ==
                     status["name"] and bool(e.get("previous")) == (previous and "waiting" not in (status.get("state") or {}))]
            if lines:
                pod_logs[f"{name(pod)}/{status['name']}"] = _times("\n".join(lines[-50:]), now)
    window = 900
    catalog = tomllib.loads((directory / "config.toml").read_text()) if (directory / "config.toml").exists() else {}
    logql = (catalog.get("services", {}).get(spec["service"]) or {}).get(
        "logs", f'{{namespace="{ns}", app="{spec["service"]}"}}')
    selector = dict(re.findall(r'(\w+)="([^"]*)"', logql))
    groups: dict[str, LogPattern] = {}
    for entry in logs:
        if entry["t"] < -window or entry["t"] > 0 or entry.get("previous"):
            continue
        labels = entry["labels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        line = _times(entry["line"], now)
        if not re.search(r"(?i)(error|exception|fatal|panic|fail|timeout|timed out|refused|\b5\d\d\b)", line):
            continue
        at = now + timedelta(seconds=entry["t"])
        key = _pattern(line)
        group = groups.setdefault(key, LogPattern(key, 0, at, at, line, _level(line, labels)))
        group.count += 1
        group.first_seen, group.last_seen = min(group.first_seen, at), max(group.last_seen, at)
        group.sample = line if at >= group.last_seen else group.sample
    patterns = sorted(groups.values(), key=lambda p: (p.count, p.last_seen), reverse=True)[:10]
    report = LogReport(logql, now - timedelta(seconds=window), now,
                       sum(p.count for p in patterns), False, patterns)
    ev = Evidence(service=spec["service"], namespace=ns, deployment=wanted, now=now, window="15m",
                  window_seconds=window, logs=report, snapshot=snap, pod_logs=pod_logs, question=spec["question"],
                  alerts=[Alert(**a) for a in cp.get("alerts", []) if a.get("status") == "firing"],
                  resources=[Resource(**r) for r in cp.get("resources", [])], checked=["kubernetes", "logs"])
    return spec, ev
