"""A fake Kubernetes API server that the real `kubernetes.aio` client talks to over HTTP.

Shipped in the package because `srebot eval` boots it for scenarios; the test suite re-uses it
(tests/fakes/kube.py).

`KubeFake` serves real object JSON (apps/v1 Deployment and ReplicaSet, v1 Pod and Event lists,
autoscaling/v1 Scale, v1 Status for errors) from plain dicts that tests can inspect and tweak,
and writes a kubeconfig pointing at itself:

    async with KubeFake() as kube:
        load_shop_scenario(kube)
        tool = Kubernetes(kubeconfig=kube.kubeconfig_path, context=kube.context)

What it understands: `labelSelector` (equality and set-based), `fieldSelector` (`a.b=v`, `a.b!=v`),
`GET .../pods/{name}/log` (`container`, `previous`, `tailLines`, `limitBytes`), and PATCH of
deployments and their scale subresource with JSON patch (add/replace/remove/test), merge patch and
strategic-merge patch (applied as a merge patch: maps merge, lists are replaced). Every PATCH is
recorded in `patches`, every request in `requests`. It simulates no controller: a PATCH changes
the stored deployment and nothing else (no new ReplicaSet, no revision bump).

Permission errors: `forbid(verb, resource, namespace)` makes those calls answer 403 with the
apiserver's Status message. A missing object answers 404. A request without the kubeconfig's
bearer token answers 401. `fail(method, path, status, times=n)` makes the next n such requests
fail with `status` (e.g. 500 to see retries); `before(method, path, hook)` changes state just
before a request is handled (e.g. a rollout landing between a read and a write).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from devtools.loopback.serving import QueryCounter, Served, serve

TOKEN = "fake-kube-token"
REVISION = "deployment.kubernetes.io/revision"


def ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PatchRecord:
    """One PATCH the fake received, as sent."""

    path: str
    resource: str  # "deployments" or "deployments/scale"
    namespace: str
    name: str
    content_type: str
    body: Any


class ServedCluster(Served):
    """A loopback API server and the kubeconfig file pointing at it, removed again on close."""

    url: str
    kubeconfig_path: str
    _dir: str | None

    def kubeconfig(self) -> dict[str, Any]:
        raise NotImplementedError

    async def serve_cluster(self, app: web.Application) -> None:
        self._runner, self.url = await serve(app)
        self._dir = tempfile.mkdtemp(prefix="kube-")
        self.kubeconfig_path = str(Path(self._dir) / "kubeconfig")
        Path(self.kubeconfig_path).write_text(yaml.safe_dump(self.kubeconfig()))

    async def close(self) -> None:
        await super().close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


@dataclass
class KubeFake(ServedCluster):
    """In-memory cluster state behind an aiohttp server on 127.0.0.1 (random port).

    Objects are stored as Kubernetes JSON dicts keyed by (namespace, name); tests may edit them
    directly between calls. `add_*` builders make consistent objects (labels, owner references,
    pod-template-hash, revisions).
    """

    context: str = "fake-cluster"
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    replicasets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[tuple[str, str, str | None, bool], str] = field(default_factory=dict)
    forbidden: set[tuple[str, str, str]] = field(default_factory=set)  # (verb, resource, namespace)
    failures: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (method, path) -> statuses to answer
    hooks: dict[tuple[str, str], list[Callable[[], None]]] = field(default_factory=dict)  # run before a request
    patches: list[PatchRecord] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path with query)
    per_query: QueryCounter = field(default_factory=QueryCounter)  # requests by method, path and query
    delay: float = 0.0  # seconds every request waits before it is answered (a slow apiserver)
    url: str = ""
    kubeconfig_path: str = ""
    _dir: str | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> KubeFake:
        app = web.Application(middlewares=[self._middleware])
        apps = "/apis/apps/v1"
        app.add_routes(
            [
                web.get("/version/", self._version),
                web.get("/api/v1/pods", self._list_pods),
                web.get("/api/v1/namespaces/{ns}/pods", self._list_pods),
                web.get("/api/v1/namespaces/{ns}/pods/{name}/log", self._pod_log),
                web.get("/api/v1/events", self._list_events),
                web.get("/api/v1/namespaces/{ns}/events", self._list_events),
                web.get(f"{apps}/deployments", self._list_deployments),
                web.get(f"{apps}/namespaces/{{ns}}/deployments", self._list_deployments),
                web.get(f"{apps}/namespaces/{{ns}}/deployments/{{name}}", self._get_deployment),
                web.patch(f"{apps}/namespaces/{{ns}}/deployments/{{name}}", self._patch_deployment),
                web.get(f"{apps}/namespaces/{{ns}}/deployments/{{name}}/scale", self._get_scale),
                web.patch(f"{apps}/namespaces/{{ns}}/deployments/{{name}}/scale", self._patch_scale),
                web.get(f"{apps}/replicasets", self._list_replicasets),
                web.get(f"{apps}/namespaces/{{ns}}/replicasets", self._list_replicasets),
            ]
        )
        await self.serve_cluster(app)
        return self

    def kubeconfig(self) -> dict[str, Any]:
        return kubeconfig(self.url, self.context)

    # --- builders --------------------------------------------------------------------------

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        image: str,
        replicas: int = 3,
        revision: int = 1,
        ready: int | None = None,
        updated: int | None = None,
        labels: dict[str, str] | None = None,
        conditions: list[dict[str, Any]] | None = None,
        created: datetime | None = None,
    ) -> dict[str, Any]:
        """A Deployment whose current template runs `image`; its status defaults to fully rolled out."""
        created = created or datetime.now(UTC) - timedelta(days=30)
        ready = replicas if ready is None else ready
        updated = replicas if updated is None else updated
        selector = {"app": name}
        obj = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "generation": revision,
                "creationTimestamp": ts(created),
                "labels": {**selector, **(labels or {})},
                "annotations": {REVISION: str(revision)},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": _template(name, selector, image),
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {
                "observedGeneration": revision,
                "replicas": max(replicas, updated),
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": max(replicas - ready, 0),
                "conditions": conditions
                if conditions is not None
                else [
                    condition(
                        "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", created
                    ),
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        "ReplicaSet has successfully progressed.",
                        created,
                    ),
                ],
            },
        }
        self.deployments[(namespace, name)] = obj
        return obj

    def add_replicaset(
        self,
        deployment: dict[str, Any],
        *,
        revision: int,
        image: str,
        created: datetime,
        replicas: int,
        ready: int | None = None,
        pod_template_hash: str | None = None,
    ) -> dict[str, Any]:
        """A ReplicaSet owned by `deployment` for one revision; its template is the deployment's with `image`."""
        meta = deployment["metadata"]
        pod_hash = pod_template_hash or uuid.uuid4().hex[:10]
        template = copy.deepcopy(deployment["spec"]["template"])
        template["metadata"]["labels"]["pod-template-hash"] = pod_hash
        template["spec"]["containers"][0]["image"] = image
        selector = {**deployment["spec"]["selector"]["matchLabels"], "pod-template-hash": pod_hash}
        obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta["namespace"],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": ts(created),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(deployment["spec"]["replicas"]),
                },
                "ownerReferences": [_owner(deployment)],
            },
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
            "status": {
                "replicas": replicas,
                "readyReplicas": replicas if ready is None else ready,
                "availableReplicas": replicas if ready is None else ready,
                "observedGeneration": 1,
            },
        }
        self.replicasets[(meta["namespace"], obj["metadata"]["name"])] = obj
        return obj

    def add_pod(
        self,
        replicaset: dict[str, Any],
        *,
        created: datetime,
        name: str | None = None,
        ready: bool = True,
        restarts: int = 0,
        waiting: tuple[str, str] | None = None,
        last_terminated: dict[str, Any] | None = None,
        terminating_since: datetime | None = None,
        node: str = "node-1",
    ) -> dict[str, Any]:
        """A pod of `replicaset`. `waiting` is (reason, message) of a container not running;
        `last_terminated` is a containerStatus.lastState.terminated dict (exitCode, reason, finishedAt...)."""
        rs_meta = replicaset["metadata"]
        template = replicaset["spec"]["template"]
        container = template["spec"]["containers"][0]
        pod_name = name or f"{rs_meta['name']}-{uuid.uuid4().hex[:5]}"
        state: dict[str, Any] = (
            {"waiting": {"reason": waiting[0], "message": waiting[1]}}
            if waiting
            else {"running": {"startedAt": ts(created)}}
        )
        status = {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": ready,
            "started": ready,
            "restartCount": restarts,
            "state": state,
            "lastState": {"terminated": last_terminated} if last_terminated else {},
        }
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": rs_meta["namespace"],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": ts(created),
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [_owner(replicaset)],
                **(
                    {"deletionTimestamp": ts(terminating_since), "deletionGracePeriodSeconds": 30}
                    if terminating_since
                    else {}
                ),
            },
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": node},
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ts(created)},
                    {
                        "type": "ContainersReady",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": ts(created),
                    },
                ],
                "hostIP": "10.0.0.1",
                "podIP": "10.1.0.1",
                "startTime": ts(created),
                "containerStatuses": [status],
            },
        }
        self.pods[(rs_meta["namespace"], pod_name)] = obj
        return obj

    def add_event(
        self,
        obj: dict[str, Any],
        *,
        reason: str,
        message: str,
        last_seen: datetime,
        count: int = 1,
        type: str = "Warning",
    ) -> dict[str, Any]:
        """A core/v1 Event about `obj` (any object dict this fake made)."""
        meta = obj["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": meta["namespace"],
                "creationTimestamp": ts(last_seen - timedelta(minutes=count)),
            },
            "involvedObject": {
                "kind": obj["kind"],
                "apiVersion": obj["apiVersion"],
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message,
            "type": type,
            "count": count,
            "firstTimestamp": ts(last_seen - timedelta(minutes=count)),
            "lastTimestamp": ts(last_seen),
            "source": {"component": "kubelet"},
            "reportingComponent": "kubelet",
        }
        self.events.append(event)
        return event

    def set_logs(
        self, namespace: str, pod: str, text: str, *, container: str | None = None, previous: bool = False
    ) -> None:
        """Log text of a pod; with `container` None it answers for a pod's only container."""
        self.logs[(namespace, pod, container, previous)] = text

    def forbid(self, verb: str, resource: str, namespace: str) -> None:
        """Answer 403 to `verb` on `resource` (e.g. "pods", "pods/log", "deployments/scale") in `namespace`."""
        self.forbidden.add((verb, resource, namespace))

    def fail(self, method: str, path: str, status: int, *, times: int = 1) -> None:
        """Answer the next `times` requests of `method` on `path` (no query) with `status` and a Status body."""
        self.failures[(method, path)] = [status] * times

    def before(self, method: str, path: str, hook: Callable[[], None]) -> None:
        """Run `hook` once, just before the next `method` request on `path` is handled (to change state
        in the middle of an operation)."""
        self.hooks.setdefault((method, path), []).append(hook)

    def patches_of(self, namespace: str, name: str) -> list[PatchRecord]:
        return [p for p in self.patches if (p.namespace, p.name) == (namespace, name)]

    # --- HTTP ------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        self.per_query.add_request(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("Authorization", "").lower() != f"bearer {TOKEN}":
            return status_response(401, "Unauthorized", "Unauthorized")
        if hooks := self.hooks.get((request.method, request.path)):
            hooks.pop(0)()
        if pending := self.failures.get((request.method, request.path)):
            code = pending.pop(0)
            return status_response(code, "InternalError" if code >= 500 else "Failure", f"injected failure {code}")
        return await handler(request)

    def _denied(self, verb: str, resource: str, namespace: str | None, name: str | None = None) -> web.Response | None:
        if (verb, resource, namespace or "") not in self.forbidden:
            return None
        base = resource.split("/")[0]
        group = "apps" if base in ("deployments", "replicasets") else ""
        what = f'{base}.{group} "{name}"' if name and group else f'{base} "{name}"' if name else base
        scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        message = (
            f'{what} is forbidden: User "system:serviceaccount:srebot:srebot" cannot {verb} resource '
            f'"{resource}" in API group "{group}"{scope}'
        )
        return status_response(403, "Forbidden", message, {"name": name, "group": group, "kind": base})

    def _list(
        self,
        request: web.Request,
        store: dict[tuple[str, str], dict[str, Any]] | list[dict[str, Any]],
        kind: str,
        api_version: str,
        resource: str,
    ) -> web.Response:
        namespace = request.match_info.get("ns")
        if denied := self._denied("list", resource, namespace):
            return denied
        objects = store.values() if isinstance(store, dict) else store
        items = [
            o
            for o in objects
            if (namespace is None or o["metadata"]["namespace"] == namespace)
            and labels_match(o["metadata"].get("labels", {}), request.query.get("labelSelector", ""))
            and fields_match(o, request.query.get("fieldSelector", ""))
        ]
        return web.json_response(
            {"apiVersion": api_version, "kind": f"{kind}List", "metadata": {"resourceVersion": "1"}, "items": items}
        )

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0-fake",
                "gitCommit": "0000000",
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T07:28:49Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    async def _list_pods(self, request: web.Request) -> web.Response:
        return self._list(request, self.pods, "Pod", "v1", "pods")

    async def _list_events(self, request: web.Request) -> web.Response:
        return self._list(request, self.events, "Event", "v1", "events")

    async def _list_deployments(self, request: web.Request) -> web.Response:
        return self._list(request, self.deployments, "Deployment", "apps/v1", "deployments")

    async def _list_replicasets(self, request: web.Request) -> web.Response:
        return self._list(request, self.replicasets, "ReplicaSet", "apps/v1", "replicasets")

    def _deployment(self, request: web.Request, verb: str, resource: str) -> dict[str, Any] | web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if denied := self._denied(verb, resource, ns, name):
            return denied
        obj = self.deployments.get((ns, name))
        if obj is None:
            return status_response(
                404,
                "NotFound",
                f'deployments.apps "{name}" not found',
                {"name": name, "group": "apps", "kind": "deployments"},
            )
        return obj

    async def _get_deployment(self, request: web.Request) -> web.Response:
        obj = self._deployment(request, "get", "deployments")
        return obj if isinstance(obj, web.Response) else web.json_response(obj)

    async def _get_scale(self, request: web.Request) -> web.Response:
        obj = self._deployment(request, "get", "deployments/scale")
        return obj if isinstance(obj, web.Response) else web.json_response(_scale(obj))

    async def _patch_deployment(self, request: web.Request) -> web.Response:
        obj = self._deployment(request, "patch", "deployments")
        if isinstance(obj, web.Response):
            return obj
        patched = await self._apply_patch(request, "deployments", obj)
        return patched if isinstance(patched, web.Response) else web.json_response(patched)

    async def _patch_scale(self, request: web.Request) -> web.Response:
        obj = self._deployment(request, "patch", "deployments/scale")
        if isinstance(obj, web.Response):
            return obj
        patched = await self._apply_patch(request, "deployments/scale", _scale(obj))
        if isinstance(patched, web.Response):
            return patched
        obj["spec"]["replicas"] = patched["spec"]["replicas"]
        return web.json_response(_scale(obj))

    async def _apply_patch(
        self, request: web.Request, resource: str, target: dict[str, Any]
    ) -> dict[str, Any] | web.Response:
        content_type = request.headers.get("Content-Type", "")
        body = json.loads(await request.text())
        ns, name = request.match_info["ns"], request.match_info["name"]
        self.patches.append(PatchRecord(request.path, resource, ns, name, content_type, body))
        try:
            if content_type == "application/json-patch+json":
                result = json_patch(target, body)
            elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                result = merge_patch(target, body)
            else:
                return status_response(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
                )
        except (KeyError, IndexError, ValueError) as exc:
            return status_response(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}")
        if resource == "deployments":
            result["metadata"]["generation"] = result["metadata"].get("generation", 0) + 1
            self.deployments[(ns, name)] = result
        return result

    async def _pod_log(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if denied := self._denied("get", "pods/log", ns, name):
            return denied
        pod = self.pods.get((ns, name))
        if pod is None:
            return status_response(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        container = request.query.get("container")
        containers = [c["name"] for c in pod["spec"]["containers"]]
        if container is None and len(containers) > 1:
            return status_response(
                400,
                "BadRequest",
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]",
            )
        previous = request.query.get("previous") == "true"
        text = self.logs.get((ns, name, container, previous)) or self.logs.get((ns, name, None, previous))
        if text is None and previous:
            return status_response(
                400,
                "BadRequest",
                f'previous terminated container "{container or containers[0]}" in pod "{name}" not found',
            )
        text = text or ""
        if tail := request.query.get("tailLines"):
            text = "".join(text.splitlines(keepends=True)[-int(tail) :])
        if limit := request.query.get("limitBytes"):
            text = text.encode()[: int(limit)].decode(errors="ignore")
        return web.Response(text=text, content_type="text/plain")


# --- object helpers ------------------------------------------------------------------------


def kubeconfig(server: str, context: str, namespace: str | None = None) -> dict[str, Any]:
    """A kubeconfig for a loopback API server: its bearer token, and `namespace` as the context's default."""
    cluster = {"cluster": "fake", "user": "srebot", **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "srebot", "user": {"token": TOKEN}}],
        "contexts": [{"name": context, "context": cluster}],
        "current-context": context,
    }


