"""Kubernetes: what an engineer reads to diagnose a workload (the workload of any kind, its ReplicaSets, pods,
events of every involved object, nodes, storage, network, autoscaling, configuration; Secrets by name only) and
pod logs; restart, scale and rollback for approved actions. Uses the official asynchronous client
(`kubernetes.aio`)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from kubernetes.aio import client, config

from tools.base import Backend, ErrorCode, ToolError, ToolResult, bound_list, bound_text, connect_reason
from tools.redact import redact

log = logging.getLogger("srebot.tools.kubernetes")

T = TypeVar("T")

REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
POD_TEMPLATE_HASH = "pod-template-hash"


@dataclass
class Condition:
    type: str
    status: str
    reason: str | None
    message: str | None
    last_transition: datetime | None


@dataclass
class Revision:
    """One rollout of a deployment: a ReplicaSet it owns. `created_at` is when that rollout started."""

    number: int
    replicaset: str
    images: list[str]
    created_at: datetime | None
    replicas: int
    ready_replicas: int


@dataclass
class Termination:
    reason: str | None
    exit_code: int | None
    finished_at: datetime | None
    message: str | None = None


@dataclass
class ContainerStatus:
    name: str
    image: str
    ready: bool
    restarts: int
    state: str  # running | waiting | terminated | unknown
    reason: str | None  # CrashLoopBackOff, ImagePullBackOff, OOMKilled, Error, ...
    message: str | None
    last_termination: Termination | None
    init: bool = False


@dataclass
class PodStatus:
    name: str
    phase: str | None
    ready: bool
    restarts: int
    reason: str | None  # the first container's waiting/terminated reason, else the pod's own (e.g. Evicted)
    containers: list[ContainerStatus]
    replicaset: str | None
    revision: int | None
    terminating: bool
    node: str | None
    created_at: datetime | None


@dataclass
class KubeEvent:
    object_kind: str
    object_name: str
    reason: str | None
    message: str | None
    count: int
    last_seen: datetime | None


@dataclass
class DeploymentReport:
    namespace: str
    name: str
    desired: int
    ready: int
    updated: int
    available: int
    unavailable: int
    paused: bool
    conditions: list[Condition]
    current: Revision | None
    previous: Revision | None
    pods: list[PodStatus]  # not-ready and most-restarted first
    events: list[KubeEvent]  # Warning events of the window, newest first
    notes: list[str] = field(default_factory=list)  # what was cut or could not be checked


# plural -> API path prefix; "{ns}" is the namespace. Cluster-scoped kinds have none.
PATHS: dict[str, str] = {
    "deployments": "/apis/apps/v1/namespaces/{ns}/deployments",
    "statefulsets": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    "daemonsets": "/apis/apps/v1/namespaces/{ns}/daemonsets",
    "replicasets": "/apis/apps/v1/namespaces/{ns}/replicasets",
    "jobs": "/apis/batch/v1/namespaces/{ns}/jobs",
    "cronjobs": "/apis/batch/v1/namespaces/{ns}/cronjobs",
    "pods": "/api/v1/namespaces/{ns}/pods",
    "events": "/api/v1/namespaces/{ns}/events",
    "services": "/api/v1/namespaces/{ns}/services",
    "endpointslices": "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
    "configmaps": "/api/v1/namespaces/{ns}/configmaps",
    "secrets": "/api/v1/namespaces/{ns}/secrets",
    "serviceaccounts": "/api/v1/namespaces/{ns}/serviceaccounts",
    "persistentvolumeclaims": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "networkpolicies": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "horizontalpodautoscalers": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    "resourcequotas": "/api/v1/namespaces/{ns}/resourcequotas",
    "limitranges": "/api/v1/namespaces/{ns}/limitranges",
    "poddisruptionbudgets": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "nodes": "/api/v1/nodes",
    "persistentvolumes": "/api/v1/persistentvolumes",
    "storageclasses": "/apis/storage.k8s.io/v1/storageclasses",
    "all_pods": "/api/v1/pods",
    "all_events": "/api/v1/events",
    "all_deployments": "/apis/apps/v1/deployments",
    "all_statefulsets": "/apis/apps/v1/statefulsets",
}
# The kinds a service can be, in the order a name is tried when the catalog does not say.
WORKLOAD_KINDS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets",
                  "Job": "jobs", "CronJob": "cronjobs", "Pod": "pods"}
# Read alongside the workload: namespace kinds listed whole (bounded), cluster kinds listed whole.
CONTEXT_KINDS = ("pods", "services", "endpointslices", "serviceaccounts", "persistentvolumeclaims", "networkpolicies",
                 "horizontalpodautoscalers", "resourcequotas", "limitranges", "poddisruptionbudgets")
CLUSTER_KINDS = ("nodes", "persistentvolumes", "storageclasses")
# Read across the cluster only when an object is held by finalizers: the controllers that would remove them.
CONTROLLER_KINDS = ("all_deployments", "all_statefulsets")
# Secrets are read metadata-only: the server sends names and labels, never data.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
MAX_LISTED = 500
# what a Kubernetes object or namespace name can be (RFC 1123 subdomain): anything else never reaches a URL path
VALID_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
MAX_NODES_DETAILED = 3


@dataclass
class Snapshot:
    """The API objects (as the server returns them, camelCase dicts) a diagnosis of one workload needs.

    `workload` is None when no object of that name exists (a deleted Job leaves only its events). A kind mapped
    to None in `missing` could not be read (`notes` says why: forbidden, or the server does not describe it —
    a world without nodes is not a world with none)."""

    namespace: str
    name: str
    kind: str | None
    workload: dict[str, Any] | None
    replicasets: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # the namespace's, plus the nodes'
    objects: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict)  # plural -> items, None unread
    configmaps: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # referenced name -> object/None
    secret_names: set[str] | None = None  # None: could not be listed
    node_pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # node -> every pod on it
    dns: list[dict[str, Any]] | None = None  # the cluster DNS deployments (kube-system, k8s-app=kube-dns)
    notes: list[str] = field(default_factory=list)

    def items(self, plural: str) -> list[dict[str, Any]]:
        return self.objects.get(plural) or []

    def described(self, plural: str) -> bool:
        return self.objects.get(plural) is not None


@dataclass
class DeploymentRef:
    name: str
    namespace: str
    labels: dict[str, str]
    kind: str = "Deployment"


@dataclass
class ScaleChange:
    namespace: str
    name: str
    from_replicas: int
    to_replicas: int


@dataclass
class RollbackPlan:
    namespace: str
    name: str
    from_revision: int
    from_images: list[str]
    to_revision: int
    to_images: list[str]


@dataclass
class Restarted:
    namespace: str
    name: str
    restarted_at: datetime


class Kubernetes(Backend):
    """Reads are cached and retried through `Backend.run`; writes run once and are never cached.

    Cluster access: `in_cluster=True` uses the pod's service account; otherwise the kubeconfig
    at `kubeconfig` (the client's default location when None) with `context`. With `in_cluster`
    None a missing default kubeconfig falls back to the in-cluster configuration. Whether a
    kubeconfig exists is found out at the first call; `enabled` is the configured switch.
    """

    name = "kubernetes"

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | None = None,
        enabled: bool = True,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.2,
        cache_ttl: float = 15.0,
        max_pods: int = 50,
        max_events: int = 30,
        max_log_lines: int = 1000,
        max_log_chars: int = 20_000,
    ):
        super().__init__(timeout=timeout, attempts=attempts, backoff=backoff, cache_ttl=cache_ttl)
        self.kubeconfig = kubeconfig
        self.context = context
        self.in_cluster = in_cluster
        self.enabled = enabled
        self.max_pods = max_pods
        self.max_events = max_events
        self.max_log_lines = max_log_lines
        self.max_log_chars = max_log_chars
        self._api_client: client.ApiClient | None = None
        self._connect_lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.enabled

    def not_configured_reason(self) -> str:
        return "kubernetes is disabled"

    async def aclose(self) -> None:
        if self._api_client is not None:
            await self._api_client.close()
            self._api_client = None

    # --- reads -----------------------------------------------------------------------------

    async def ping(self) -> ToolResult[str]:
        """The API server's version: proves the configuration loads and the cluster answers."""

        async def fetch() -> str:
            await self._apis()
            version = await _call("get", "version", None, None, client.VersionApi(self._api_client).get_code())
            return f"Kubernetes {version.git_version}"

        return await self.run("ping", fetch)

    async def deployment_status(
        self, namespace: str, name: str, *, window_seconds: int = 900
    ) -> ToolResult[DeploymentReport]:
        """Replicas and conditions, current and previous rollout, pods and Warning events of the window."""
        return await self.run(
            "deployment_status",
            lambda: self._deployment_status(namespace, name, window_seconds),
            key=(namespace, name, window_seconds),
        )

    async def pod_logs(
        self, namespace: str, pod: str, *, container: str | None = None, previous: bool = False, tail_lines: int = 100
    ) -> ToolResult[str]:
        """The last `tail_lines` lines (of the crashed instance with `previous`), bounded and redacted."""

        async def fetch() -> str:
            _, core = await self._apis()
            text = await _call(
                "get",
                "pods/log",
                namespace,
                pod,
                core.read_namespaced_pod_log(
                    pod,
                    namespace,
                    container=container,
                    previous=previous,
                    tail_lines=min(tail_lines, self.max_log_lines),
                ),
            )
            text, notes = bound_text(redact(text), self.max_log_chars, f"logs of {namespace}/{pod}")
            return "".join(f"[{note}]\n" for note in notes) + text

        return await self.run("pod_logs", fetch, key=(namespace, pod, container, previous, tail_lines))

    async def list_deployments(self, namespace: str | None = None) -> ToolResult[list[DeploymentRef]]:
        """Deployments of one namespace, or of all when None, to resolve service names."""

        async def fetch() -> list[DeploymentRef]:
            apps, _ = await self._apis()
            call = (
                apps.list_namespaced_deployment(namespace) if namespace else apps.list_deployment_for_all_namespaces()
            )
            listed = await _call("list", "deployments", namespace, None, call)
            return [
                DeploymentRef(d.metadata.name, d.metadata.namespace, dict(d.metadata.labels or {}))
                for d in listed.items
            ]

        return await self.run("list_deployments", fetch, key=(namespace,))

    async def list_workloads(self) -> ToolResult[list[DeploymentRef]]:
        """Workloads of every kind but Deployments and bare pods (StatefulSets, DaemonSets, Jobs, CronJobs) in all
        namespaces, to resolve a service that is not a Deployment; a kind that cannot be listed is left out."""

        async def fetch() -> list[DeploymentRef]:
            kinds = [k for k in WORKLOAD_KINDS if k not in ("Deployment", "Pod")]
            paths = {k: PATHS[WORKLOAD_KINDS[k]].replace("/namespaces/{ns}", "") for k in kinds}
            notes: list[str] = []
            listed = await _together(*(self._maybe(WORKLOAD_KINDS[k], _call("list", WORKLOAD_KINDS[k], None, None,
                                                                            self._raw(paths[k], {"limit": str(MAX_LISTED)})),
                                                   notes) for k in kinds))
            return [DeploymentRef(o["metadata"]["name"], o["metadata"].get("namespace", ""),
                                  dict(o["metadata"].get("labels") or {}), kind)
                    for kind, items in zip(kinds, listed, strict=True) for o in (items or {}).get("items") or []]

        return await self.run("list_workloads", fetch, key=())

    async def snapshot(
        self, namespace: str, name: str, *, kind: str | None = None, nodes: list[str] | None = None
    ) -> ToolResult[Snapshot]:
        """Everything a diagnosis of workload `name` reads, of `kind` or the first kind that has that name;
        `nodes` are nodes to describe in full (with every pod on them) besides those the workload's pods run on."""
        return await self.run(
            "snapshot", lambda: self._snapshot(namespace, name, kind, nodes or []), key=(namespace, name, kind,
                                                                                       tuple(nodes or []))
        )

    async def describe_scale(self, namespace: str, name: str, replicas: int) -> ToolResult[ScaleChange]:
        """What `scale` would change, read fresh for an approval to show ("replicas 3 → 5")."""

        async def fetch() -> ScaleChange:
            apps, _ = await self._apis()
            current = await _call(
                "get", "deployments/scale", namespace, name, apps.read_namespaced_deployment_scale(name, namespace)
            )
            return ScaleChange(namespace, name, current.spec.replicas or 0, replicas)

        return await self.run("describe_scale", fetch)

    async def describe_rollback(self, namespace: str, name: str) -> ToolResult[RollbackPlan]:
        """What `rollback` would change, read fresh for an approval to show ("v2.1.0 → v2.0.3 (revision 7 → 6)")."""

        async def fetch() -> RollbackPlan:
            plan, _, _ = await self._rollback_target(namespace, name)
            return plan

        return await self.run("describe_rollback", fetch)

    # --- writes (only called after approval) -----------------------------------------------

    async def restart(self, namespace: str, name: str, at: datetime) -> ToolResult[Restarted]:
        """Rolling restart as `kubectl rollout restart` does it. Only called after approval."""
        stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}

        async def patch() -> Restarted:
            apps, _ = await self._apis()
            await _call(
                "patch",
                "deployments",
                namespace,
                name,
                apps.patch_namespaced_deployment(
                    name, namespace, body, _content_type="application/strategic-merge-patch+json"
                ),
            )
            return Restarted(namespace, name, at)

        return await self.run("restart", patch, write=True)

    async def scale(self, namespace: str, name: str, replicas: int) -> ToolResult[ScaleChange]:
        """Set the replica count through the scale subresource. Only called after approval."""

        async def patch() -> ScaleChange:
            if replicas < 0:
                raise ToolError(ErrorCode.BAD_QUERY, f"cannot scale {namespace}/{name} to {replicas} replicas")
            apps, _ = await self._apis()
            before = await _call(
                "get", "deployments/scale", namespace, name, apps.read_namespaced_deployment_scale(name, namespace)
            )
            after = await _call(
                "patch",
                "deployments/scale",
                namespace,
                name,
                apps.patch_namespaced_deployment_scale(
                    name, namespace, {"spec": {"replicas": replicas}}, _content_type="application/merge-patch+json"
                ),
            )
            return ScaleChange(namespace, name, before.spec.replicas or 0, after.spec.replicas or 0)

        return await self.run("scale", patch, write=True)

    async def rollback(self, namespace: str, name: str) -> ToolResult[RollbackPlan]:
        """Put back the previous ReplicaSet's pod template, as `kubectl rollout undo` does. Only called after approval.

        The JSON patch first tests the revision it read, so a rollout that lands in between makes the
        patch fail instead of rolling back to something nobody approved."""

        async def patch() -> RollbackPlan:
            plan, template, revision_annotation = await self._rollback_target(namespace, name)
            ops: list[dict[str, Any]] = [{"op": "replace", "path": "/spec/template", "value": template}]
            if revision_annotation is not None:
                path = "/metadata/annotations/" + REVISION.replace("~", "~0").replace("/", "~1")
                ops.insert(0, {"op": "test", "path": path, "value": revision_annotation})
            apps, _ = await self._apis()
            await _call(
                "patch",
                "deployments",
                namespace,
                name,
                apps.patch_namespaced_deployment(name, namespace, ops, _content_type="application/json-patch+json"),
            )
            return plan

        return await self.run("rollback", patch, write=True)

    # --- internals -------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """The client imports its ~300 model classes lazily, at the first API object: over a second of
        blocking. Done here in a worker thread, the first diagnosis does not stall every other request."""
        if self.configured:
            await asyncio.to_thread(lambda: (client.AppsV1Api, client.CoreV1Api, client.VersionApi))

    async def _apis(self) -> tuple[client.AppsV1Api, client.CoreV1Api]:
        async with self._connect_lock:
            if self._api_client is None:
                self._api_client = client.ApiClient(await self._load_configuration())
        return client.AppsV1Api(self._api_client), client.CoreV1Api(self._api_client)

    async def _load_configuration(self) -> client.Configuration:
        configuration = client.Configuration()
        try:
            if self.in_cluster:
                config.load_incluster_config(client_configuration=configuration)
            else:
                await config.load_kube_config(
                    config_file=self.kubeconfig,
                    context=self.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except config.ConfigException as exc:
            if self.in_cluster is not None or self.kubeconfig is not None:
                where = (
                    "the in-cluster configuration" if self.in_cluster else self.kubeconfig or "the default kubeconfig"
                )
                raise ToolError(ErrorCode.NOT_CONFIGURED, f"kubernetes: cannot load {where}: {exc}") from exc
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException as in_cluster:
                raise ToolError(
                    ErrorCode.NOT_CONFIGURED,
                    f"kubernetes: no usable kubeconfig ({exc}) and not running in a cluster ({in_cluster})",
                ) from in_cluster
        return configuration

    async def _deployment_status(self, namespace: str, name: str, window_seconds: int) -> DeploymentReport:
        apps, core = await self._apis()
        deployment, (events, notes) = await _together(
            _call("get", "deployments", namespace, name, apps.read_namespaced_deployment(name, namespace)),
            self._warning_events(core, namespace),
        )
        selector = _selector(deployment.spec.selector)
        replicasets, pods = await _together(
            _call(
                "list",
                "replicasets",
                namespace,
                None,
                apps.list_namespaced_replica_set(namespace, label_selector=selector),
            ),
            _call("list", "pods", namespace, None, core.list_namespaced_pod(namespace, label_selector=selector)),
        )
        return self._report(namespace, name, deployment, replicasets.items, pods.items, events, notes, window_seconds)

    def deployment_report(self, snap: Snapshot, *, window_seconds: int = 900) -> DeploymentReport | None:
        """The Deployment report of a snapshot, without reading anything again; None when it is no Deployment."""
        if snap.kind != "Deployment" or snap.workload is None or self._api_client is None:
            return None

        def model(obj: dict[str, Any], kind: str) -> Any:
            return self._api_client.deserialize(json.dumps(obj), kind, "application/json")  # type: ignore[union-attr]

        events = [model(e, "CoreV1Event") for e in snap.events if e.get("type") == "Warning"]
        return self._report(snap.namespace, snap.name, model(snap.workload, "V1Deployment"),
                            [model(rs, "V1ReplicaSet") for rs in snap.replicasets],
                            [model(p, "V1Pod") for p in snap.pods], events, [], window_seconds)

    def _report(self, namespace: str, name: str, deployment: Any, replicasets: list[Any], pods: list[Any],
                events: list[Any], notes: list[str], window_seconds: int) -> DeploymentReport:
        owned = [rs for rs in replicasets if _owned_by(rs, deployment.metadata.uid)]
        current, previous = _current_and_previous(deployment, owned)
        revisions = {rs.metadata.name: _revision(rs) for rs in owned}
        pod_statuses = sorted(
            (_pod_status(p, revisions) for p in pods if _owner_name(p, "ReplicaSet") in revisions),
            key=lambda p: (p.ready, -p.restarts, p.name),
        )
        pod_statuses, cut = bound_list(pod_statuses, self.max_pods, "pods")
        notes += cut
        since = datetime.now(UTC) - timedelta(seconds=window_seconds)
        pod_names = {p.metadata.name for p in pods}
        kept = _related_events(map(_event, events), name, set(revisions), pod_names, since)
        kept, cut = bound_list(kept, self.max_events, "warning events")
        notes += cut
        status = deployment.status or client.V1DeploymentStatus()  # none yet on a brand-new deployment
        desired = deployment.spec.replicas if deployment.spec.replicas is not None else 1
        return DeploymentReport(
            namespace=namespace,
            name=name,
            desired=desired,
            ready=status.ready_replicas or 0,
            updated=status.updated_replicas or 0,
            available=status.available_replicas or 0,
            unavailable=status.unavailable_replicas or 0,
            paused=bool(deployment.spec.paused),
            conditions=[
                Condition(c.type, c.status, c.reason, c.message, c.last_transition_time)
                for c in status.conditions or []
            ],
            current=current,
            previous=previous,
            pods=pod_statuses,
            events=kept,
            notes=notes,
        )

    async def _warning_events(self, core: client.CoreV1Api, namespace: str) -> tuple[list[Any], list[str]]:
        # Read-only roles often leave out events; the rest of the report is still worth having.
        try:
            listed = await _call(
                "list", "events", namespace, None, core.list_namespaced_event(namespace, field_selector="type=Warning")
            )
        except ToolError as exc:
            if exc.code is not ErrorCode.FORBIDDEN:
                raise
            return [], [f"events not checked: {exc.message}"]
        return listed.items, []

    async def _raw(self, path: str, query: dict[str, str] | None = None, *, accept: str = "application/json") -> Any:
        """GET an API path as the server's JSON: objects of any kind, with nothing dropped by a model class."""
        await self._apis()
        api = self._api_client
        assert api is not None
        method, url, headers, _, _ = await api.param_serialize(
            "GET", path, query_params=list((query or {}).items()), header_params={"Accept": accept},
            auth_settings=["BearerToken"],
        )
        response = await api.call_api(method, url, headers, _request_timeout=self.timeout)
        body = await response.read()
        if not 200 <= response.status <= 299:
            raise client.ApiException.from_response(http_resp=response, body=body.decode("utf-8", "replace"), data=None)
        return json.loads(body)

    async def _list(self, plural: str, namespace: str | None = None, **query: str) -> list[dict[str, Any]]:
        path = PATHS[plural].format(ns=namespace)
        params = {"limit": str(MAX_LISTED), **{_camel(k): v for k, v in query.items()}}
        listed = await _call("list", plural.removeprefix("all_"), namespace, None, self._raw(path, params))
        return list(listed.get("items") or [])

    async def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await _call("get", plural, namespace, name, self._raw(f"{PATHS[plural].format(ns=namespace)}/{name}"))
        except ToolError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                return None
            raise

    async def _maybe(self, what: str, call: Awaitable[T], notes: list[str]) -> T | None:
        """A read the diagnosis can do without: forbidden, unknown to the server or failing, it is noted and
        None — which means "not described", never "there are none"."""
        try:
            return await call
        except ToolError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                notes.append(f"{what} not described by the API server")
            elif exc.code is ErrorCode.FORBIDDEN:
                notes.append(f"{what} not checked (forbidden)")
            else:
                notes.append(f"{what} not checked: {exc.message}")
            return None

    async def _snapshot(self, namespace: str, name: str, kind: str | None, extra_nodes: list[str]) -> Snapshot:
        for value in (namespace, name):
            if not VALID_NAME.fullmatch(value):
                raise ToolError(ErrorCode.BAD_QUERY, f"{value!r} is not a Kubernetes name")
        extra_nodes = [n for n in extra_nodes if VALID_NAME.fullmatch(n)]
        kinds = [kind] if kind in WORKLOAD_KINDS else list(WORKLOAD_KINDS)
        snap_notes: list[str] = []
        # every kind at once; the first in order that has the name is the workload
        got = await _together(*(self._maybe(WORKLOAD_KINDS[k], self._get(WORKLOAD_KINDS[k], namespace, name), snap_notes)
                                for k in kinds))
        found, workload = next(((k, w) for k, w in zip(kinds, got, strict=True) if w is not None), (None, None))
        snap = Snapshot(namespace, name, found, workload, notes=snap_notes)
        notes = snap.notes
        selector = _raw_selector((workload or {}).get("spec", {}).get("selector")) if found != "Pod" else None

        async def pods() -> list[dict[str, Any]]:
            if found == "Pod":
                return [workload] if workload else []
            if found == "CronJob":
                jobs = [j for j in await self._list("jobs", namespace) if _raw_owned(j, workload)]
                snap.objects["jobs"] = jobs
                uids = {j["metadata"].get("uid") for j in jobs}
                return [p for p in await self._list("pods", namespace)
                        if any(ref.get("uid") in uids for ref in p["metadata"].get("ownerReferences") or [])]
            if selector:
                return await self._list("pods", namespace, label_selector=selector)
            return []

        async def replicasets() -> list[dict[str, Any]]:
            if found != "Deployment" or not selector:
                return []
            return [rs for rs in await self._list("replicasets", namespace, label_selector=selector)
                    if _raw_owned(rs, workload)]

        async def events() -> list[dict[str, Any]]:
            items = await self._maybe("events", self._list("events", namespace), notes) or []
            nodes = await self._maybe("node events", self._list("all_events", field_selector="involvedObject.kind=Node"),
                                      [])
            return items + [e for e in nodes or [] if e not in items]

        async def context(plural: str) -> None:
            snap.objects[plural] = await self._maybe(plural, self._list(plural, namespace), notes)

        async def cluster(plural: str) -> None:
            snap.objects[plural] = await self._maybe(plural, self._list(plural), notes)

        async def secrets() -> None:
            listed = await self._maybe(
                "secrets", _call("list", "secrets", namespace, None,
                                 self._raw(PATHS["secrets"].format(ns=namespace), {"limit": str(MAX_LISTED)},
                                           accept=METADATA_ONLY)), notes)
            # names only, whatever the server sent back: values never leave this function
            snap.secret_names = None if listed is None else {
                (i.get("metadata") or {}).get("name", "") for i in listed.get("items") or []}

        async def dns() -> None:
            snap.dns = await self._maybe("cluster DNS", self._list("deployments", "kube-system",
                                                                   label_selector="k8s-app=kube-dns"), [])

        snap.pods, snap.replicasets, snap.events, *_ = await _together(
            pods(), replicasets(), events(), *(context(p) for p in CONTEXT_KINDS),
            *(cluster(p) for p in CLUSTER_KINDS), secrets(), dns(),
        )
        if found == "Job":
            snap.objects["jobs"] = [workload]  # type: ignore[list-item]
        if any((o.get("metadata") or {}).get("deletionTimestamp") and (o.get("metadata") or {}).get("finalizers")
               for o in [workload or {}, *snap.pods]):
            listed = await _together(*(self._maybe(f"{p.removeprefix('all_')} of every namespace", self._list(p),
                                                   notes) for p in CONTROLLER_KINDS))
            snap.objects.update(zip(CONTROLLER_KINDS, listed, strict=True))
        referenced = sorted(_configmaps_referenced([workload, *snap.pods] if workload else snap.pods))
        got = await _together(*(self._maybe(f"configmap {c}", self._get("configmaps", namespace, c), notes)
                                for c in referenced))
        snap.configmaps = dict(zip(referenced, got, strict=True))
        if snap.objects.get("nodes") is not None:
            wanted = [*extra_nodes, *sorted({p.get("spec", {}).get("nodeName") for p in snap.pods} - {None})]
            chosen = list(dict.fromkeys(wanted))[:MAX_NODES_DETAILED]
            listed = await _together(*(self._maybe(f"pods on {n}", self._list("all_pods", field_selector=f"spec.nodeName={n}"),
                                                   notes) for n in chosen))
            snap.node_pods = {n: items for n, items in zip(chosen, listed, strict=True) if items is not None}
        return snap

    async def _rollback_target(self, namespace: str, name: str) -> tuple[RollbackPlan, dict[str, Any], str | None]:
        """The plan, the previous revision's pod template as API JSON, and the revision annotation it was read at."""
        apps, _ = await self._apis()
        deployment = await _call(
            "get", "deployments", namespace, name, apps.read_namespaced_deployment(name, namespace)
        )
        replicasets = await _call(
            "list",
            "replicasets",
            namespace,
            None,
            apps.list_namespaced_replica_set(namespace, label_selector=_selector(deployment.spec.selector)),
        )
        owned = [rs for rs in replicasets.items if _owned_by(rs, deployment.metadata.uid)]
        current, previous = _current_and_previous(deployment, owned)
        if deployment.spec.paused:
            raise ToolError(
                ErrorCode.BAD_QUERY, f"deployment {namespace}/{name} is paused: resume it before rolling back"
            )
        if current is None or previous is None:
            raise ToolError(
                ErrorCode.NOT_FOUND, f"deployment {namespace}/{name} has no previous revision to roll back to"
            )
        source = next(rs for rs in owned if rs.metadata.name == previous.replicaset)
        template = self._api_client.sanitize_for_serialization(source.spec.template)  # type: ignore[union-attr]
        template.get("metadata", {}).get("labels", {}).pop(POD_TEMPLATE_HASH, None)
        plan = RollbackPlan(namespace, name, current.number, current.images, previous.number, previous.images)
        return plan, template, (deployment.metadata.annotations or {}).get(REVISION)


