"""The scenario worlds' Kubernetes API server (devtools.loopback.kubeworld), read by the real kubernetes.aio client
as the engine reads it: every kind at its path, selectors, paging, 404 bodies, the converted views, writes and pod
logs with the kubelet's refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException

from devtools.loopback.kubeworld import KubeWorld
from devtools.world import LogEntry

NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(seconds_ago: int) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, *, labels: dict[str, str], containers: list[str], statuses: list[dict[str, Any]],
        node: str | None = "node-a", init: list[str] | None = None, phase: str = "Running") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": f"shop/{c}:1"} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c, "image": "busybox"} for c in init]
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": labels, "uid": f"uid-{name}",
                         "creationTimestamp": stamp(600)},
            "spec": spec, "status": {"phase": phase, "containerStatuses": statuses}}


def status(name: str, *, restarts: int = 0, waiting: str | None = None) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": stamp(300)}}
    return {"name": name, "image": f"shop/{name}:1", "imageID": "", "ready": not waiting, "restartCount": restarts,
            "state": state, "lastState": {}}


WORLD: dict[str, list[dict[str, Any]]] = {
    "pods": [
        pod("checkout-a", labels={"app": "checkout", "tier": "web"}, containers=["checkout"],
            statuses=[status("checkout", restarts=3, waiting="CrashLoopBackOff")]),
        pod("checkout-b", labels={"app": "checkout", "tier": "web"}, containers=["checkout", "proxy"],
            statuses=[status("checkout"), status("proxy")]),
        pod("pull-c", labels={"app": "pull"}, containers=["pull"], statuses=[status("pull", waiting="ImagePullBackOff")]),
        pod("pending-d", labels={"app": "pending"}, containers=["pending"], statuses=[], node=None, phase="Pending"),
    ],
    "events": [
        {"apiVersion": "v1", "kind": "Event",
         "metadata": {"name": "checkout-a.1", "namespace": "shop", "creationTimestamp": stamp(120)},
         "involvedObject": {"kind": "Pod", "name": "checkout-a", "namespace": "shop", "apiVersion": "v1"},
         "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning", "count": 7,
         "firstTimestamp": stamp(500), "lastTimestamp": stamp(60), "source": {"component": "kubelet", "host": "node-a"}},
        {"apiVersion": "v1", "kind": "Event",
         "metadata": {"name": "pull-c.1", "namespace": "shop", "creationTimestamp": stamp(120)},
         "involvedObject": {"kind": "Pod", "name": "pull-c", "namespace": "shop", "apiVersion": "v1"},
         "reason": "Pulled", "message": "ok", "type": "Normal", "count": 1,
         "firstTimestamp": stamp(120), "lastTimestamp": stamp(120), "source": {"component": "kubelet"}},
    ],
    "deployments": [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "checkout", "namespace": "shop", "uid": "d1", "creationTimestamp": stamp(9000)},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "checkout"}}, "template": {}},
         "status": {"replicas": 2}},
    ],
    "horizontalpodautoscalers": [
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": {"name": "checkout", "namespace": "shop"},
         "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "checkout", "apiVersion": "apps/v1"},
                  "minReplicas": 2, "maxReplicas": 6,
                  "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                              {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}}]},
         "status": {"currentReplicas": 2, "desiredReplicas": 2,
                    "conditions": [{"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
                                    "message": "missing request for cpu"}]}},
    ],
    "storageclasses": [
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "standard"},
         "provisioner": "rancher.io/local-path"},
    ],
    "widgets": [
        {"apiVersion": "example.com/v1alpha1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "shop"}},
    ],
}

LOGS = [
    LogEntry(NOW - timedelta(seconds=200), {"namespace": "shop", "pod": "checkout-a"}, "starting", previous=True),
    LogEntry(NOW - timedelta(seconds=100), {"namespace": "shop", "pod": "checkout-a"}, "panic: boom", previous=True),
    LogEntry(NOW - timedelta(seconds=90), {"namespace": "shop", "pod": "checkout-b", "container": "checkout"}, "GET / 200"),
    LogEntry(NOW - timedelta(seconds=30), {"namespace": "shop", "pod": "checkout-b", "container": "checkout"}, "GET /x 500"),
    LogEntry(NOW + timedelta(days=1), {"namespace": "shop", "pod": "checkout-b", "container": "checkout"}, "later"),
    LogEntry(NOW - timedelta(seconds=30), {"namespace": "shop", "pod": "checkout-b", "container": "proxy"}, "proxy up"),
]


@pytest.fixture
async def kube() -> AsyncIterator[KubeWorld]:
    async with KubeWorld(WORLD, LOGS, namespace="shop") as world:
        yield world


@pytest.fixture
async def api(kube: KubeWorld) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=kube.kubeconfig_path, client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


async def test_lists_with_selectors_and_paging(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    pods = await core.list_namespaced_pod("shop", label_selector="app in (checkout,pull),tier!=db")
    assert [p.metadata.name for p in pods.items] == ["checkout-a", "checkout-b", "pull-c"]
    assert [p.metadata.name for p in (await core.list_namespaced_pod("shop", label_selector="!tier")).items] == [
        "pending-d", "pull-c"]
    pending = await core.list_pod_for_all_namespaces(field_selector="status.phase=Pending,spec.nodeName=")
    assert [p.metadata.name for p in pending.items] == ["pending-d"]
    warnings = await core.list_namespaced_event("shop", field_selector="involvedObject.name=checkout-a,type=Warning")
    assert [(e.reason, e.count) for e in warnings.items] == [("BackOff", 7)]

    first = await core.list_namespaced_pod("shop", limit=3)
    assert len(first.items) == 3 and first.metadata._continue and first.metadata.remaining_item_count == 1
    rest = await core.list_namespaced_pod("shop", limit=3, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["pull-c"] and not rest.metadata._continue


async def test_missing_things_answer_404_with_a_status_body(api: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    with pytest.raises(ApiException) as secret:
        await core.read_namespaced_secret("db-password", "shop")
    body = json.loads(secret.value.body)
    assert (secret.value.status, body["kind"], body["reason"]) == (404, "Status", "NotFound")
    assert body["message"] == 'secrets "db-password" not found'
    with pytest.raises(ApiException) as deployment:
        await apps.read_namespaced_deployment("orders", "shop")
    assert json.loads(deployment.value.body)["message"] == 'deployments.apps "orders" not found'
    assert (await core.list_namespaced_config_map("shop")).items == []  # a known kind the world has none of
    with pytest.raises(ApiException) as nodes:
        await core.list_node()  # the world does not describe its nodes
    assert nodes.value.status == 404
    with pytest.raises(ApiException) as unknown:
        await client.CustomObjectsApi(api).list_namespaced_custom_object("example.com", "v1", "shop", "gadgets")
    assert json.loads(unknown.value.body)["message"] == "the server could not find the requested resource"


async def test_cluster_scoped_kinds_namespaces_and_custom_resources(api: client.ApiClient) -> None:
    storage = client.StorageV1Api(api)
    assert [s.metadata.name for s in (await storage.list_storage_class()).items] == ["standard"]
    names = [n.metadata.name for n in (await client.CoreV1Api(api).list_namespace()).items]
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system", "shop"]
    widgets = await client.CustomObjectsApi(api).list_namespaced_custom_object("example.com", "v1alpha1", "shop", "widgets")
    assert [w["metadata"]["name"] for w in widgets["items"]] == ["w1"]
    groups = {g.name: [v.version for v in g.versions] for g in (await client.ApisApi(api).get_api_versions()).groups}
    assert groups["autoscaling"] == ["v2", "v1"] and groups["example.com"] == ["v1alpha1"]


async def test_events_v1_and_hpa_v1_are_converted_views(api: client.ApiClient) -> None:
    events = await client.EventsV1Api(api).list_namespaced_event("shop", field_selector="regarding.name=checkout-a")
    [event] = events.items
    assert (event.regarding.name, event.note, event.series.count) == ("checkout-a", "Back-off restarting failed container", 7)
    assert event.event_time == NOW - timedelta(seconds=60)
    hpa = await client.AutoscalingV1Api(api).read_namespaced_horizontal_pod_autoscaler("checkout", "shop")
    assert (hpa.spec.target_cpu_utilization_percentage, hpa.spec.max_replicas) == (70, 6)
    annotations = hpa.metadata.annotations
    assert json.loads(annotations["autoscaling.alpha.kubernetes.io/conditions"])[0]["reason"] == "FailedGetResourceMetric"
    assert json.loads(annotations["autoscaling.alpha.kubernetes.io/metrics"]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}}]


async def test_scale_is_read_and_patched_other_writes_are_forbidden(api: client.ApiClient, kube: KubeWorld) -> None:
    apps = client.AppsV1Api(api)
    scale = await apps.read_namespaced_deployment_scale("checkout", "shop")
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=checkout")
    await apps.patch_namespaced_deployment_scale("checkout", "shop", {"spec": {"replicas": 4}})
    await apps.patch_namespaced_deployment("checkout", "shop", {"spec": {"template": {"metadata": {"annotations": {"x": "y"}}}}})
    assert [(p.resource, p.body) for p in kube.patches] == [
        ("deployments/scale", {"spec": {"replicas": 4}}),
        ("deployments", {"spec": {"template": {"metadata": {"annotations": {"x": "y"}}}}}),
    ]
    assert (await apps.read_namespaced_deployment("checkout", "shop")).spec.replicas == 2  # recorded, not applied
    with pytest.raises(ApiException) as delete:
        await client.CoreV1Api(api).delete_namespaced_pod("checkout-a", "shop")
    assert delete.value.status == 403 and "cannot delete resource" in json.loads(delete.value.body)["message"]


async def test_pod_logs_follow_the_kubelets_rules(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    # crash-looping: the last run's output, also as --previous
    assert await core.read_namespaced_pod_log("checkout-a", "shop") == "starting\npanic: boom\n"
    assert await core.read_namespaced_pod_log("checkout-a", "shop", previous=True, tail_lines=1) == "panic: boom\n"
    # several containers: one must be named; the future is not served; no previous for a container that never restarted
    with pytest.raises(ApiException) as unnamed:
        await core.read_namespaced_pod_log("checkout-b", "shop")
    assert "choose one of: [checkout proxy]" in json.loads(unnamed.value.body)["message"]
    assert await core.read_namespaced_pod_log("checkout-b", "shop", container="checkout") == "GET / 200\nGET /x 500\n"
    since = int((datetime.now(UTC) - (NOW - timedelta(seconds=60))).total_seconds())  # NOW was when the module loaded
    assert await core.read_namespaced_pod_log("checkout-b", "shop", container="checkout", since_seconds=since) == "GET /x 500\n"
    stamped = await core.read_namespaced_pod_log("checkout-b", "shop", container="proxy", timestamps=True)
    assert stamped == (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000000000Z") + " proxy up\n"
    assert await core.read_namespaced_pod_log("checkout-b", "shop", container="checkout", limit_bytes=5) == "GET /"
    with pytest.raises(ApiException) as previous:
        await core.read_namespaced_pod_log("checkout-b", "shop", container="checkout", previous=True)
    assert json.loads(previous.value.body)["message"] == 'previous terminated container "checkout" in pod "checkout-b" not found'
    # waiting to start: refused
    with pytest.raises(ApiException) as waiting:
        await core.read_namespaced_pod_log("pull-c", "shop")
    assert waiting.value.status == 400
    assert json.loads(waiting.value.body)["message"] == (
        'container "pull" in pod "pull-c" is waiting to start: trying and failing to pull image')