def _template(name: str, labels: dict[str, str], image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "containers": [
                {
                    "name": name,
                    "image": image,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    }


def condition(type: str, status: str, reason: str, message: str, at: datetime) -> dict[str, Any]:
    return {
        "type": type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": ts(at),
        "lastTransitionTime": ts(at),
    }


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _scale(deployment: dict[str, Any]) -> dict[str, Any]:
    meta = deployment["metadata"]
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
        "spec": {"replicas": deployment["spec"]["replicas"]},
        "status": {"replicas": deployment["status"].get("replicas", 0), "selector": selector},
    }


def status_response(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = {k: v for k, v in details.items() if v is not None}
    return web.json_response(body, status=code)


_REQUIREMENT = re.compile(r"\s*(!?)([\w./-]+)\s*(?:(=|==|!=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_selector(selector: str) -> list[str]:
    return [part for part in re.split(r",(?![^()]*\))", selector) if part.strip()]


def labels_match(labels: dict[str, str], selector: str) -> bool:
    for part in _split_selector(selector):
        m = _REQUIREMENT.match(part)
        if m is None:
            raise ValueError(f"unparsable label selector {selector!r}")
        negate, key, op, value, set_op, values = m.groups()
        if op in ("=", "=="):
            ok = labels.get(key) == value
        elif op == "!=":
            ok = labels.get(key) != value
        elif set_op:
            ok = (labels.get(key) in {v.strip() for v in values.split(",")}) == (set_op == "in")
            ok = ok and (set_op == "notin" or key in labels)
        else:
            ok = (key in labels) != bool(negate)
        if not ok:
            return False
    return True


def fields_match(obj: dict[str, Any], selector: str) -> bool:
    """A field selector (`a.b=v`, `a.b!=v`, comma-separated) on dotted paths; a missing field is the empty string."""
    for part in _split_selector(selector):
        match = re.match(r"\s*([\w.]+)\s*(!=|==|=)\s*(.*?)\s*$", part)
        if match is None:
            raise ValueError(f"invalid field selector {selector!r}")
        path, op, value = match.groups()
        actual: Any = obj
        for key in path.split("."):
            actual = actual.get(key) if isinstance(actual, dict) else None
        if (("" if actual is None else str(actual)) == value) == (op == "!="):
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/replace/remove/test; raises ValueError when a test fails."""
    result = copy.deepcopy(target)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node: Any = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if op["op"] == "test":
            if node[key] != op["value"]:
                raise ValueError(f"testing value {op['path']} failed")
        elif op["op"] == "remove":
            del node[key]
        elif op["op"] == "replace":
            if (isinstance(node, dict) and key not in node) or (isinstance(node, list) and not 0 <= key < len(node)):
                raise KeyError(f"replace needs an existing target: {op['path']}")
            node[key] = copy.deepcopy(op["value"])
        elif op["op"] == "add" and isinstance(node, list):
            node.insert(len(node) if key == "-" else key, copy.deepcopy(op["value"]))
        elif op["op"] == "add":
            node[key] = copy.deepcopy(op["value"])
        else:
            raise ValueError(f"unsupported JSON patch op {op['op']!r}")
    return result
