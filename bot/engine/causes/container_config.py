"""CreateContainerConfigError and FailedMount: a ConfigMap, Secret, key or PVC the pod references is missing."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, Plan, Rule, Verdict, World, event_text, name, short, statuses, waiting

# 'configmap "x" not found', 'secret "x" not found', 'couldn't find key K in ConfigMap ns/x',
# 'persistentvolumeclaim "x" not found'
MISSING = re.compile(r'(?i)(?P<kind>configmap|secret|persistentvolumeclaim)s?\s+"(?P<name>[^"]+)"\s+not found')
MISSING_KEY = re.compile(r"(?i)couldn'?t find key (?P<key>\S+) in (?P<kind>ConfigMap|Secret) (?:[\w-]+/)?(?P<name>[\w.-]+)")
KIND = {"configmap": "ConfigMap", "secret": "Secret", "persistentvolumeclaim": "PersistentVolumeClaim"}


def _missing(world: World, text: str) -> tuple[str, str, str | None] | None:
    key = MISSING_KEY.search(text)
    if key:
        return key.group("kind"), key.group("name"), key.group("key")
    found = MISSING.search(text)
    if found:
        return KIND[found.group("kind").lower()], found.group("name"), None
    return None


def _exists_now(world: World, kind: str, obj: str) -> bool | None:
    snap = world.snap
    if snap is None:
        return None
    if kind == "Secret":
        return None if snap.secret_names is None else obj in snap.secret_names
    if kind == "ConfigMap":
        return snap.configmaps.get(obj) is not None if obj in snap.configmaps else None
    if kind == "PersistentVolumeClaim" and snap.described("persistentvolumeclaims"):
        return any(name(c) == obj for c in snap.items("persistentvolumeclaims"))
    return None


def detect(world: World) -> list[Verdict]:
    pods = world.pods()
    config_errors = [(p, s) for p in pods for s in statuses(p) + statuses(p, init=True)
                     if (waiting(s) or {}).get("reason") == "CreateContainerConfigError"]
    mounts = world.events("FailedMount", "FailedAttachVolume")
    sources: list[tuple[str, str]] = [(f"pod {name(p)} container {s.get('name')}: state.waiting "
                                       f"CreateContainerConfigError: {(waiting(s) or {}).get('message') or ''}",
                                       (waiting(s) or {}).get("message") or "") for p, s in config_errors]
    sources += [(event_text(e), e.get("message") or "") for e in mounts]
    if not sources:
        return []
    blocked = {name(p) for p, _ in config_errors} | {
        (e.get("involvedObject") or {}).get("name", "") for e in mounts}
    blocked &= {name(p) for p in pods} or blocked
    not_running = [p for p in pods if name(p) in blocked and (p.get("status") or {}).get("phase") != "Running"
                   or any((waiting(s) or {}).get("reason") == "CreateContainerConfigError" for s in statuses(p))]
    current = bool(not_running) or not pods
    for evidence, message in sources:
        missing = _missing(world, message)
        if missing is None:
            continue
        kind, obj, key = missing
        exists = _exists_now(world, kind, obj)
        what = f"key {key} of {kind} {obj}" if key else f"{kind} {obj}"
        state = {True: f"{kind} {obj} exists now", False: f"{kind} {obj} does not exist in {world.namespace}",
                 None: f"whether {kind} {obj} exists now could not be read"}[exists]
        if exists and not key and not current:
            return [Verdict("container_config", f"the {what} that was missing", f"{what} was missing earlier; it "
                            f"exists now and the pods run", [short(evidence, 300)], "info", current=False)]
        how = "mount it" if "mount" in evidence.lower() else "start its containers"
        count = len(not_running) or len(blocked)
        fix = (f"Add key {key} to {kind} {obj}" if key else f"Create {kind} {obj} in {world.namespace}") + (
            f" (or fix the reference in {world.service}'s pod template); the pods start on their own once it exists. "
            "A restart cannot help: the new pods reference the same missing object")
        return [Verdict(
            family="container_config",
            cause=f"a missing {what}",
            title=f"{count} of {len(pods) or count} pods cannot {how}: {what} is missing ({state})",
            evidence=[short(evidence, 300)],
            severity="critical",
            ruled_out=[("Application crash", "the container never started"),
                       ("Image pull", "the image is not what blocks the start")],
            plans=[Plan(fix)],
            subjects=blocked | {obj},
        )]
    evidence, message = sources[0]
    return [Verdict("container_config", "a configuration or volume the pods cannot get",
                    f"Pods cannot start: {short(message, 200)}", [short(evidence, 300)], "critical",
                    plans=[Plan(f"Fix what the message names: {short(message, 160)}; a restart cannot help")],
                    subjects=blocked)]


RULE = Rule("container_config", 10, ("pods", "events", "configmaps", "secrets (names only)", "persistentvolumeclaims"),
            detect, "CreateContainerConfigError / FailedMount: missing ConfigMap, Secret, key or PVC (exists now or not)",
            explains=(ERRORS,))