async def _call(verb: str, resource: str, namespace: str | None, name: str | None, call: Awaitable[T]) -> T:
    """Await one API call; failures become tool errors that say what was refused or missing."""
    try:
        return await call
    except client.ApiException as exc:
        raise _api_error(exc, verb, resource, namespace, name) from exc
    except aiohttp.ClientError as exc:
        log.warning("kubernetes API call failed", extra={"verb": verb, "resource": resource,
                                                         "error": redact(f"{exc.__class__.__name__}: {exc}")})
        raise ToolError(ErrorCode.UNREACHABLE, f"kubernetes API: cannot connect ({connect_reason(exc)})") from exc


def _api_error(
    exc: client.ApiException, verb: str, resource: str, namespace: str | None, name: str | None
) -> ToolError:
    status = exc.status or 0
    detail = _status_message(exc)
    scope = f"in namespace {namespace}" if namespace else "in all namespaces"
    if status == 403:
        needs = f"RBAC verb {verb} on {resource}" + ("" if namespace else " cluster-wide")
        return ToolError(ErrorCode.FORBIDDEN, f"cannot {verb} {resource} {scope} (needs {needs}): {detail}")
    if status == 404:
        kind = resource.split("/")[0].removesuffix("s")
        what = f"{kind} {namespace}/{name}" if name else f"{resource} {scope}"
        return ToolError(ErrorCode.NOT_FOUND, f"{what} not found ({detail})")
    if status == 401:
        return ToolError(ErrorCode.UNAUTHORIZED, f"the cluster rejected the credentials: {detail}")
    if status in (400, 409, 422):
        return ToolError(ErrorCode.BAD_QUERY, f"{verb} {resource} {scope}: {detail}")
    if status == 429:
        retry_after = (exc.headers or {}).get("Retry-After")
        return ToolError(
            ErrorCode.RATE_LIMITED,
            f"kubernetes API throttled {verb} {resource}: {detail}",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    return ToolError(ErrorCode.BACKEND_ERROR, f"{verb} {resource} {scope}: HTTP {status}: {detail}")


def _status_message(exc: client.ApiException) -> str:
    """The apiserver's Status.message, else whatever body or reason came back."""
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return (exc.body or exc.reason or "").strip()[:300]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:300]
    return str(body)[:300]


