"""Consistent Deployments, their ReplicaSets (one per revision), pods and events in a KubeFake, from a short spec
(used by the bench to stand up a cluster of healthy services):

    load_kubernetes(kube, KubernetesSpec(deployments=[DeploymentSpec(name="checkout", namespace="shop", replicas=2,
        revisions=[RevisionSpec(revision=3, image="shop/checkout:v1", created="-2d", pods=[PodSpec(count=2)])])]),
        Clock(datetime.now(UTC)))

Times are relative to the clock's now ("-3m", "-2h", "-6d", "now", "+1m") or RFC 3339.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.config import parse_duration
from devtools.loopback.control_plane import rfc3339
from devtools.loopback.kube import KubeFake, condition


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PodSpec(_Spec):
    count: int = 1
    ready: bool = True
    restarts: int = 0
    waiting: str | None = None  # CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError, ...
    message: str | None = None  # of the waiting state
    exit_code: int | None = None  # of the last termination
    reason: str | None = None  # of the last termination: Error, OOMKilled
    finished: str | None = None  # when it last terminated (default: 1 minute ago)
    terminating: str | None = None  # being deleted since
    node: str = "node-1"
    created: str | None = None  # default: shortly after its revision
    phase: str | None = None  # e.g. Pending (then it has no container state)
    previous_log: str | None = None  # log of the crashed container (kubectl logs --previous)


class RevisionSpec(_Spec):
    revision: int
    image: str
    created: str
    replicas: int | None = None  # default: the deployment's for the newest revision, else 0
    pods: list[PodSpec] = []


class EventSpec(_Spec):
    on: str = "deployment"  # deployment | revision:N | pods:N
    reason: str
    message: str = ""
    last_seen: str = "-1m"
    count: int = 1
    type: str = "Warning"


class DeploymentSpec(_Spec):
    name: str
    namespace: str = "default"
    replicas: int = 1
    revisions: list[RevisionSpec]
    events: list[EventSpec] = []
    progress_deadline_exceeded: bool = False


class KubernetesSpec(_Spec):
    deployments: list[DeploymentSpec] = []


class Clock:
    """Scenario times: "-3m", "now", "+1m" relative to the scenario's start, or RFC 3339."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self, text: str) -> datetime:
        text = text.strip()
        if text == "now":
            return self.now
        if text[:1] in "+-":
            seconds = parse_duration(text[1:])
            return self.now + timedelta(seconds=seconds if text[0] == "+" else -seconds)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load_kubernetes(kube: KubeFake, spec: KubernetesSpec, clock: Clock) -> None:
    for dep in spec.deployments:
        revisions = sorted(dep.revisions, key=lambda r: r.revision)
        if not revisions:
            continue
        current = revisions[-1]
        live = [p for p in current.pods if not p.terminating]
        # like the deployment controller: ready counts every revision's pods, updated only the newest's
        ready = sum(p.count for rev in revisions for p in rev.pods if p.ready and not p.terminating)
        obj = kube.add_deployment(
            dep.namespace,
            dep.name,
            image=current.image,
            replicas=dep.replicas,
            revision=current.revision,
            ready=ready,
            updated=sum(p.count for p in live),
            created=clock(revisions[0].created),
            conditions=_conditions(dep, ready, clock(current.created)),
        )
        replicasets: dict[int, dict[str, Any]] = {}
        pods: dict[int, list[dict[str, Any]]] = {}
        for rev in revisions:
            replicas = rev.replicas if rev.replicas is not None else (dep.replicas if rev is current else 0)
            rs = kube.add_replicaset(
                obj,
                revision=rev.revision,
                image=rev.image,
                created=clock(rev.created),
                replicas=replicas,
                ready=sum(p.count for p in rev.pods if p.ready and not p.terminating),
            )
            replicasets[rev.revision] = rs
            pods[rev.revision] = [
                _add_pod(kube, rs, pod, clock, clock(rev.created)) for pod in rev.pods for _ in range(pod.count)
            ]
        for event in dep.events:
            kind, _, number = event.on.partition(":")
            targets: list[dict[str, Any]]
            if kind == "deployment":
                targets = [obj]
            elif kind == "revision":
                targets = [replicasets[int(number)]]
            elif kind == "pods":
                targets = pods[int(number)]
            else:
                raise ValueError(f"event on {event.on!r}: use deployment, revision:N or pods:N")
            for target in targets:
                kube.add_event(
                    target,
                    reason=event.reason,
                    message=event.message,
                    last_seen=clock(event.last_seen),
                    count=event.count,
                    type=event.type,
                )


def _conditions(dep: DeploymentSpec, ready: int, rolled: datetime) -> list[dict[str, Any]]:
    available = ready > 0 and ready >= dep.replicas - dep.replicas // 4
    conditions = [
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", rolled)
        if available
        else condition(
            "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", rolled
        )
    ]
    if dep.progress_deadline_exceeded:
        conditions.append(
            condition("Progressing", "False", "ProgressDeadlineExceeded", f"deployment {dep.name} exceeded its "
                      "progress deadline", rolled)
        )
    else:
        conditions.append(condition("Progressing", "True", "NewReplicaSetAvailable", "progressing", rolled))
    return conditions


def _add_pod(kube: KubeFake, rs: dict[str, Any], pod: PodSpec, clock: Clock, rolled: datetime) -> dict[str, Any]:
    created = clock(pod.created) if pod.created else rolled + timedelta(seconds=5)
    last = None
    if pod.exit_code is not None or pod.reason is not None:
        finished = clock(pod.finished or "-1m")
        last = {
            "exitCode": pod.exit_code if pod.exit_code is not None else 1,
            "reason": pod.reason or "Error",
            "startedAt": rfc3339(finished - timedelta(seconds=5)),
            "finishedAt": rfc3339(finished),
        }
    obj = kube.add_pod(
        rs,
        created=created,
        ready=pod.ready,
        restarts=pod.restarts,
        waiting=(pod.waiting, pod.message or "") if pod.waiting else None,
        last_terminated=last,
        terminating_since=clock(pod.terminating) if pod.terminating else None,
        node=pod.node,
    )
    if pod.phase:
        obj["status"]["phase"] = pod.phase
        if pod.phase == "Pending":
            obj["status"].pop("containerStatuses", None)
            obj["spec"].pop("nodeName", None)
    if pod.previous_log:
        kube.set_logs(rs["metadata"]["namespace"], obj["metadata"]["name"], pod.previous_log, previous=True)
    return obj
