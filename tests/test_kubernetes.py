"""The Kubernetes tool against a fake API server, through the real kubernetes.aio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.aio.config import kube_config

from tests.fakes.kube import REVISION, KubeFake, load_shop_scenario
from tools.base import ErrorCode
from tools.kubernetes import RESTARTED_AT, Kubernetes

DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/shop/deployments/checkout"


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with KubeFake() as fake:
        yield fake


@pytest.fixture
def shop(kube: KubeFake) -> dict[str, Any]:
    return load_shop_scenario(kube)


@pytest.fixture
async def k8s(kube: KubeFake, shop: dict[str, Any]) -> AsyncIterator[Kubernetes]:
    tool = Kubernetes(kubeconfig=kube.kubeconfig_path, context=kube.context, backoff=0.01)
    yield tool
    await tool.aclose()


def _reads(kube: KubeFake) -> int:
    return sum(1 for method, _ in kube.requests if method == "GET")


async def test_bad_rollout_shows_revisions_crashing_pods_and_recent_warnings(k8s: Kubernetes) -> None:
    result = await k8s.deployment_status("shop", "checkout", window_seconds=900)

    assert result.ok, result.error_text
    report = result.data
    assert (report.desired, report.ready, report.updated, report.available) == (3, 0, 3, 0)
    assert {c.type: (c.status, c.reason) for c in report.conditions}["Available"] == (
        "False",
        "MinimumReplicasUnavailable",
    )
    assert (report.current.number, report.current.images) == (7, ["shop/checkout:v2.1.0"])
    assert (report.previous.number, report.previous.images) == (6, ["shop/checkout:v2.0.3"])
    age = datetime.now(UTC) - report.current.created_at
    assert timedelta(minutes=2) < age < timedelta(minutes=4)

    crashing = [p for p in report.pods if p.revision == 7]
    assert len(crashing) == 3
    for pod in crashing:
        assert (pod.ready, pod.terminating, pod.reason, pod.restarts) == (False, False, "CrashLoopBackOff", 4)
        last = pod.containers[0].last_termination
        assert (last.reason, last.exit_code) == ("Error", 1)
        assert last.finished_at is not None
    [old] = [p for p in report.pods if p.revision == 6]
    assert old.terminating and old.ready and old.replicaset == "checkout-5b8d7c6f4a"
    assert report.pods[0].ready is False  # troubled pods come first

    reasons = sorted(e.reason for e in report.events)
    assert reasons == ["BackOff", "BackOff", "BackOff", "Unhealthy"]  # no Normal events, nothing older than the window
    assert report.events[0].last_seen >= report.events[-1].last_seen
    assert {e.count for e in report.events if e.reason == "BackOff"} == {9}


async def test_events_of_pods_already_deleted_are_kept(k8s: Kubernetes, kube: KubeFake) -> None:
    def gone(name: str) -> dict[str, Any]:
        return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "shop", "uid": name}}

    kube.add_event(gone("checkout-7c9f8d6b5d-old01"), reason="OOMKilling", message="oom", last_seen=datetime.now(UTC))
    kube.add_event(gone("catalog-5d4c3b2a1f-zz9yy"), reason="OOMKilling", message="oom", last_seen=datetime.now(UTC))

    events = (await k8s.deployment_status("shop", "checkout")).data.events

    assert [(e.reason, e.object_name) for e in events if e.reason == "OOMKilling"] == [
        ("OOMKilling", "checkout-7c9f8d6b5d-old01")
    ]
    assert events[0].reason == "OOMKilling"  # newest first


async def test_ping_reports_the_server_version(k8s: Kubernetes) -> None:
    assert (await k8s.ping()).data == "Kubernetes v1.31.0-fake"


async def test_healthy_deployment(k8s: Kubernetes) -> None:
    report = (await k8s.deployment_status("shop", "catalog")).data

    assert (report.desired, report.ready, report.available, report.unavailable) == (2, 2, 2, 0)
    assert report.current.number == 3 and report.previous is None
    assert [p.ready for p in report.pods] == [True, True]
    assert report.events == [] and report.notes == []


async def test_identical_reads_share_one_backend_call_and_are_cached(k8s: Kubernetes, kube: KubeFake) -> None:
    first, second = await asyncio.gather(
        k8s.deployment_status("shop", "checkout"), k8s.deployment_status("shop", "checkout")
    )
    reads = _reads(kube)
    third = await k8s.deployment_status("shop", "checkout")

    assert first.ok and second.ok and third.ok
    assert reads == 4  # deployment, events, replicasets, pods: once
    assert _reads(kube) == reads and third.cached


async def test_forbidden_pod_list_names_the_missing_permission(k8s: Kubernetes) -> None:
    result = await k8s.deployment_status("payments", "ledger")

    assert result.error.code is ErrorCode.FORBIDDEN
    assert "cannot list pods in namespace payments (needs RBAC verb list on pods)" in result.error_text
    assert (
        'system:serviceaccount:srebot:srebot" cannot list resource "pods"' in result.error_text
    )  # the apiserver's words


async def test_forbidden_events_leave_the_rest_of_the_report(k8s: Kubernetes, kube: KubeFake) -> None:
    kube.forbid("list", "events", "shop")

    result = await k8s.deployment_status("shop", "checkout")

    assert result.ok and result.data.events == []
    assert (
        "events not checked: cannot list events in namespace shop (needs RBAC verb list on events)"
        in result.data.notes[0]
    )
    assert result.notes == result.data.notes


async def test_missing_deployment_says_what_was_not_found(k8s: Kubernetes, kube: KubeFake) -> None:
    result = await k8s.deployment_status("shop", "nope")

    assert result.error.code is ErrorCode.NOT_FOUND
    assert 'deployment shop/nope not found (deployments.apps "nope" not found)' in result.error_text
    assert kube.requests.count(("GET", "/apis/apps/v1/namespaces/shop/deployments/nope")) == 1  # not retried


async def test_server_errors_on_reads_are_retried(k8s: Kubernetes, kube: KubeFake) -> None:
    kube.fail("GET", DEPLOYMENT_PATH, 500, times=2)

    result = await k8s.deployment_status("shop", "checkout")

    assert result.ok
    assert kube.requests.count(("GET", DEPLOYMENT_PATH)) == 3


async def test_previous_logs_are_tailed_and_redacted(k8s: Kubernetes, shop: dict[str, Any]) -> None:
    pod = shop["new_pods"][0]["metadata"]["name"]

    full = await k8s.pod_logs("shop", pod, previous=True)
    tail = await k8s.pod_logs("shop", pod, previous=True, tail_lines=3)
    current = await k8s.pod_logs("shop", pod)

    assert "panic: nil pointer dereference" in full.data
    assert "s3cr3t-pw" not in full.data and "[REDACTED]" in full.data
    assert tail.data.splitlines() == ["goroutine 1 [running]:", "main.main()", "\t/app/main.go:42 +0x1d"]
    assert current.data == "2024-05-01T10:01:00Z INFO starting checkout v2.1.0\n"


async def test_long_logs_are_bounded_with_a_note(kube: KubeFake, shop: dict[str, Any]) -> None:
    pod = shop["new_pods"][1]["metadata"]["name"]
    kube.set_logs("shop", pod, "".join(f"line {i}\n" for i in range(500)))
    tool = Kubernetes(kubeconfig=kube.kubeconfig_path, max_log_chars=100)
    try:
        text = (await tool.pod_logs("shop", pod, tail_lines=500)).data
    finally:
        await tool.aclose()

    first, *kept = text.splitlines()
    assert "kept the last 100 of" in first
    assert kept[-1] == "line 499"


async def test_list_deployments(k8s: Kubernetes) -> None:
    everywhere = (await k8s.list_deployments()).data
    shop = (await k8s.list_deployments("shop")).data

    assert sorted((d.namespace, d.name) for d in everywhere) == [
        ("payments", "ledger"),
        ("shop", "catalog"),
        ("shop", "checkout"),
    ]
    assert {d.name: d.labels.get("service") for d in shop} == {"checkout": "checkout", "catalog": "catalog"}


async def test_restart_patches_the_restarted_at_annotation(k8s: Kubernetes, kube: KubeFake) -> None:
    at = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)

    result = await k8s.restart("shop", "checkout", at)

    assert result.ok and result.data.restarted_at == at
    [patch] = kube.patches
    assert (patch.resource, patch.content_type) == ("deployments", "application/strategic-merge-patch+json")
    assert patch.body == {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2024-05-01T10:30:00Z"}}}}}
    template = kube.deployments[("shop", "checkout")]["spec"]["template"]
    assert template["metadata"]["annotations"][RESTARTED_AT] == "2024-05-01T10:30:00Z"


async def test_scale_describes_then_patches_the_scale_subresource(k8s: Kubernetes, kube: KubeFake) -> None:
    preview = await k8s.describe_scale("shop", "checkout", 5)
    assert kube.patches == []

    done = await k8s.scale("shop", "checkout", 5)
    again = await k8s.scale("shop", "checkout", 5)

    assert (preview.data.from_replicas, preview.data.to_replicas) == (3, 5)
    assert (done.data.from_replicas, done.data.to_replicas) == (3, 5)
    assert (again.data.from_replicas, again.cached) == (5, False)  # writes are never cached
    patch = kube.patches[0]
    assert (patch.path, patch.content_type, patch.body) == (
        f"{DEPLOYMENT_PATH}/scale",
        "application/merge-patch+json",
        {"spec": {"replicas": 5}},
    )
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 5


async def test_rollback_restores_the_previous_template(k8s: Kubernetes, kube: KubeFake, shop: dict[str, Any]) -> None:
    preview = await k8s.describe_rollback("shop", "checkout")
    done = await k8s.rollback("shop", "checkout")

    for plan in (preview.data, done.data):
        assert (plan.from_revision, plan.from_images) == (7, ["shop/checkout:v2.1.0"])
        assert (plan.to_revision, plan.to_images) == (6, ["shop/checkout:v2.0.3"])
    [patch] = kube.patches
    assert patch.content_type == "application/json-patch+json"
    test_op, replace_op = patch.body
    assert test_op == {"op": "test", "path": "/metadata/annotations/deployment.kubernetes.io~1revision", "value": "7"}
    assert replace_op["op"] == "replace" and replace_op["path"] == "/spec/template"
    expected = shop["old_rs"]["spec"]["template"]
    restored = replace_op["value"]
    assert restored["spec"] == expected["spec"]  # image v2.0.3 and its env, not just the image
    assert restored["metadata"]["labels"] == {"app": "checkout"}  # without pod-template-hash
    live = kube.deployments[("shop", "checkout")]["spec"]["template"]
    assert live["spec"]["containers"][0]["image"] == "shop/checkout:v2.0.3"


async def test_rollback_refuses_when_there_is_no_previous_revision(k8s: Kubernetes, kube: KubeFake) -> None:
    result = await k8s.rollback("shop", "catalog")

    assert result.error.code is ErrorCode.NOT_FOUND
    assert "shop/catalog has no previous revision" in result.error_text
    assert kube.patches == []


async def test_rollback_fails_when_a_new_rollout_landed_in_between(k8s: Kubernetes, kube: KubeFake) -> None:
    def new_rollout() -> None:
        kube.deployments[("shop", "checkout")]["metadata"]["annotations"][REVISION] = "8"

    kube.before("PATCH", DEPLOYMENT_PATH, new_rollout)

    result = await k8s.rollback("shop", "checkout")

    assert result.error.code is ErrorCode.BAD_QUERY
    assert "testing value /metadata/annotations/deployment.kubernetes.io~1revision failed" in result.error_text
    assert (
        kube.deployments[("shop", "checkout")]["spec"]["template"]["spec"]["containers"][0]["image"]
        == "shop/checkout:v2.1.0"
    )


async def test_writes_are_not_retried(k8s: Kubernetes, kube: KubeFake) -> None:
    kube.fail("PATCH", f"{DEPLOYMENT_PATH}/scale", 503)

    result = await k8s.scale("shop", "checkout", 4)

    assert result.error.code is ErrorCode.BACKEND_ERROR
    assert kube.requests.count(("PATCH", f"{DEPLOYMENT_PATH}/scale")) == 1
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 3


async def test_forbidden_write_names_the_approval_role_permission(k8s: Kubernetes, kube: KubeFake) -> None:
    kube.forbid("patch", "deployments/scale", "shop")

    result = await k8s.scale("shop", "checkout", 4)

    assert result.error.code is ErrorCode.FORBIDDEN
    assert (
        "cannot patch deployments/scale in namespace shop (needs RBAC verb patch on deployments/scale)"
        in result.error_text
    )


async def test_disabled_and_unloadable_configurations(tmp_path) -> None:
    disabled = await Kubernetes(enabled=False).deployment_status("shop", "checkout")
    disabled_write = await Kubernetes(enabled=False).scale("shop", "checkout", 2)
    missing = Kubernetes(kubeconfig=str(tmp_path / "nope"), in_cluster=False)
    broken = await missing.list_deployments()

    assert disabled.error.code is disabled_write.error.code is ErrorCode.NOT_CONFIGURED
    assert broken.error.code is ErrorCode.NOT_CONFIGURED and str(tmp_path / "nope") in broken.error_text
    await missing.aclose()


async def test_auto_mode_uses_the_default_kubeconfig_else_the_cluster(
    kube: KubeFake, shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", kube.kubeconfig_path)
    found = Kubernetes()
    try:
        listed = await found.list_deployments("shop")
    finally:
        await found.aclose()
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "absent"))

    nowhere = await Kubernetes().list_deployments("shop")

    assert listed.ok and len(listed.data) == 2
    assert nowhere.error.code is ErrorCode.NOT_CONFIGURED
    assert "no usable kubeconfig" in nowhere.error_text and "not running in a cluster" in nowhere.error_text


async def test_unreachable_cluster(kube: KubeFake) -> None:
    tool = Kubernetes(kubeconfig=kube.kubeconfig_path, attempts=1)
    assert (await tool.list_deployments()).ok
    await kube.stop()
    try:
        result = await tool.deployment_status("shop", "checkout")
    finally:
        await tool.aclose()

    assert result.error.code is ErrorCode.UNREACHABLE


async def test_snapshot_reads_the_workload_of_whatever_kind_and_says_what_the_cluster_does_not_describe(
    k8s: Kubernetes, kube: KubeFake
) -> None:
    result = await k8s.snapshot("shop", "checkout")

    assert result.ok, result.error_text
    snap = result.data
    assert snap.kind == "Deployment" and snap.workload["metadata"]["name"] == "checkout"
    assert {rs["metadata"]["annotations"][REVISION] for rs in snap.replicasets} == {"6", "7"}
    assert {p["metadata"]["name"] for p in snap.pods} >= {"checkout-7c9f8d6b5d-x2k9p"} and all("status" in p for p in snap.pods)
    assert any(e["reason"] == "BackOff" for e in snap.events)
    # this fake serves no nodes: "not described", which is not "none"
    assert snap.objects["nodes"] is None and not snap.described("nodes")
    assert "nodes not described by the API server" in snap.notes
    secrets = [(method, path) for method, path in kube.requests if "/secrets" in path]
    assert secrets and all(method == "GET" for method, _ in secrets)


async def test_snapshot_of_a_name_no_workload_has_is_empty_not_an_error(k8s: Kubernetes) -> None:
    result = await k8s.snapshot("shop", "typescript-transpiler")

    assert result.ok, result.error_text
    assert result.data.kind is None and result.data.workload is None and result.data.pods == []


async def test_the_deployment_report_of_a_snapshot_is_the_one_read_directly(k8s: Kubernetes) -> None:
    snap = (await k8s.snapshot("shop", "checkout")).data
    direct = (await k8s.deployment_status("shop", "checkout", window_seconds=900)).data

    derived = k8s.deployment_report(snap, window_seconds=900)
    assert derived is not None
    assert (derived.desired, derived.ready, derived.current, derived.previous) == (
        direct.desired, direct.ready, direct.current, direct.previous)
    assert [p.name for p in derived.pods] == [p.name for p in direct.pods]
    assert [(e.reason, e.object_name) for e in derived.events] == [(e.reason, e.object_name) for e in direct.events]


async def test_a_snapshot_of_something_that_is_no_kubernetes_name_is_refused_before_any_request(
    k8s: Kubernetes, kube: KubeFake
) -> None:
    before = len(kube.requests)
    result = await k8s.snapshot("shop/../..", "nodes")
    assert not result.ok and result.error.code is ErrorCode.BAD_QUERY
    assert "is not a Kubernetes name" in result.error.message
    assert len(kube.requests) == before
