"""Kubernetes RBAC refusing the workload's own API calls: the API server answers "<resource> is forbidden: User
"system:serviceaccount:<ns>:<sa>" cannot <verb> resource …" — the pods run, but the account they run as lacks a
permission (its RoleBinding was removed, or never granted it). More replicas, a restart or a rollback cannot help;
a Role that allows it, bound to that ServiceAccount, does."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, Plan, Rule, Verdict, World, short

# The API server's refusal: 'jobs.batch is forbidden: User "system:serviceaccount:ns:sa" cannot create resource "jobs"
# in API group "batch" in the namespace "ns"'
FORBIDDEN = re.compile(r'(?i)(?P<resource>[\w.-]+) is forbidden: User "(?P<user>[^"]+)" cannot (?P<verb>\w+) '
                       r'resource "(?P<plural>[^"]+)"(?: in API group "(?P<group>[^"]*)")?'
                       r'(?: in the namespace "(?P<namespace>[^"]+)")?')
ACCOUNT = re.compile(r"^system:serviceaccount:(?P<ns>[^:]+):(?P<sa>.+)$")


def detect(world: World) -> list[Verdict]:
    refused = world.find_lines(FORBIDDEN)
    if not refused:
        return []
    # each distinct refusal once: (user, verb, plural, group, namespace)
    seen: dict[tuple[str, ...], tuple[str, str]] = {}
    for where, line, m in refused:
        key = (m.group("user"), m.group("verb").lower(), m.group("plural"), m.group("group") or "",
               m.group("namespace") or world.namespace)
        seen.setdefault(key, (where, line))
    user = next(iter(seen))[0]
    account = ACCOUNT.match(user)
    who = f"ServiceAccount {account.group('ns')}/{account.group('sa')}" if account else f"user {user}"
    wants = [(verb, plural + (f".{group}" if group else ""), ns) for (u, verb, plural, group, ns) in seen if u == user]
    what = ", ".join(f"{verb} {resource}" for verb, resource, _ in wants)
    namespace = wants[0][2]
    signal = world.signals.get("error_rate")
    calls = signal is not None and signal.health in ("warning", "critical")
    verbs = ",".join(sorted({v for v, _, _ in wants}))
    resources = ",".join(sorted({r for _, r, _ in wants}))
    subject = f"--serviceaccount={account.group('ns')}:{account.group('sa')}" if account else f"--user={user}"
    role = f"{world.service}-access"
    evidence = [f"log ({where}): {short(line, 300)}" for where, line in list(seen.values())[:2]]
    evidence.append(f"{len(refused)} log line(s) refused by the API server (403 Forbidden, RBAC)")
    return [Verdict(
        family="permissions",
        cause=f"missing RBAC permissions: the API server forbids {who} to {what} in namespace {namespace}",
        title=f"Kubernetes RBAC forbids {who} to {what} in namespace {namespace} (403 Forbidden): no Role bound to it "
              "grants that",
        evidence=evidence,
        severity="critical" if calls and signal is not None and signal.health == "critical" else "warning",
        ruled_out=[r for r in (world.pods_fine(),) if r] + [
            ("A restart or rollback", "the refusal is about the account's permissions, which neither changes")],
        plans=[Plan(f"Grant {who} what it is refused: bind a Role that allows it (`kubectl create role {role} -n "
                    f"{namespace} --verb={verbs} --resource={resources}` and `kubectl create rolebinding {role} -n "
                    f"{namespace} --role={role} {subject}`), or recreate the RoleBinding that granted it if one was "
                    "removed (the audit log says)")],
        sources={"logs"} | ({"metrics"} if calls else set()),
        subjects={user},
    )]


RULE = Rule("permissions", 3, ("logs",), detect,
            "Kubernetes RBAC refusing the workload's API calls (“is forbidden: User … cannot <verb> resource”): which "
            "account, verb and resource; grant it, not a restart", explains=(ERRORS,))