async def _together(*calls: Coroutine[Any, Any, Any]) -> list[Any]:
    """Run calls concurrently; the first failure cancels the others and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in calls]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]


def _related_events(
    events: Iterable[KubeEvent], deployment: str, replicasets: set[str], pods: set[str], since: datetime
) -> list[KubeEvent]:
    """Events of the deployment, its ReplicaSets and their pods since `since`, newest first."""
    related = {("Deployment", deployment)} | {("ReplicaSet", rs) for rs in replicasets} | {("Pod", p) for p in pods}
    # pods already deleted still have events, and their names start with their ReplicaSet's
    pod_prefixes = tuple(f"{rs}-" for rs in replicasets)
    kept = [
        e
        for e in events
        if (
            (e.object_kind, e.object_name) in related
            or (e.object_kind == "Pod" and e.object_name.startswith(pod_prefixes))
        )
        and (e.last_seen is None or e.last_seen >= since)
    ]
    return sorted(kept, key=lambda e: e.last_seen or since, reverse=True)


def _selector(selector: Any) -> str:
    parts = [f"{k}={v}" for k, v in (selector.match_labels or {}).items()]
    for expr in selector.match_expressions or []:
        if expr.operator in ("In", "NotIn"):
            parts.append(f"{expr.key} {expr.operator.lower()} ({','.join(expr.values or [])})")
        else:
            parts.append(expr.key if expr.operator == "Exists" else f"!{expr.key}")
    return ",".join(parts)


def _owned_by(obj: Any, uid: str | None) -> bool:
    return any(ref.uid == uid and ref.controller for ref in obj.metadata.owner_references or [])


def _owner_name(obj: Any, kind: str) -> str | None:
    return next((ref.name for ref in obj.metadata.owner_references or [] if ref.kind == kind), None)


def _revision(obj: Any) -> int | None:
    value = (obj.metadata.annotations or {}).get(REVISION)
    return int(value) if value and value.isdigit() else None


def _current_and_previous(deployment: Any, owned: list[Any]) -> tuple[Revision | None, Revision | None]:
    """The deployment's revision and the newest one before it
    (a rollback reuses an old ReplicaSet under a new revision number)."""
    numbered = sorted((rs for rs in owned if _revision(rs) is not None), key=_revision, reverse=True)
    if not numbered:
        return None, None
    wanted = _revision(deployment)
    current = next((rs for rs in numbered if _revision(rs) == wanted), numbered[0])
    previous = next((rs for rs in numbered if _revision(rs) < _revision(current)), None)  # type: ignore[operator]
    return _as_revision(current), _as_revision(previous) if previous is not None else None


def _as_revision(rs: Any) -> Revision:
    status = rs.status
    return Revision(
        number=_revision(rs) or 0,
        replicaset=rs.metadata.name,
        images=[c.image for c in rs.spec.template.spec.containers],
        created_at=rs.metadata.creation_timestamp,
        replicas=(status.replicas if status else 0) or 0,
        ready_replicas=(status.ready_replicas if status else 0) or 0,
    )


def _pod_status(pod: Any, revisions: dict[str, int | None]) -> PodStatus:
    status = pod.status
    containers = [_container(c, init=True) for c in status.init_container_statuses or []] + [
        _container(c, init=False) for c in status.container_statuses or []
    ]
    replicaset = _owner_name(pod, "ReplicaSet")
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
    return PodStatus(
        name=pod.metadata.name,
        phase=status.phase,
        ready=ready,
        restarts=sum(c.restarts for c in containers),
        reason=next((c.reason for c in containers if c.reason and c.state != "running"), status.reason),
        containers=containers,
        replicaset=replicaset,
        revision=revisions.get(replicaset) if replicaset else None,
        terminating=pod.metadata.deletion_timestamp is not None,
        node=pod.spec.node_name if pod.spec else None,
        created_at=pod.metadata.creation_timestamp,
    )


def _container(c: Any, *, init: bool) -> ContainerStatus:
    state, reason, message = "unknown", None, None
    if c.state is not None:
        if c.state.waiting is not None:
            state, reason, message = "waiting", c.state.waiting.reason, c.state.waiting.message
        elif c.state.terminated is not None:
            state, reason, message = "terminated", c.state.terminated.reason, c.state.terminated.message
        elif c.state.running is not None:
            state = "running"
    last = c.last_state.terminated if c.last_state is not None else None
    return ContainerStatus(
        name=c.name,
        image=c.image,
        ready=bool(c.ready),
        restarts=c.restart_count or 0,
        state=state,
        reason=reason,
        message=redact(message) if message else None,
        last_termination=Termination(last.reason, last.exit_code, last.finished_at, last.message) if last else None,
        init=init,
    )


def _event(e: Any) -> KubeEvent:
    series = e.series
    return KubeEvent(
        object_kind=e.involved_object.kind or "",
        object_name=e.involved_object.name or "",
        reason=e.reason,
        message=redact(e.message) if e.message else None,
        count=e.count or (series.count if series else None) or 1,
        last_seen=e.last_timestamp
        or (series.last_observed_time if series else None)
        or e.event_time
        or e.metadata.creation_timestamp,
    )


def _camel(name: str) -> str:
    """label_selector -> labelSelector, as the API's query parameters are spelled."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _raw_selector(selector: dict[str, Any] | None) -> str:
    """A label selector (API JSON) as the query string form; '' when there is none."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(values)})")
        else:
            parts.append(key if op == "Exists" else f"!{key}")
    return ",".join(parts)


def _raw_owned(obj: dict[str, Any], owner: dict[str, Any] | None) -> bool:
    uid = ((owner or {}).get("metadata") or {}).get("uid")
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _configmaps_referenced(objects: Iterable[dict[str, Any] | None]) -> set[str]:
    """ConfigMap names the pod specs (or a workload's template) reference: volumes, envFrom, env valueFrom."""
    names: set[str] = set()
    for obj in objects:
        spec = (obj or {}).get("spec") or {}
        spec = (spec.get("template") or {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template", {}).get("spec") or spec
        for volume in spec.get("volumes") or []:
            if "configMap" in volume:
                names.add(volume["configMap"].get("name", ""))
            for source in (volume.get("projected") or {}).get("sources") or []:
                if "configMap" in source:
                    names.add(source["configMap"].get("name", ""))
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    names.add(source["configMapRef"].get("name", ""))
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    names.add(ref.get("name", ""))
    return names - {""}
