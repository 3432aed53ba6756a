"""A change to an object next to the service — a feature flag its code reads, a RoleBinding that grants its
ServiceAccount, a NetworkPolicy of its namespace — that its errors began right after. The service's own objects did
not change, so a rollback or a restart cannot help: the fix is to undo that change (turn the flag off, recreate the
binding, allow the traffic).

Which changes concern the service is decided here too (`concerning`), so that the audit log's "what changed" is the
same for the diagnosis, the correlation and this rule: a change to the service's own objects, to an object of its
namespace that governs its pods, or to an object its logs name.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.engine.causes.base import ERRORS, SLOW, Plan, Rule, Verdict, World, name, short
from bot.engine.causes.dependency import FAILED_CALL, failing_dependencies
from bot.engine.causes.permissions import FORBIDDEN
from bot.engine.text import ago, changes_text, clock
from tools.control_plane import AuditLog, mentions

# The errors began this long after the change at most (a flag reaches the pods in seconds, an RBAC cache in a
# minute, a retried call fails after its timeout); clocks disagree by up to SKEW the other way.
AFTER = timedelta(minutes=10)
SKEW = timedelta(seconds=60)

# How a credential the pods hold no longer matching looks in their lines: after a Secret changes, these name no object.
CREDENTIAL_FAILURE = re.compile(
    r"(?i)password authentication failed|authentication failed|access denied for user|invalid (?:credentials|password|"
    r"api[ _-]?key)|bad credentials|login failed|SASL authentication|\bunauthori[sz]ed\b")
# Kinds of object that are not in any namespace and act on every pod (resource_type, as the audit log writes it, lower
# case without separators → how it is named in a sentence): a change to one concerns every service.
CLUSTER_WIDE = {"priorityclass": "PriorityClass", "storageclass": "StorageClass", "clusterrole": "ClusterRole",
                "mutatingwebhookconfiguration": "MutatingWebhookConfiguration",
                "validatingwebhookconfiguration": "ValidatingWebhookConfiguration",
                "customresourcedefinition": "CustomResourceDefinition", "runtimeclass": "RuntimeClass"}
# resource_type → the lines a change of that kind produces even when they do not name the object
CHANGE_SYMPTOMS: dict[str, re.Pattern[str]] = {"secret": CREDENTIAL_FAILURE}

# An object's name in a record's values: lower-case words joined by - . or _ ("order-events", "inventory-db").
_IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*(?:[-._][a-z0-9]+)+\b")

DSN_HOST = re.compile(r"\bhost=[`\"']?(?P<host>[A-Za-z][\w.-]*[A-Za-z0-9])")


@dataclass(frozen=True)
class Kind:
    """How a kind of change breaks a service next to it: the error lines it causes and the fix that undoes it."""

    words: str  # how the object is named in a sentence: "feature flag"
    symptom: re.Pattern[str] | None  # lines it produces even when they do not name it; None: only lines naming it
    fix: Callable[[AuditLog, World], str]
    namespaced: bool = True  # governs the pods of its namespace (a change there concerns every service in it)


def _was(entry: AuditLog, key: str) -> object:
    value = (entry.changes or {}).get(key)
    return value.get("from") if isinstance(value, dict) else None


def _flag_fix(entry: AuditLog, world: World) -> str:
    before = {k: v.get("from") for k, v in (entry.changes or {}).items() if isinstance(v, dict) and "from" in v
              and k not in ("comment", "reason")}
    back = ", ".join(f"{k} {v}" for k, v in before.items())
    return (f"Turn feature flag {entry.resource_name} off again ({back or 'its previous state'}): the errors began "
            f"when it changed, and {world.service}'s code and pods did not; a rollback or a restart cannot help")


def _binding_fix(entry: AuditLog, world: World) -> str:
    role, subjects = _was(entry, "roleRef"), _was(entry, "subjects")
    refused = next((m for _, _, m in world.find_lines(FORBIDDEN)), None)
    grant = f" so that {refused.group('user')} can {refused.group('verb')} {refused.group('plural')} again" \
        if refused else ""
    was = f" ({role} → {', '.join(map(str, subjects)) if isinstance(subjects, list) else subjects})" \
        if role or subjects else ""
    verb = "Recreate" if entry.action == "delete" else "Restore"
    return f"{verb} {_kind(entry).words} {entry.resource_name}{was}{grant}; a restart cannot help"  # type: ignore[union-attr]


def _policy_fix(entry: AuditLog, world: World) -> str:
    called = []
    for host, port, _, line in failing_dependencies(world)[:2]:
        # a connection string names the host the address stands for: 'failed to connect to `host=orders-db …`'
        named = DSN_HOST.search(line)
        called.append(f"{named.group('host') if named else host}" + (f" port {port}" if port else ""))
    to = " and ".join(called) or "the services it calls"
    return (f"Allow egress from {world.service} to {to} in NetworkPolicy {entry.resource_name} (or delete the "
            f"policy until it does); the callee is not at fault, and a restart cannot help")


def _revert(entry: AuditLog, world: World) -> str:
    return f"Revert {entry.username or 'the'} {entry.action} of {entry.resource_type} {entry.resource_name}"


# resource_type (as the audit log writes it, lower case, without separators) → how it breaks its neighbours
KINDS: dict[str, Kind] = {
    "featureflag": Kind("feature flag", None, _flag_fix, namespaced=False),
    "flag": Kind("feature flag", None, _flag_fix, namespaced=False),
    "rolebinding": Kind("RoleBinding", FORBIDDEN, _binding_fix),
    "clusterrolebinding": Kind("ClusterRoleBinding", FORBIDDEN, _binding_fix, namespaced=False),
    "role": Kind("Role", FORBIDDEN, _revert),
    "networkpolicy": Kind("NetworkPolicy", FAILED_CALL, _policy_fix),
}


def _kind(entry: AuditLog) -> Kind | None:
    return KINDS.get(re.sub(r"[^a-z]", "", (entry.resource_type or "").lower()))


def _namespace(entry: AuditLog) -> str | None:
    value = (entry.changes or {}).get("namespace")
    if isinstance(value, dict):
        value = value.get("to") or value.get("from")
    return value if isinstance(value, str) else None


def _error_lines(world: World) -> list[tuple[str, str]]:
    return [(where, line) for where, line in world.log_lines() if not re.match(r"(?i)\W*(info|debug)\b", line)]


def _names(entry: AuditLog, lines: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(where, line) for where, line in lines if entry.resource_name and mentions(entry.resource_name, [line])]


def references(world: World) -> dict[str, str]:
    """What the workload's pods take from other objects, by name: a Secret or ConfigMap read through env ('env
    DB_PASSWORD') or mounted ('volume creds'), their ServiceAccount, their image pull secrets, the nodes they run on."""
    spec = world.template()
    out: dict[str, str] = {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for variable in container.get("env") or []:
            source = (variable.get("valueFrom") or {})
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
            if ref.get("name"):
                seen = out.get(ref["name"], "")
                out[ref["name"]] = f"{seen}, {variable.get('name')}" if seen.startswith("env ") else \
                    seen or f"env {variable.get('name')}"
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef") or source.get("configMapRef") or {}
            if ref.get("name"):
                out.setdefault(ref["name"], "envFrom")
    for volume in spec.get("volumes") or []:
        projected = [s.get("secret") or s.get("configMap") or {} for s in (volume.get("projected") or {}).get(
            "sources") or []]
        for ref in [volume.get("secret") or {}, volume.get("configMap") or {}, *projected]:
            ref_name = ref.get("secretName") or ref.get("name")
            if ref_name:
                out.setdefault(ref_name, f"volume {volume.get('name')}")
    if spec.get("serviceAccountName"):
        out.setdefault(spec["serviceAccountName"], "service account")
    for secret in spec.get("imagePullSecrets") or []:
        out.setdefault(secret.get("name", ""), "image pull secret")
    for pod in world.snap.pods if world.snap else []:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            out.setdefault(node, "node")
    return out


def relation(world: World, entry: AuditLog, lines: list[tuple[str, str]] | None = None) -> str | None:
    """How a change concerns the service, in words ('its pods read it through env DB_PASSWORD'), or None: to its own
    objects (by name), to an object of its namespace that governs its pods (a NetworkPolicy, a RoleBinding), to an
    object its pods take something from (a Secret, a ConfigMap, its ServiceAccount, their node), a change whose own
    record names the service (a script run against its database), or to an object its log lines or its events name."""
    target = entry.resource_name or ""
    referenced = references(world).get(target) if target else None
    if referenced == "node":
        return "the node its pods run on"
    if referenced is not None:
        return f"its pods read it through {referenced}"
    if mentions(world.service, [target]):
        return "its own object"
    kind = _kind(entry)
    if kind is not None and kind.namespaced and _namespace(entry) == world.namespace:
        return f"a {kind.words} of its namespace"
    if mentions(world.service, [str(v) for v in (entry.changes or {}).values()]):
        return "its record names " + world.service
    lines = world.log_lines() if lines is None else lines
    if len(target) > 3 and _names(entry, lines):
        return "its logs name it"
    # what the record acted on (a topic, a table, a bucket), when the service's logs or alerts name it too
    said = [line for _, line in lines] + [a.message or "" for a in world.alerts]
    acted_on = {w for v in (entry.changes or {}).values() if isinstance(v, dict)
                for w in _IDENTIFIER.findall(str(v.get("to") or ""))}
    shared = sorted(w for w in acted_on if mentions(w, said))
    if shared:
        return f"it acted on {shared[0]}, which its logs or alerts name"
    if len(target) > 3 and any(mentions(target, [e.get("message")]) for e in world.events()):
        return "its pods' events name it"
    cluster_wide = CLUSTER_WIDE.get(re.sub(r"[^a-z]", "", (entry.resource_type or "").lower()))
    if cluster_wide is not None:
        return f"a cluster-wide {cluster_wide}, which every workload is subject to"
    return None


def concerning(world: World, entries: Iterable[AuditLog]) -> list[AuditLog]:
    """The changes that concern the service (`relation`)."""
    lines = world.log_lines()
    return [entry for entry in entries if relation(world, entry, lines) is not None]


def _onset(world: World) -> datetime | None:
    """When the errors began: the first error line of the logs read (if the logs reach back before it), else the
    moment the error rate crossed its warning level inside the window."""
    firsts = []
    if world.logs is not None:
        firsts = [p.first_seen for p in world.logs.patterns if p.level == "error" and p.first_seen > world.logs.start
                  + timedelta(minutes=1)]
    signal = world.signals.get("error_rate")
    if signal is not None and signal.onset is not None and signal.health in ("warning", "critical"):
        firsts.append(signal.onset)
    return min(firsts) if firsts else None


def detect(world: World) -> list[Verdict]:
    onset = _onset(world)
    signal = world.signals.get("error_rate")
    if onset is None or signal is None or signal.health not in ("warning", "critical"):
        return []
    errors = _error_lines(world)
    out = []
    for entry in sorted(world.audit, key=lambda a: a.timestamp, reverse=True):
        kind = _kind(entry)
        if kind is None or entry.result == "failure" or not (entry.timestamp - SKEW <= onset <= entry.timestamp + AFTER):
            continue
        if kind.namespaced and _namespace(entry) not in (None, world.namespace):
            continue
        linked = _names(entry, errors) or ([(w, l) for w, l in errors if kind.symptom.search(l)] if kind.symptom else [])
        if not linked:
            continue
        who = entry.username or entry.user_id or "someone"
        did = {"delete": "deletion", "create": "creation", "update": "change"}.get(entry.action, entry.action)
        what = f"{kind.words} {entry.resource_name}"
        gap = onset - entry.timestamp
        after = "the same minute" if abs(gap) < timedelta(minutes=1) else f"{int(gap.total_seconds() // 60)} min later"
        where, line = linked[0]
        changed = changes_text({k: v for k, v in (entry.changes or {}).items()
                                if isinstance(v, dict) and "from" in v and k not in ("reason", "comment")})
        out.append(Verdict(
            family="change",
            cause=f"{who}'s {did} of {what} at {clock(entry.timestamp)}",
            title=f"{who}'s {did} of {what} at {clock(entry.timestamp)} ({ago(entry.timestamp, world.now)}) "
                  f"started the errors: they began {after}",
            evidence=[f"audit log {entry.id}: {entry.action} of {entry.resource_type} {entry.resource_name} by {who}"
                      + (f" ({changed})" if changed else ""),
                      f"log ({where}): {short(line, 300)}",
                      f"the first error lines at {clock(onset)}"],
            severity="critical" if signal.health == "critical" else "warning",
            ruled_out=[("A rollout of " + world.service, f"{world.service}'s own objects did not change; the "
                        f"errors began with {who}'s {did} of {what}")],
            plans=[Plan(kind.fix(entry, world))],
            sources={"control_plane", "logs", "metrics"},
            subjects={entry.resource_name or ""},
        ))
    return out[:1]


RULE = Rule("change", 2, ("audit log", "logs", "error rate"), detect,
            "A change next to the service (feature flag, RoleBinding, NetworkPolicy) right before its errors, "
            "with the log lines that name it: undo the change, not the service", explains=(ERRORS, SLOW))
