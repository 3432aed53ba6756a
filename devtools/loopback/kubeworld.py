"""A loopback Kubernetes API server that serves a scenario world's objects of any kind (shared/scenarios/FORMAT.md,
"k8s.json"), for the real `kubernetes.aio` client.

    async with KubeWorld(world.k8s, world.logs, namespace="shop") as kube:
        ...  # kube.kubeconfig_path; kube.patches after the run

It answers like a Kubernetes 1.30 API server with a read-mostly service account: list and get of every kind at its
API path (namespaced and cluster-scoped), label and field selectors, limit/continue, 404 Status bodies, discovery,
the events.k8s.io/v1 view of core events, autoscaling/v1 HPAs converted from the stored autoscaling/v2, the scale
subresource, pod logs with the kubelet's refusals, and 403 for every write except PATCH of a Deployment and its
scale (recorded in `patches`, the data left as it is unless `applies_patches`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from devtools.loopback.kube import (
    TOKEN,
    PatchRecord,
    ServedCluster,
    fields_match,
    json_patch,
    kubeconfig,
    labels_match,
    merge_patch,
    status_response,
)
from devtools.loopback.serving import QueryCounter
from devtools.world import LogEntry

NOT_FOUND = "the server could not find the requested resource"
DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


@dataclass(frozen=True)
class Resource:
    plural: str
    group: str  # "" for the core group
    version: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ("get", "list", "watch")
    short: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How a NotFound message names it: `pods`, `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _r(plural: str, group: str, version: str, kind: str, namespaced: bool = True, *short: str) -> Resource:
    return Resource(plural, group, version, kind, namespaced, short=short)


# What a 1.30 API server knows (the kinds a diagnosis reads, and their neighbours).
BUILTIN: tuple[Resource, ...] = (
    _r("pods", "", "v1", "Pod", True, "po"),
    _r("events", "", "v1", "Event", True, "ev"),
    _r("nodes", "", "v1", "Node", False, "no"),
    _r("namespaces", "", "v1", "Namespace", False, "ns"),
    _r("services", "", "v1", "Service", True, "svc"),
    _r("endpoints", "", "v1", "Endpoints", True, "ep"),
    _r("configmaps", "", "v1", "ConfigMap", True, "cm"),
    _r("secrets", "", "v1", "Secret"),
    _r("serviceaccounts", "", "v1", "ServiceAccount", True, "sa"),
    _r("persistentvolumeclaims", "", "v1", "PersistentVolumeClaim", True, "pvc"),
    _r("persistentvolumes", "", "v1", "PersistentVolume", False, "pv"),
    _r("resourcequotas", "", "v1", "ResourceQuota", True, "quota"),
    _r("limitranges", "", "v1", "LimitRange", True, "limits"),
    _r("replicationcontrollers", "", "v1", "ReplicationController", True, "rc"),
    _r("podtemplates", "", "v1", "PodTemplate"),
    _r("deployments", "apps", "v1", "Deployment", True, "deploy"),
    _r("replicasets", "apps", "v1", "ReplicaSet", True, "rs"),
    _r("statefulsets", "apps", "v1", "StatefulSet", True, "sts"),
    _r("daemonsets", "apps", "v1", "DaemonSet", True, "ds"),
    _r("controllerrevisions", "apps", "v1", "ControllerRevision"),
    _r("jobs", "batch", "v1", "Job"),
    _r("cronjobs", "batch", "v1", "CronJob", True, "cj"),
    _r("horizontalpodautoscalers", "autoscaling", "v2", "HorizontalPodAutoscaler", True, "hpa"),
    _r("horizontalpodautoscalers", "autoscaling", "v1", "HorizontalPodAutoscaler", True, "hpa"),
    _r("networkpolicies", "networking.k8s.io", "v1", "NetworkPolicy", True, "netpol"),
    _r("ingresses", "networking.k8s.io", "v1", "Ingress", True, "ing"),
    _r("ingressclasses", "networking.k8s.io", "v1", "IngressClass", False),
    _r("endpointslices", "discovery.k8s.io", "v1", "EndpointSlice"),
    _r("events", "events.k8s.io", "v1", "Event", True, "ev"),
    _r("storageclasses", "storage.k8s.io", "v1", "StorageClass", False, "sc"),
    _r("csidrivers", "storage.k8s.io", "v1", "CSIDriver", False),
    _r("csinodes", "storage.k8s.io", "v1", "CSINode", False),
    _r("volumeattachments", "storage.k8s.io", "v1", "VolumeAttachment", False),
    _r("poddisruptionbudgets", "policy", "v1", "PodDisruptionBudget", True, "pdb"),
    _r("roles", "rbac.authorization.k8s.io", "v1", "Role"),
    _r("rolebindings", "rbac.authorization.k8s.io", "v1", "RoleBinding"),
    _r("clusterroles", "rbac.authorization.k8s.io", "v1", "ClusterRole", False),
    _r("clusterrolebindings", "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", False),
    _r("priorityclasses", "scheduling.k8s.io", "v1", "PriorityClass", False, "pc"),
    _r("leases", "coordination.k8s.io", "v1", "Lease"),
)
# resources served as a view of another one's objects: (group, version, plural) -> the stored plural
VIEWS = {("events.k8s.io", "v1", "events"): "events", ("autoscaling", "v1", "horizontalpodautoscalers"): "horizontalpodautoscalers"}
SUBRESOURCES = {"pods": ("log", "status"), "deployments": ("scale", "status"), "replicasets": ("scale", "status"),
                "statefulsets": ("scale", "status")}
SCALABLE = ("deployments", "replicasets", "statefulsets")
PATCHABLE = {("deployments", None), ("deployments", "scale")}


@dataclass
class KubeWorld(ServedCluster):
    """The world's objects (`{plural: [object]}`) and log lines behind a loopback API server (module docstring)."""

    objects: dict[str, list[dict[str, Any]]]
    logs: list[LogEntry] = field(default_factory=list)
    namespace: str = "default"  # the kubeconfig context's namespace
    context: str = "scenario"
    patches: list[PatchRecord] = field(default_factory=list)
    forbidden_writes: list[tuple[str, str]] = field(default_factory=list)  # (method, path) answered 403
    per_query: QueryCounter = field(default_factory=QueryCounter)
    delay: float = 0.0  # seconds every request waits (a slow API server)
    applies_patches: bool = False  # a PATCH changes the object (the demo's cluster); else the world stays as written
    url: str = ""
    kubeconfig_path: str = ""
    _dir: str | None = None

    def __post_init__(self) -> None:
        self.resources = _resources(self.objects)
        self.store = {plural: list(items) for plural, items in self.objects.items()}
        if "namespaces" not in self.store:
            self.store["namespaces"] = _default_namespaces(self.objects)

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> KubeWorld:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        await self.serve_cluster(app)
        return self

    def kubeconfig(self, server: str | None = None) -> dict[str, Any]:
        return kubeconfig(server or self.url, self.context, self.namespace)

    # --- HTTP --------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.per_query.add_request(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("Authorization", "").lower() != f"bearer {TOKEN}":
            return status_response(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts in (["version"],):
            return web.json_response(VERSION)
        if parts == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.removeprefix("http://")}]})
        if parts == ["apis"]:
            return web.json_response(self._group_list())
        if parts[:1] == ["apis"] and len(parts) == 2:
            group = self._group(parts[1])
            return web.json_response(group) if group else _unknown()
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return _unknown()
        if not rest:
            listing = self._resource_list(group, version)
            return web.json_response(listing) if listing else _unknown()
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)
        if len(rest) > 3:
            return _unknown()
        resource = self.resources.get((group, version, plural))
        if resource is None or (namespace is not None and not resource.namespaced):
            return _unknown()
        if resource.namespaced and name is not None and namespace is None:
            return _unknown()
        if sub is not None and sub not in SUBRESOURCES.get(plural, ("status",)):
            return _unknown()
        if request.method != "GET":
            return await self._write(request, resource, namespace, name, sub)
        if plural == "nodes" and "nodes" not in self.objects:
            # the world does not describe its nodes: not "there are none"
            return _unknown() if name is None else _not_found(resource, name)
        if name is None:
            return self._list(request, resource, namespace)
        obj = self._find(resource, namespace, name)
        if obj is None:
            return _not_found(resource, name)
        if sub == "log":
            return self._pod_log(request, obj)
        if sub == "scale":
            return web.json_response(_scale(obj))
        return web.json_response(obj)

    # --- reads -------------------------------------------------------------------------------------
    def _items(self, resource: Resource) -> list[dict[str, Any]]:
        stored = VIEWS.get((resource.group, resource.version, resource.plural), resource.plural)
        items = self.store.get(stored, [])
        if (resource.group, resource.version, resource.plural) == ("events.k8s.io", "v1", "events"):
            return [_event_v1(e) for e in items]
        if (resource.group, resource.version, resource.plural) == ("autoscaling", "v1", "horizontalpodautoscalers"):
            return [_hpa_v1(h) for h in items]
        return items

    def _find(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        return next(
            (
                o
                for o in self._items(resource)
                if o["metadata"]["name"] == name and (namespace is None or o["metadata"].get("namespace") == namespace)
            ),
            None,
        )

    def _list(self, request: web.Request, resource: Resource, namespace: str | None) -> web.Response:
        try:
            items = [
                o
                for o in self._items(resource)
                if (namespace is None or o["metadata"].get("namespace") == namespace)
                and labels_match(o["metadata"].get("labels") or {}, request.query.get("labelSelector", ""))
                and fields_match(o, request.query.get("fieldSelector", ""))
            ]
        except ValueError as exc:
            return status_response(400, "BadRequest", f"unable to parse requirement: {exc}")
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        metadata: dict[str, Any] = {"resourceVersion": "1000"}
        start = _offset(request.query.get("continue", ""))
        if start is None:
            return status_response(400, "BadRequest", "continue key is not valid: illegal base64 data")
        limit = int(request.query.get("limit", "0") or 0)
        items = items[start:]
        if limit and len(items) > limit:
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps({"offset": start + limit}).encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return web.json_response(
            {"apiVersion": resource.group_version, "kind": f"{resource.kind}List", "metadata": metadata, "items": items}
        )

    def _pod_log(self, request: web.Request, pod: dict[str, Any]) -> web.Response:
        name, namespace = pod["metadata"]["name"], pod["metadata"].get("namespace", "")
        spec = pod.get("spec", {})
        containers = [c["name"] for c in spec.get("containers", [])]
        inits = [c["name"] for c in spec.get("initContainers", [])]
        container = request.query.get("container")
        if container is None:
            if len(containers) != 1:
                extra = f" or one of the init containers: [{' '.join(inits)}]" if inits else ""
                return status_response(
                    400, "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]{extra}",
                )
            container = containers[0]
        if container not in containers + inits:
            return status_response(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if not spec.get("nodeName"):
            return web.Response(text="", content_type="text/plain")  # not scheduled: the server has no log to stream
        status = _container_status(pod, container)
        previous = request.query.get("previous") == "true"
        if previous and not (status and status.get("restartCount", 0) > 0 or (status or {}).get("lastState", {}).get("terminated")):
            return status_response(
                400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" not found'
            )
        waiting = ((status or {}).get("state") or {}).get("waiting")
        if not previous and waiting and waiting.get("reason") != "CrashLoopBackOff":
            reason = waiting.get("reason") or "ContainerCreating"
            why = {"ImagePullBackOff": "trying and failing to pull image", "ErrImagePull": "image can't be pulled"}.get(
                reason, reason
            )
            return status_response(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {why}')
        # a crash-looping container has no current instance: the server streams the last run's output
        previous = previous or bool(waiting)
        now = datetime.now(UTC)
        first = containers[0] if containers else None
        lines = [
            entry
            for entry in self.logs
            if entry.labels.get("pod") == name
            and entry.labels.get("namespace", namespace) == namespace
            and entry.labels.get("container", first) == container
            and entry.previous == previous
            and entry.at <= now
        ]
        lines = _unique(sorted(lines, key=lambda e: e.at))
        if since := request.query.get("sinceSeconds"):
            lines = [e for e in lines if e.at >= now - timedelta(seconds=int(since))]
        if since_time := request.query.get("sinceTime"):
            cut = datetime.fromisoformat(since_time.replace("Z", "+00:00"))
            lines = [e for e in lines if e.at >= cut]
        if (tail := request.query.get("tailLines")) is not None:
            lines = lines[-int(tail):] if int(tail) > 0 else []
        stamped = request.query.get("timestamps") == "true"
        text = "".join((f"{_nanos(e.at)} " if stamped else "") + e.line + "\n" for e in lines)
        if limit := request.query.get("limitBytes"):
            text = text.encode()[: int(limit)].decode(errors="ignore")
        return web.Response(text=text, content_type="text/plain")

    # --- writes ------------------------------------------------------------------------------------
    async def _write(
        self, request: web.Request, resource: Resource, namespace: str | None, name: str | None, sub: str | None
    ) -> web.Response:
        if request.method != "PATCH" or (resource.plural, sub) not in PATCHABLE or name is None:
            self.forbidden_writes.append((request.method, request.path))
            verb = {"POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(request.method, "update")
            what = f"{resource.plural}/{sub}" if sub else resource.plural
            scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            return status_response(
                403, "Forbidden",
                f'{resource.qualified} "{name or ""}" is forbidden: User "system:serviceaccount:srebot:srebot" cannot '
                f'{verb} resource "{what}" in API group "{resource.group}"{scope}',
                {"name": name, "group": resource.group, "kind": resource.plural},
            )
        obj = self._find(resource, namespace, name)
        if obj is None:
            return _not_found(resource, name)
        body = json.loads(await request.text() or "null")
        content_type = request.headers.get("Content-Type", "")
        self.patches.append(
            PatchRecord(request.path, f"{resource.plural}/{sub}" if sub else resource.plural, namespace or "", name,
                        content_type, body)
        )
        if self.applies_patches:
            try:
                patched = _patched(_scale(obj) if sub == "scale" else obj, body, content_type)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                return status_response(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}")
            if sub == "scale":
                obj.setdefault("spec", {})["replicas"] = patched.get("spec", {}).get("replicas")
            else:
                obj.clear()
                obj.update(patched)
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 0) + 1
        # accepted and recorded; no controller runs here, so nothing follows from the change
        return web.json_response(_scale(obj) if sub == "scale" else copy.deepcopy(obj))

    # --- discovery ---------------------------------------------------------------------------------
    def _versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for group, version, _ in self.resources:
            if group and version not in groups.setdefault(group, []):
                groups[group].append(version)
        return groups

    def _group(self, name: str) -> dict[str, Any] | None:
        versions = self._versions().get(name)
        if not versions:
            return None
        listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": listed, "preferredVersion": listed[0]}

    def _group_list(self) -> dict[str, Any]:
        groups = [self._group(name) for name in self._versions()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}

    def _resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        listed = [r for (g, v, _), r in self.resources.items() if (g, v) == (group, version)]
        if not listed:
            return None
        resources: list[dict[str, Any]] = []
        for r in listed:
            resources.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                              "kind": r.kind, "verbs": list(r.verbs), **({"shortNames": list(r.short)} if r.short else {})})
            for sub in SUBRESOURCES.get(r.plural, ()) if r.group in ("", "apps") else ():
                scale = {"group": "autoscaling", "version": "v1"} if sub == "scale" else {}
                resources.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                                  "kind": "Scale" if scale else r.kind, **scale, "verbs": ["get"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


VERSION = {
    "major": "1", "minor": "30", "gitVersion": "v1.30.4", "gitCommit": "a51b3b711150f57ffc1f526a640ec058514ed596",
    "gitTreeState": "clean", "buildDate": "2024-08-14T19:02:46Z", "goVersion": "go1.22.5", "compiler": "gc",
    "platform": "linux/amd64",
}


def _patched(target: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
    """`target` with a JSON patch, or a merge patch (which a strategic merge of these fields is), applied."""
    if content_type == "application/json-patch+json":
        return json_patch(target, body)
    return merge_patch(target, body)


def _resources(objects: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str, str], Resource]:
    """The built-in resources, plus each custom resource of the world (its group and version from its objects)."""
    known = {(r.group, r.version, r.plural): r for r in BUILTIN}
    builtin_plurals = {r.plural for r in BUILTIN}
    for plural, items in objects.items():
        if plural in builtin_plurals or not items:
            continue
        first = items[0]
        group, _, version = first.get("apiVersion", "").rpartition("/")
        known[(group, version, plural)] = Resource(
            plural, group, version, first.get("kind", plural), "namespace" in first.get("metadata", {})
        )
    return known


def _default_namespaces(objects: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    names = set(DEFAULT_NAMESPACES) | {
        o["metadata"]["namespace"] for items in objects.values() for o in items if o.get("metadata", {}).get("namespace")
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": n, "uid": f"ns-{n}", "labels": {"kubernetes.io/metadata.name": n},
                      "creationTimestamp": "2024-01-01T00:00:00Z", "resourceVersion": "1"},
         "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
        for n in sorted(names)
    ]


def _container_status(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    status = pod.get("status", {})
    for s in status.get("containerStatuses", []) + status.get("initContainerStatuses", []):
        if s.get("name") == container:
            return s
    return None


def _unique(entries: list[LogEntry]) -> list[LogEntry]:
    seen: set[tuple[datetime, str]] = set()
    kept = []
    for e in entries:
        if (e.at, e.line) not in seen:
            seen.add((e.at, e.line))
            kept.append(e)
    return kept


def _nanos(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond * 1000:09d}Z"


def _offset(token: str) -> int | None:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        return None


def _unknown() -> web.Response:
    return status_response(404, "NotFound", NOT_FOUND)


def _not_found(resource: Resource, name: str) -> web.Response:
    return status_response(
        404, "NotFound", f'{resource.qualified} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def _scale(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    labels = (obj.get("spec", {}).get("selector") or {}).get("matchLabels", {})
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
        "spec": {"replicas": obj.get("spec", {}).get("replicas", 1)},
        "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in labels.items())},
    }


def _micro(stamp: str | None) -> str | None:
    return stamp.replace("Z", ".000000Z") if stamp and stamp.endswith("Z") and "." not in stamp else stamp


def _event_v1(event: dict[str, Any]) -> dict[str, Any]:
    """A core/v1 Event as events.k8s.io/v1 serves it."""
    source = event.get("source") or {}
    converted: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": event["metadata"],
        "eventTime": _micro(event.get("eventTime") or event.get("lastTimestamp") or event.get("firstTimestamp")),
        "reportingController": event.get("reportingComponent") or source.get("component", ""),
        "reportingInstance": event.get("reportingInstance") or source.get("host", ""),
        "action": event.get("action"),
        "reason": event.get("reason"),
        "regarding": event.get("involvedObject", {}),
        "related": event.get("related"),
        "note": event.get("message"),
        "type": event.get("type"),
        "deprecatedSource": source or None,
        "deprecatedFirstTimestamp": event.get("firstTimestamp"),
        "deprecatedLastTimestamp": event.get("lastTimestamp"),
        "deprecatedCount": event.get("count"),
    }
    if (event.get("count") or 1) > 1:
        converted["series"] = {"count": event["count"], "lastObservedTime": _micro(event.get("lastTimestamp"))}
    return {k: v for k, v in converted.items() if v is not None}


def _metric_v1(metric: dict[str, Any], current: bool) -> dict[str, Any]:
    """An autoscaling/v2 MetricSpec (or MetricStatus) in the autoscaling/v1 annotation form (the v2beta1 shape)."""
    kind = metric.get("type", "")
    key = {"Resource": "resource", "Pods": "pods", "Object": "object", "External": "external",
           "ContainerResource": "containerResource"}.get(kind, kind.lower())
    source = metric.get(key, {})
    value = source.get("current" if current else "target", {})
    out: dict[str, Any] = {}
    if "name" in source:
        out["name"] = source["name"]
    if "metric" in source:
        out["metricName"] = source["metric"].get("name")
        if source["metric"].get("selector"):
            out["selector" if kind != "External" else "metricSelector"] = source["metric"]["selector"]
    if "describedObject" in source:
        out["target"] = source["describedObject"]
    if "container" in source:
        out["container"] = source["container"]
    prefix = "current" if current else "target"
    if "averageUtilization" in value:
        out[f"{prefix}AverageUtilization"] = value["averageUtilization"]
    if "averageValue" in value:
        out[f"{prefix}AverageValue"] = value["averageValue"]
    if "value" in value:
        out[f"{prefix}Value"] = value["value"]
    return {"type": kind, key: out}


def _is_cpu_utilization(metric: dict[str, Any], current: bool) -> bool:
    resource = metric.get("resource", {})
    value = resource.get("current" if current else "target", {})
    return metric.get("type") == "Resource" and resource.get("name") == "cpu" and (
        "averageUtilization" in value if current else value.get("type") == "Utilization"
    )


def _hpa_v1(hpa: dict[str, Any]) -> dict[str, Any]:
    """An autoscaling/v2 HPA as the API server converts it to autoscaling/v1: the CPU utilization target and
    current value in the v1 fields, the conditions and every other metric in annotations."""
    spec, status = hpa.get("spec", {}), hpa.get("status", {})
    metrics, current = spec.get("metrics", []), status.get("currentMetrics") or []
    cpu = next((m for m in metrics if _is_cpu_utilization(m, False)), None)
    cpu_now = next((m for m in current if _is_cpu_utilization(m, True)), None)
    annotations = dict(hpa["metadata"].get("annotations") or {})
    other = [_metric_v1(m, False) for m in metrics if m is not cpu]
    other_now = [_metric_v1(m, True) for m in current if m is not cpu_now]
    if other:
        annotations["autoscaling.alpha.kubernetes.io/metrics"] = json.dumps(other, separators=(",", ":"))
    if other_now:
        annotations["autoscaling.alpha.kubernetes.io/current-metrics"] = json.dumps(other_now, separators=(",", ":"))
    if status.get("conditions"):
        annotations["autoscaling.alpha.kubernetes.io/conditions"] = json.dumps(status["conditions"], separators=(",", ":"))
    if spec.get("behavior"):
        annotations["autoscaling.alpha.kubernetes.io/behavior"] = json.dumps(spec["behavior"], separators=(",", ":"))
    v1_spec: dict[str, Any] = {"scaleTargetRef": spec.get("scaleTargetRef"), "maxReplicas": spec.get("maxReplicas")}
    if "minReplicas" in spec:
        v1_spec["minReplicas"] = spec["minReplicas"]
    if cpu is not None:
        v1_spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    v1_status: dict[str, Any] = {
        k: status[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas") if k in status
    }
    v1_status.setdefault("currentReplicas", 0)
    v1_status.setdefault("desiredReplicas", 0)
    if cpu_now is not None:
        v1_status["currentCPUUtilizationPercentage"] = cpu_now["resource"]["current"]["averageUtilization"]
    metadata = {**hpa["metadata"], "annotations": annotations} if annotations else hpa["metadata"]
    return {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": metadata,
            "spec": v1_spec, "status": v1_status}
