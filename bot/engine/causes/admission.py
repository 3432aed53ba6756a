"""Pods that cannot even be created (FailedCreate on a ReplicaSet, Job, StatefulSet or DaemonSet): a
ResourceQuota exceeded, a LimitRange violated, a ServiceAccount missing — and whether that is still so now."""
from __future__ import annotations

import re

from bot.engine.causes.base import Plan, Rule, Verdict, World, event_text, event_time, name, short

SERVICE_ACCOUNT = re.compile(r'serviceaccounts?\s+"([^"]+)"\s+not found', re.IGNORECASE)


def detect(world: World) -> list[Verdict]:
    events = world.events("FailedCreate")
    if not events:
        return []
    event = events[0]
    message = event.get("message") or ""
    at = event_time(event)
    created_since = [e for e in world.events("SuccessfulCreate") if at and (event_time(e) or at) > at]
    account = SERVICE_ACCOUNT.search(message)
    evidence = [short(event_text(event), 400)]
    if account:
        snap = world.snap
        exists = snap is not None and snap.described("serviceaccounts") and any(
            name(a) == account.group(1) for a in snap.items("serviceaccounts"))
        if exists or created_since:
            return [Verdict("admission", f"service account {account.group(1)} missing at first",
                            f"service account {account.group(1)} was missing at first (FailedCreate ×"
                            f"{event.get('count') or 1}); it now exists and pods were created after it: not the cause "
                            "of what failed later", evidence, "info", current=False,
                            subjects={account.group(1)})]
        return [Verdict("admission", f"the missing service account {account.group(1)}",
                        f"Pods cannot be created: service account {account.group(1)} does not exist", evidence,
                        plans=[Plan(f"Create service account {account.group(1)} in {world.namespace} or fix "
                                    "serviceAccountName")], subjects={account.group(1)})]
    if created_since:
        return []
    if "exceeded quota" in message:
        what, fix = "a ResourceQuota exceeded", "Raise the namespace's ResourceQuota or lower the pods' requests"
        quotas = world.snap.items("resourcequotas") if world.snap else []
        for q in quotas[:1]:
            used = (q.get("status") or {}).get("used") or {}
            hard = (q.get("status") or {}).get("hard") or {}
            evidence.append(f"resourcequota {name(q)}: " + ", ".join(f"{k} {used.get(k)}/{v}" for k, v in hard.items()))
    elif "LimitRange" in message or "maximum" in message and "per Container" in message or "minimum" in message:
        what, fix = "a LimitRange violated", "Fit the pods' requests/limits into the namespace's LimitRange"
    else:
        what, fix = "pods that cannot be created", f"Fix what the API server refuses: {short(message, 160)}"
    return [Verdict(
        family="admission",
        cause=f"{what}: {short(message, 200)}",
        title=f"{(event.get('involvedObject') or {}).get('kind')} cannot create pods: {short(message, 200)}",
        evidence=evidence,
        severity="critical",
        plans=[Plan(fix + "; a restart cannot help")],
    )]


RULE = Rule("admission", 8, ("events (FailedCreate)", "resourcequotas", "limitranges", "serviceaccounts"), detect,
            "FailedCreate: ResourceQuota exceeded, LimitRange violated, ServiceAccount missing (or since created)")
