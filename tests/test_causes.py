"""The failure catalogue on API objects as the server returns them: the shared scenario worlds, and small worlds
for the families they do not cover. Each test says what a user would be told."""
from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.engine import causes
from bot.engine.causes.base import World
from bot.engine.findings import Evidence, world_of
from bot.engine.reasoning import diagnose
from tests.worlds import SHARED, load
from tools.kubernetes import Snapshot
from tools.metrics import QueryResult, Sample, Series

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
README = Path(__file__).resolve().parents[1] / "README.md"


def at(seconds: int) -> str:
    return (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_module_of_the_package_is_a_rule_and_the_readme_lists_it() -> None:
    modules = {m.name for m in pkgutil.iter_modules(causes.__path__)} - {"base"}
    declared = {name for name in modules if isinstance(getattr(importlib.import_module(f"bot.engine.causes.{name}"),
                                                               "RULE", None), causes.Rule)}
    assert declared == modules
    readme = README.read_text()
    for rule in causes.CATALOGUE:
        assert f"| `{rule.family}` | {rule.describe} |" in readme


# --- the shared worlds: which family leads, and what it must not do ------------------------------------
LEADS = {
    "dev-holmes-ask-12-job-crashing": "job",
    "dev-holmes-ask-13a-pending-node-selector": "scheduling",
    "dev-holmes-ask-15-failed-readiness-probe": "readiness",
    "dev-holmes-ask-21-job-fail-no-service-account": "job",
    "dev-holmes-ask-22-high-latency-db-down": "dependency",
    "dev-holmes-ask-23-app-error-in-current-logs": "dns",
    "dev-holmes-ask-24a-misconfigured-pvc": "storage",
    "dev-holmes-ask-46-job-no-longer-exists": "job",
    "dev-holmes-investigate-04-image-pull-backoff": "image_pull",
    "dev-holmes-investigate-06-job-failure": "job",
    "dev-holmes-investigate-07-job-syntax-error": "job",
    "dev-holmes-investigate-15-dns-resolution": "network_policy",
}


@pytest.mark.skipif(not SHARED.exists(), reason="the shared scenario corpus is not on this machine")
@pytest.mark.parametrize("world", sorted(LEADS))
def test_shared_worlds_lead_with_their_cause_and_never_propose_a_restart(world: str) -> None:
    _, ev = load(SHARED / world)
    d = diagnose(ev)

    assert d.cause is not None and d.cause.key == LEADS[world], (d.cause, d.findings[:3])
    assert not any(p.action and p.action.kind == "restart" for p in d.plans)


def test_the_job_that_fails_on_its_database_names_host_port_and_rules_out_the_service_account() -> None:
    _, ev = load(SHARED / "dev-holmes-ask-21-job-fail-no-service-account")
    d = diagnose(ev)
    assert "kldsvklnsdiogjerkngernjk23432i90erfefjio.com" in " ".join(d.cause.clauses)
    assert any("service account get-data-service-account" in r.why and "now exists" in r.why for r in d.ruled_out)


def test_a_node_named_by_an_alert_is_described_at_its_pod_capacity_without_memory_pressure() -> None:
    _, ev = load(SHARED / "dev-holmes-investigate-08-too-many-pods")
    verdicts = [v for v in causes.detect(world_of(ev)) if v.family == "node"]
    assert verdicts and "17/17 pods" in verdicts[0].title
    assert ("Memory pressure", "MemoryPressure False on ip-172-31-40-111.us-east-2.compute.internal") in verdicts[0].ruled_out


# --- small worlds ---------------------------------------------------------------------------------------
def pod(name: str, *, containers: list[dict[str, Any]] | None = None, status: list[dict[str, Any]] | None = None,
        init: list[dict[str, Any]] | None = None, ready: bool = False, phase: str = "Running",
        node: str = "node-a", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": labels or {"app": "web"}},
        "spec": {"nodeName": node, "containers": containers or [{"name": "web", "image": "shop/web:1"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}],
                   "containerStatuses": status or [], "initContainerStatuses": init or []},
    }


def event(reason: str, message: str, kind: str = "Pod", name: str = "web-1", count: int = 1,
          seconds: int = -60, field: str = "") -> dict[str, Any]:
    return {"reason": reason, "message": message, "count": count, "lastTimestamp": at(seconds), "type": "Warning",
            "involvedObject": {"kind": kind, "name": name, "fieldPath": field}}


def world(pods: list[dict[str, Any]], events: list[dict[str, Any]] = (), **objects: Any) -> World:  # type: ignore[assignment]
    workload = {"metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"spec": pods[0]["spec"]}}}
    snap = Snapshot("shop", "web", "StatefulSet", workload, pods=pods, events=list(events))
    snap.objects = {k: objects.get(k, []) for k in ("nodes", "persistentvolumeclaims", "storageclasses",
                                                     "horizontalpodautoscalers", "services", "networkpolicies")}
    snap.secret_names = set(objects.get("secrets", []))
    return World(service="web", namespace="shop", now=NOW, window_seconds=900, snap=snap)


def lead(w: World) -> causes.Verdict:
    current = [v for v in causes.detect(w) if v.current]
    return min(current, key=lambda v: (["critical", "warning", "info"].index(v.severity), causes.RANK[v.family]))


def test_a_liveness_probe_on_the_wrong_port_is_named_not_a_crash_and_the_fix_is_the_probe() -> None:
    container = {"name": "web", "image": "shop/web:1", "ports": [{"containerPort": 8080}],
                 "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8081}}}
    status = [{"name": "web", "restartCount": 4, "ready": False, "state": {"running": {}},
               "lastState": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    w = world([pod("web-1", containers=[container], status=status)], [
        event("Unhealthy", "Liveness probe failed: Get \"http://10.0.0.1:8081/healthz\": connection refused", count=12),
        event("Killing", "Container web failed liveness probe, will be restarted", count=4)])
    verdict = lead(w)
    assert verdict.family == "liveness"
    assert "port 8081" in verdict.cause and "8080" in verdict.cause
    assert "point it at port 8080" in verdict.plans[0].title and verdict.plans[0].action is None


def test_a_liveness_probe_that_times_out_during_gc_pauses_is_said_so_and_the_fix_is_its_timeout() -> None:
    from tools.logs import LogLine
    container = {"name": "web", "image": "shop/web:1", "ports": [{"containerPort": 8080}],
                 "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "timeoutSeconds": 1}}
    status = [{"name": "web", "restartCount": 5, "ready": True, "state": {"running": {}},
               "lastState": {"terminated": {"exitCode": 143, "reason": "Error"}}}]
    w = world([pod("web-1", containers=[container], status=status, ready=True)], [
        event("Unhealthy", 'Liveness probe failed: Get "http://10.0.0.1:8080/health": context deadline exceeded '
                           "(Client.Timeout exceeded while awaiting headers)", count=20),
        event("Killing", "Container web failed liveness probe, will be restarted", count=5)])
    w.tail = [LogLine(NOW, f"[gc] GC(80) Pause {line}", {"pod": "web-1"}, "info") for line in (
        "Full (G1 Compaction Pause) 3921M->3874M(4096M) 2700.4ms",
        "Young (Normal) (G1 Evacuation Pause) 900M->850M(4096M) 40ms")]
    verdict = lead(w)
    assert verdict.family == "liveness"
    assert "GC pauses" in verdict.title and "2.7 s" in verdict.title and "1 s timeoutSeconds" in verdict.title
    assert "exit 143 (SIGTERM)" in verdict.title
    assert ("OOM", "not an OOM kill: the kubelet stopped it for a failed liveness probe (exit 143 (SIGTERM)), not "
                   "OOMKilled") in verdict.ruled_out
    assert verdict.plans[0].title.startswith("Raise the liveness probe's timeoutSeconds to 6")
    # the pause is the process stopping, not a slow downstream call
    assert not [v for v in causes.detect(w) if v.family == "slow_calls"]


def test_a_load_balancer_that_never_appears_quotes_the_cloud_and_says_tag_the_subnets_while_the_pods_serve() -> None:
    service = {"metadata": {"name": "web", "namespace": "shop", "creationTimestamp": at(-2400)},
               "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 443}]},
               "status": {"loadBalancer": {}}}
    failed = event("SyncLoadBalancerFailed", "Error syncing load balancer: failed to ensure load balancer: could not "
                   "find any suitable subnets for creating the ELB", kind="Service", name="web", count=14)
    pods = [pod(f"web-{i}", ready=True, status=[{"name": "web", "restartCount": 0, "ready": True}]) for i in (1, 2)]
    w = world(pods, [failed], services=[service])
    verdict = lead(w)
    assert verdict.family == "load_balancer" and verdict.severity == "warning"
    assert "not provisioned for 40 min" in verdict.title
    assert any("could not find any suitable subnets" in e for e in verdict.evidence)
    assert verdict.plans[0].title.startswith("Tag the subnets") and "kubernetes.io/role/elb=1" in verdict.plans[0].title
    assert verdict.ruled_out[0][0] == "The pods (2/2 running and ready)"
    # once the cloud gives it an address there is nothing to say
    service["status"] = {"loadBalancer": {"ingress": [{"hostname": "a1.elb.example.com"}]}}
    assert not [v for v in causes.detect(w) if v.family == "load_balancer"]


def test_a_load_balancer_pending_with_no_event_points_at_the_missing_controller() -> None:
    service = {"metadata": {"name": "web", "namespace": "shop", "creationTimestamp": at(-1200)},
               "spec": {"type": "LoadBalancer", "selector": {"app": "web"}}, "status": {"loadBalancer": {}}}
    verdict = next(v for v in causes.detect(world([pod("web-1", ready=True)], services=[service]))
                   if v.family == "load_balancer")
    assert "a load-balancer controller runs" in verdict.plans[0].title and "MetalLB" in verdict.plans[0].title


def stuck_pod(*finalizers: str) -> dict[str, Any]:
    """A bare pod deleted 45 minutes ago whose container has exited."""
    stuck = pod("export-7", phase="Succeeded",
                status=[{"name": "web", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}])
    stuck["metadata"] |= {"deletionTimestamp": at(-2700), "finalizers": list(finalizers)}
    return stuck


def test_a_pod_stuck_terminating_names_its_finalizer_and_the_controller_scaled_to_zero_not_an_old_replicaset() -> None:
    stuck = stuck_pod("backup.example.com/snapshot-protection")
    guard = {"metadata": {"name": "snapshot-guard", "namespace": "backup-system"}, "spec": {"replicas": 0},
             "status": {}}
    other = {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 2}}
    w = world([stuck])
    w.snap.workload, w.snap.kind = stuck, "Pod"
    w.snap.objects["all_deployments"] = [other, guard]
    verdicts = causes.detect(w)
    assert [v.family for v in verdicts] == ["finalizers"]  # never "a pod of the old ReplicaSet"
    verdict = verdicts[0]
    assert "stuck in Terminating for 45 min" in verdict.title
    assert "backup.example.com/snapshot-protection" in verdict.title
    assert "snapshot-guard (backup-system) was scaled to 0 replicas, so nothing removes it" in verdict.cause
    assert verdict.plans[0].title.startswith("Scale snapshot-guard back up")
    assert "remove the finalizer by patch" in verdict.plans[0].title
    assert any("no ownerReferences" in e for e in verdict.evidence)
    # the audit log, read back for that controller, says who stopped it and why
    from tools.control_plane import AuditLog
    scaled = {"replicas": {"from": 1, "to": 0}, "reason": {"from": None, "to": "cost cleanup"}}
    w.dependency_audit = [AuditLog(id="a-9", timestamp=NOW - timedelta(days=3), username="tom", action="scale",
                                   resource_name="snapshot-guard", changes=scaled)]
    verdict = next(v for v in causes.detect(w) if v.family == "finalizers")
    assert "was scaled to 0 replicas by tom at 2026-11-30 12:00 UTC (3 days ago: “cost cleanup”)" in verdict.cause


def test_a_built_in_finalizer_says_which_kubernetes_controller_removes_it_and_what_it_waits_for() -> None:
    w = world([stuck_pod("foregroundDeletion")])
    verdict = next(v for v in causes.detect(w) if v.family == "finalizers")
    assert "the garbage collector removes once every dependent with blockOwnerDeletion is deleted" in verdict.cause


def test_a_missing_secret_volume_on_every_replica_is_created_not_restarted() -> None:
    pods = [pod(f"web-{i}", phase="Pending") for i in range(7)]
    events = [event("FailedMount", 'MountVolume.SetUp failed for volume "creds" : secret "db-creds" not found',
                    name=f"web-{i}", count=5) for i in range(7)]
    verdict = lead(world(pods, events, secrets=["other"]))
    assert verdict.family == "container_config" and verdict.severity == "critical"
    assert "Secret db-creds does not exist" in verdict.title and "7 of 7 pods" in verdict.title
    assert "Create Secret db-creds" in verdict.plans[0].title and "cannot help" in verdict.plans[0].title


def test_an_init_container_that_cannot_exec_is_not_called_a_crash_of_the_main_container() -> None:
    init = [{"name": "fetch", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 127, "reason": "Error",
                                          "message": 'exec: "wge": executable file not found in $PATH'}}}]
    status = [{"name": "web", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
    verdict = lead(world([pod("web-1", init=init, status=status, phase="Pending")]))
    assert verdict.family == "init_container"
    assert 'exec: "wge": executable file not found' in verdict.cause and "127" in verdict.cause


def test_a_pod_asking_for_more_gpus_than_any_node_has_says_how_many() -> None:
    container = {"name": "train", "image": "ml/train:1", "resources": {"limits": {"nvidia.com/gpu": "5"}}}
    p = pod("web-1", containers=[container], phase="Pending", node=None)  # type: ignore[arg-type]
    nodes = [{"metadata": {"name": "gpu-1", "labels": {}}, "status": {"allocatable": {"nvidia.com/gpu": "4"}}}]
    verdict = lead(world([p], [event("FailedScheduling", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")],
                         nodes=nodes))
    assert verdict.family == "scheduling"
    assert "requests 5 nvidia.com/gpu" in verdict.title and "gpu-1 4" in verdict.title


def test_a_node_that_stopped_posting_status_takes_its_pods_down_and_the_others_are_fine() -> None:
    unknown = {"metadata": {"name": "node-a"}, "status": {"conditions": [
        {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
         "message": "Kubelet stopped posting node status.", "lastTransitionTime": at(-300)}]}}
    fine = {"metadata": {"name": "node-b"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    status = [{"name": "web", "restartCount": 0, "ready": False, "state": {"running": {}}}]
    verdict = lead(world([pod("web-1", status=status)], nodes=[unknown, fine]))
    assert verdict.family == "node" and "Unknown" in verdict.title and "node-b" in verdict.title
    assert "restarting the workload cannot help" in verdict.plans[0].title


def test_an_hpa_without_a_cpu_request_says_so() -> None:
    hpa = {"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"name": "web"}, "minReplicas": 1, "maxReplicas": 5},
           "status": {"currentReplicas": 1, "conditions": [
               {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
                "message": "the HPA was unable to compute the replica count: failed to get cpu utilization: "
                           "missing request for cpu in container web of Pod web-1"}]}}
    verdicts = [v for v in causes.detect(world([pod("web-1", ready=True)], horizontalpodautoscalers=[hpa]))
                if v.family == "hpa"]
    assert verdicts and "no cpu request" in verdicts[0].cause
    assert verdicts[0].plans[0].title.startswith("Set resources.requests.cpu")


def test_a_pvc_whose_storage_class_does_not_exist_is_the_root_of_the_pending_pod() -> None:
    p = pod("web-1", phase="Pending", node=None)  # type: ignore[arg-type]
    p["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    claim = {"metadata": {"name": "data"}, "spec": {"storageClassName": "fast"}, "status": {"phase": "Pending"}}
    w = world([p], [event("FailedScheduling", "0/2 nodes are available: pod has unbound immediate "
                                              "PersistentVolumeClaims."),
                    event("ProvisioningFailed", 'storageclass.storage.k8s.io "fast" not found',
                          kind="PersistentVolumeClaim", name="data")],
              persistentvolumeclaims=[claim], storageclasses=[{"metadata": {"name": "standard"}}])
    verdict = lead(w)
    assert verdict.family == "storage" and "StorageClass fast does not exist" in verdict.cause
    assert "standard" in verdict.cause


def test_a_crash_an_hour_ago_that_did_not_repeat_is_history_not_a_current_critical() -> None:
    status = [{"name": "web", "restartCount": 1, "ready": True, "state": {"running": {}},
               "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": at(-3600)}}}]
    ev = Evidence(service="web", namespace="shop", deployment="web", now=NOW, window="15m", window_seconds=900,
                  snapshot=world([pod("web-1", status=status, ready=True)]).snap, checked=["kubernetes"])
    d = diagnose(ev)
    assert d.cause is None and d.healthy
    assert not any(f.severity == "critical" for f in d.findings) and not [p for p in d.plans if p.action]
    assert any("did not repeat" in text for text in d.history)


def test_a_network_policy_that_admits_only_backend_pods_is_why_the_frontend_cannot_reach_the_api() -> None:
    p = pod("web-1", ready=True, labels={"app": "web", "tier": "frontend"})
    w = world([p], services=[{"metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}}}],
              networkpolicies=[{"metadata": {"name": "api-ingress"}, "spec": {
                  "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "backend"}}}]}]}}])
    w.pod_logs = {"web-1/web": "ERROR request to api:8080 timed out after 5000ms"}
    verdict = lead(w)
    assert verdict.family == "network_policy" and "api-ingress" in verdict.cause
    assert "only from pods labelled tier=backend" in verdict.cause and "tier=frontend" in verdict.cause


def test_an_alert_about_a_pod_of_the_old_replicaset_is_explained_as_a_rollout_leftover_not_a_fault() -> None:
    from tools.control_plane import Alert

    current = {"metadata": {"name": "web-new", "uid": "rs-new", "annotations": {"deployment.kubernetes.io/revision": "2"},
                            "creationTimestamp": at(-600)}}
    old = {"metadata": {"name": "web-old", "uid": "rs-old", "annotations": {"deployment.kubernetes.io/revision": "1"},
                        "creationTimestamp": at(-86400)}}
    fresh = pod("web-new-abcde", ready=True, status=[{"name": "web", "restartCount": 0, "ready": True,
                                                      "state": {"running": {}}}])
    fresh["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "web-new", "uid": "rs-new"}]
    leaving = pod("web-old-fghij", status=[{"name": "web", "restartCount": 7, "state": {
        "waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                                                   "finishedAt": at(-30)}}}])
    leaving["metadata"] |= {"ownerReferences": [{"kind": "ReplicaSet", "name": "web-old", "uid": "rs-old"}],
                            "deletionTimestamp": at(-20)}
    snap = world([fresh, leaving]).snap
    snap.kind, snap.replicasets = "Deployment", [current, old]
    snap.workload["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    alert = Alert(id="a1", name="KubePodCrashLooping", severity="P1", status="firing", resource_name="web-old-fghij",
                  message="Pod shop/web-old-fghij is crash looping")
    ev = Evidence(service="web", namespace="shop", deployment="web", now=NOW, window="15m", window_seconds=900,
                  snapshot=snap, alerts=[alert], checked=["kubernetes"])
    d = diagnose(ev)
    assert d.cause is None and not any(f.severity == "critical" for f in d.findings)
    assert any("old ReplicaSet web-old" in h and "being terminated" in h for h in d.history)


def test_a_called_service_whose_selector_matches_no_pod_is_named_with_the_labels_that_exist() -> None:
    caller = pod("web-1", ready=True)
    backend = pod("backend-1", ready=True, labels={"app": "backend-app"})
    w = world([caller], services=[{"metadata": {"name": "backend"}, "spec": {"selector": {"app": "backend"}}}])
    w.snap.objects["pods"] = [caller, backend]
    w.snap.objects["endpointslices"] = []
    w.pod_logs = {"web-1/web": "Connection to backend failed!"}
    verdict = lead(w)
    assert verdict.family == "service_endpoints"
    assert "selector app=backend matches no pod" in verdict.cause and "app=backend-app" in verdict.cause


def test_a_redis_address_in_a_go_error_is_the_redis_dependency() -> None:
    w = world([pod("web-1", ready=True)])
    w.pod_logs = {"web-1/web": "ERROR GET /v1/session 500: redis: dial tcp 10.96.11.7:6379: connect: connection refused"}
    verdict = lead(w)
    assert verdict.family == "dependency" and "redis:6379" in verdict.cause and "refuses connections" in verdict.cause


def test_a_heap_that_grows_reading_after_reading_is_called_a_leak_and_restarting_only_delays_it() -> None:
    w = world([pod("web-1", ready=True)])
    w.pod_logs = {"web-1/web": "\n".join(f"INFO cache size={n * 1000} heap used {100 + 40 * n} MB" for n in range(6))}
    verdict = next(v for v in causes.detect(w) if v.family == "memory_leak")
    assert "100 → 300 MiB" in verdict.cause and "only delays the OOM kill" in verdict.plans[0].title


def test_dns_lookups_that_time_out_with_coredns_down_blame_the_cluster_dns() -> None:
    w = world([pod("web-1", ready=True)])
    w.snap.dns = [{"metadata": {"name": "coredns"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 0}}]
    w.pod_logs = {"web-1/web": "send failed: dial tcp: lookup smtp.mail.svc.cluster.local on 10.96.0.10:53: read udp "
                                "10.1.2.3:4567->10.96.0.10:53: i/o timeout"}
    verdict = lead(w)
    assert verdict.family == "dns" and "cluster DNS is down (coredns 0/2 ready" in verdict.cause
    assert verdict.plans[0].title.startswith("Bring the cluster DNS")


def claimed_pod() -> dict[str, Any]:
    p = pod("web-1", ready=True)
    p["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}]
    return p


def volume_usage(ratio: float) -> QueryResult:
    return QueryResult("volume usage", "vector", [Series({"persistentvolumeclaim": "data-web-1"},
                                                         [Sample(NOW, ratio)])])


def test_a_volume_that_cannot_grow_says_so_and_the_fix_is_room_not_a_restart() -> None:
    claim = {"metadata": {"name": "data-web-1"}, "spec": {"storageClassName": "standard"},
             "status": {"phase": "Bound", "capacity": {"storage": "5Gi"}}}
    w = world([claimed_pod()], persistentvolumeclaims=[claim],
              storageclasses=[{"metadata": {"name": "standard"}, "allowVolumeExpansion": False}])
    w.pod_logs = {"web-1/web": "ERROR write /data/segment-0042: no space left on device"}
    w.metrics = {"volume_usage": volume_usage(0.999)}
    verdict = lead(w)
    assert verdict.family == "disk_full" and verdict.severity == "critical"
    assert "data-web-1 (100% used)" in verdict.cause
    assert "StorageClass standard does not allow expansion" in verdict.plans[0].title
    assert "a restart comes back to the same full volume" in verdict.plans[0].title


def test_a_volume_filling_up_without_failed_writes_is_a_warning_and_a_roomy_one_is_nothing() -> None:
    w = world([claimed_pod()])
    w.metrics = {"volume_usage": volume_usage(0.88)}
    verdict = next(v for v in causes.detect(w) if v.family == "disk_full")
    assert verdict.severity == "warning" and verdict.title == "Volume data-web-1 is 88% full"
    w.metrics = {"volume_usage": volume_usage(0.5)}
    assert not [v for v in causes.detect(w) if v.family == "disk_full"]


def test_an_expired_partner_certificate_says_whose_and_since_when_and_no_restart_can_help() -> None:
    w = world([pod("web-1", ready=True)])
    w.pod_logs = {"web-1/web": "\n".join([
        'ERROR charge failed: Post "https://api.partner.example/v1/charges": tls: failed to verify certificate: '
        f"x509: certificate has expired or is not yet valid: current time {at(-60)} is after {at(-1500)}",
        "WARN POST /v1/charge 502 upstream unavailable"])}
    verdict = lead(w)
    assert verdict.family == "tls_certificate"
    assert "api.partner.example" in verdict.cause and "expired at 11:35 UTC (25 min ago)" in verdict.cause
    assert "is not ours" in verdict.plans[0].title and "cannot help" in verdict.plans[0].title
    # "upstream unavailable" names no dependency called "unavailable"
    assert not any(v.family == "dependency" and "unavailable" in v.cause for v in causes.detect(w))


def test_a_certificate_of_one_of_our_services_signed_by_an_unknown_ca_is_ours_to_fix() -> None:
    w = world([pod("web-1", ready=True)], services=[{"metadata": {"name": "ledger"}, "spec": {}}])
    w.pod_logs = {"web-1/web": 'Get "https://ledger.shop.svc:8443/v1": x509: certificate signed by unknown authority'}
    verdict = lead(w)
    assert verdict.family == "tls_certificate" and "signed by an authority the caller does not trust" in verdict.cause
    assert "trust the CA" in verdict.plans[0].title


def test_a_readiness_probe_that_checks_a_slow_dependency_empties_the_service() -> None:
    probe = {"httpGet": {"path": "/health/ready", "port": 8080}}
    pods = [pod(f"web-{i}", containers=[{"name": "web", "image": "shop/web:1", "readinessProbe": probe}])
            for i in range(2)]
    events = [event("Unhealthy", 'Readiness probe failed: Get "http://10.0.0.1:8080/health/ready": context deadline '
                                 "exceeded", name=p["metadata"]["name"], count=40) for p in pods]
    w = world(pods, events, services=[{"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}},
                                      {"metadata": {"name": "cache"}, "spec": {"selector": {"app": "cache"}}}])
    w.snap.objects["endpointslices"] = [{"metadata": {"labels": {"kubernetes.io/service-name": "web"}}, "endpoints": [
        {"addresses": ["10.0.0.1"], "conditions": {"ready": False}}]}]
    w.pod_logs = {"web-0/web": "WARN readiness: dependency cache:6379 PING took 1577ms -> reporting not ready"}
    verdict = lead(w)
    assert verdict.family == "readiness" and verdict.severity == "critical"
    assert "also checking its dependency cache" in verdict.cause
    assert "Service web has 0 ready endpoints: nothing to route to" in verdict.title
    assert "check only the process itself, not cache" in verdict.plans[0].title


def test_a_readiness_probe_that_checks_only_itself_names_no_dependency() -> None:
    probe = {"exec": {"command": ["sh", "-c", "exit 1"]}}
    w = world([pod("web-0", containers=[{"name": "web", "image": "shop/web:1", "readinessProbe": probe}])],
              [event("Unhealthy", "Readiness probe failed: ", name="web-0", count=9)],
              services=[{"metadata": {"name": "cache"}, "spec": {"selector": {"app": "cache"}}}])
    verdict = lead(w)
    assert verdict.family == "readiness" and "dependency" not in verdict.cause and "never pass" in verdict.title


def hpa_at_max() -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"name": "web"}, "minReplicas": 2, "maxReplicas": 6},
            "status": {"currentReplicas": 6, "conditions": [{"type": "ScalingLimited", "status": "True"}]}}


def test_an_upstream_quota_names_the_upstream_and_more_replicas_will_not_help() -> None:
    w = world([pod("web-1", ready=True)], horizontalpodautoscalers=[hpa_at_max()])
    w.pod_logs = {"web-1/web": "WARN lookup failed: 429 Too Many Requests from api.maps.example (quota 600 "
                               "requests/minute for key prod exceeded), Retry-After: 30"}
    verdict = lead(w)
    assert verdict.family == "rate_limited" and "api.maps.example" in verdict.cause
    assert "quota of 600 requests/minute" in verdict.cause and "Retry-After 30 s" in verdict.cause
    assert "HPA web at maxReplicas 6: more replicas will not help" in verdict.title
    assert "Retry-After" in verdict.plans[0].title and not verdict.plans[0].action
    w.pod_logs = {"web-1/web": "WARN CPU throttled in 40% of periods; container is being throttled"}
    assert not [v for v in causes.detect(w) if v.family == "rate_limited"]  # a CPU limit is no upstream's quota


def test_throttled_deliveries_that_all_succeed_on_retry_lose_nothing_and_are_no_fault() -> None:
    w = world([pod("web-1", ready=True)])
    w.pod_logs = {"web-1/web": "\n".join([
        "[warn] failed to flush chunk '1-17.flb', retry in 9 seconds: output=es.0",
        "[error] [output:es:es.0] HTTP status=429 URI=/_bulk, response: es_rejected_execution_exception",
        "[info] flush chunk '1-17.flb' succeeded at retry 1: output=es.0"]).replace("[", "")}
    lost = QueryResult("lost", "vector", [Series({"__name__": "out_dropped_records_total"}, [Sample(NOW, 0.0)])])
    w.metrics = {"lost_records": lost, "lost_records_before": lost}
    verdicts = causes.detect(w)
    assert not [v for v in verdicts if v.current]  # not rate limiting, not a fault
    said = next(v for v in verdicts if v.family == "retries")
    assert said.title.startswith("Nothing is lost") and "0 in the last hour" in said.title
    w.metrics = {"lost_records": QueryResult("lost", "vector", [Series({"__name__": "out_dropped_records_total"},
                                                                        [Sample(NOW, 12.0)])])}
    lost_now = next(v for v in causes.detect(w) if v.family == "retries")
    assert lost_now.current and lost_now.severity == "warning" and "12 failed retries or dropped records" in lost_now.title


def test_a_moment_the_question_names_widens_the_window_back_to_it_and_only_then() -> None:
    from bot.engine.timeframe import asked_since, resolved_since, widened
    from tools.control_plane import Alert

    assert asked_since("I got paged at 11:20 and it resolved", NOW) == NOW.replace(hour=11, minute=20)
    assert asked_since("it broke at 23:50, what happened?", NOW) == NOW.replace(hour=23, minute=50) - timedelta(days=1)
    assert asked_since("errors 40 minutes ago, still?", NOW) == NOW - timedelta(minutes=40)
    assert asked_since("was it down this morning?", NOW) == NOW.replace(hour=6, minute=0)
    assert asked_since("why is checkout failing on v2.1.0?", NOW) is None
    assert asked_since("pods got OOMKilled overnight, is the limit too low?", NOW) is None  # about the limit now
    paged = Alert(id="a", name="WebDown", severity="P1", status="resolved", fired_at=NOW - timedelta(minutes=50),
                  resolved_at=NOW - timedelta(minutes=45))
    assert resolved_since("what happened to web? it paged and resolved", [paged], NOW) == paged.fired_at
    assert resolved_since("is web ok?", [paged], NOW) is None  # a question about now is answered on the window
    assert widened(NOW - timedelta(minutes=40), NOW, 900) == "50m"  # and ten minutes of lead-up
    assert widened(NOW - timedelta(minutes=3), NOW, 900) is None  # the default window covers it
    assert widened(None, NOW, 900) is None


def test_an_error_spike_that_is_over_is_told_as_history_with_when_what_the_logs_said_and_the_alert() -> None:
    from tools.control_plane import Alert
    from tools.logs import LogLine
    from tools.metrics import Signal

    points = [Sample(NOW - timedelta(seconds=s), v) for s, v in
              [(2700, 0.001), (2460, 0.001), (2400, 0.3), (2340, 0.43), (2280, 0.001), (600, 0.001), (0, 0.001)]]
    w = world([pod("web-1", ready=True)])
    w.window_seconds = 3000  # read back to the moment asked about
    w.signals = {"error_rate": Signal("error_rate", "errors", "ratio", value=0.001, health="healthy",
                                      thresholds=(0.01, 0.05), points=points)}
    w.tail = [LogLine(NOW - timedelta(seconds=2390), "ERROR POST /v1/orders 500 could not acquire connection to "
                      "orders-db.example.internal: connection refused", {"pod": "web-1"}, "error")]
    w.resolved_alerts = [Alert(id="al-1", name="WebHighErrorRate", severity="P2", status="resolved",
                               resource_name="web", fired_at=NOW - timedelta(seconds=2340),
                               resolved_at=NOW - timedelta(seconds=2170))]
    verdicts = causes.detect(w)
    assert not [v for v in verdicts if v.current]  # nothing fails now
    said = next(v for v in verdicts if v.family == "episode")
    assert said.severity == "info" and "from 11:20 UTC to 11:22 UTC" in said.title and "peaking at 43%" in said.title
    assert "calls to orders-db.example.internal failed then" in said.title
    assert "alert WebHighErrorRate (P2) fired at 11:21 UTC and resolved at 11:23 UTC" in said.title
    w.signals["error_rate"].points = points[:4]  # still over at the end of the window: not over, not history
    assert not [v for v in causes.detect(w) if v.family == "episode" and "peaking" in v.title]
    w.window_seconds = 900  # an alert older than what was read is not told about
    assert not [v for v in causes.detect(w) if v.family == "episode"]


def test_a_job_whose_command_is_not_in_the_image_says_so_from_the_failed_events_and_the_fix_is_the_command() -> None:
    message = ('failed to create containerd task: OCI runtime create failed: runc create failed: unable to start '
               'container process: exec: "python": executable file not found in $PATH: unknown')
    container = {"name": "run", "image": "shop/tool:2", "command": ["python"], "args": ["/app/run.py"]}
    # the pods' statuses say only StartError; the runtime's words are in the Failed events
    pods = [pod(f"web-{i}", containers=[container], phase="Failed", status=[
        {"name": "run", "restartCount": 0, "state": {"terminated": {"exitCode": 128, "reason": "StartError"}}}])
        for i in range(2)]
    w = world(pods, [event("Failed", f"Error: {message}", name=f"web-{i}", field="spec.containers{run}")
                     for i in range(2)])
    w.snap.kind = "Job"
    w.snap.workload["spec"]["backoffLimit"] = 1
    w.snap.workload["status"] = {"failed": 2, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
    verdict = lead(w)
    assert verdict.family == "job"
    assert "the command python is not found in the image" in verdict.cause and "no log" in verdict.cause
    assert "command/args (now `python /app/run.py`)" in verdict.plans[0].title
    assert any(cause == "Application error" for cause, _ in verdict.ruled_out)


def test_a_deployment_that_cannot_exec_its_command_is_not_called_an_application_exit() -> None:
    container = {"name": "web", "image": "shop/web:2", "command": ["/app/serve"]}
    status = [{"name": "web", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": 128, "reason": "StartError", "finishedAt": at(-30), "message":
                             'exec: "/app/serve": permission denied: unknown'}}}]
    verdict = lead(world([pod("web-1", containers=[container], status=status)]))
    assert verdict.family == "crash"
    assert "never started: the command /app/serve is not executable in the image" in verdict.cause
    assert verdict.plans[0].title.startswith("Fix container web's command/args (now `/app/serve`)")


def test_a_suspended_cronjob_says_since_when_and_by_whom_and_how_to_resume_it() -> None:
    from tools.control_plane import AuditLog

    w = world([pod("web-1", phase="Succeeded")])
    w.snap.kind = "CronJob"
    w.snap.workload["spec"] = {"schedule": "0 2 * * *", "suspend": True, "startingDeadlineSeconds": 600,
                               "jobTemplate": {"spec": {"template": {"spec": {}}}}}
    w.snap.workload["status"] = {"lastScheduleTime": at(-3 * 86400), "lastSuccessfulTime": at(-3 * 86400 + 300)}
    w.audit = [AuditLog(id="a1", timestamp=NOW - timedelta(days=2), username="dana", action="update",
                        resource_name="web", changes={"suspend": {"from": False, "to": True}})]
    verdict = lead(w)
    assert verdict.family == "cronjob" and verdict.severity == "warning"
    assert "suspended since 2026-12-01 12:00 UTC (2 days ago) by dana" in verdict.cause
    assert "last run was scheduled 2026-11-30 12:00 UTC (3 days ago) and completed" in verdict.title
    assert """-p '{"spec":{"suspend":false}}'""" in verdict.plans[0].title and verdict.plans[0].action is None
    # without an audit record, the manager that owns spec.suspend says who
    w.audit = []
    w.snap.workload["metadata"]["managedFields"] = [{"manager": "kubectl-patch", "operation": "Update",
                                                     "time": at(-86400), "fieldsV1": {"f:spec": {"f:suspend": {}}}}]
    assert "by field manager kubectl-patch" in lead(w).cause


def test_a_cronjob_with_an_invalid_schedule_is_critical_and_a_valid_one_running_is_nothing() -> None:
    w = world([pod("web-1", phase="Succeeded")])
    w.snap.kind = "CronJob"
    w.snap.workload["spec"] = {"schedule": "0 2 * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}}
    verdict = lead(w)
    assert verdict.family == "cronjob" and verdict.severity == "critical" and "invalid schedule" in verdict.title
    for schedule in ("*/5 * * * *", "@daily", "0 9 * * MON-FRI", "TZ=Europe/Paris 30 1 1,15 * *"):
        w.snap.workload["spec"]["schedule"] = schedule
        assert not [v for v in causes.detect(w) if v.family == "cronjob"], schedule


def pdb(min_available: int, allowed: int, healthy: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "web-pdb"}, "spec": {"minAvailable": min_available, "selector": {
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": min_available,
                       "expectedPods": 2}}


def test_a_budget_that_allows_no_disruption_blocks_the_drain_of_a_cordoned_node_and_says_how_to_unblock() -> None:
    running = [{"name": "web", "restartCount": 0, "ready": True, "state": {"running": {}}}]
    pods = [pod("web-1", ready=True, status=running, node="node-a"), pod("web-2", ready=True, status=running,
                                                                         node="node-b")]
    up = {"conditions": [{"type": "Ready", "status": "True"}]}
    cordoned = {"metadata": {"name": "node-a"}, "status": up, "spec": {"unschedulable": True, "taints": [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": at(-1500)}]}}
    nodes = [cordoned, {"metadata": {"name": "node-b"}, "spec": {}, "status": up}]
    w = world(pods, nodes=nodes)
    w.snap.workload["spec"]["replicas"] = 2
    w.snap.objects["poddisruptionbudgets"] = [pdb(2, 0)]
    verdict = lead(w)
    assert verdict.family == "pdb" and verdict.severity == "warning"
    assert "web-pdb allows 0 disruptions (minAvailable 2 with 2 replica(s), 2 healthy)" in verdict.title
    assert "web-1 cannot be evicted; node node-a is cordoned since 11:35 UTC" in verdict.title
    assert "scale to 3 replicas first" in verdict.plans[0].title and "maxUnavailable: 1" in verdict.plans[1].title
    # the same budget with no node drained blocks nothing; one that allows a disruption blocks no drain
    w.snap.objects["nodes"] = [{"metadata": {"name": "node-a"}, "spec": {}, "status": up}, nodes[1]]
    assert not [v for v in causes.detect(w) if v.family == "pdb"]
    w.snap.objects["nodes"], w.snap.objects["poddisruptionbudgets"] = nodes, [pdb(1, 1)]
    assert not [v for v in causes.detect(w) if v.family == "pdb"]


def test_a_pod_whose_volume_is_in_a_zone_without_nodes_names_the_zone_and_never_says_delete_the_claim() -> None:
    p = pod("web-2", phase="Pending", node=None)  # type: ignore[arg-type]
    p["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}}]
    claim = {"metadata": {"name": "data-web-2"}, "spec": {"volumeName": "pvc-123"}, "status": {"phase": "Bound"}}
    volume = {"metadata": {"name": "pvc-123"}, "spec": {"persistentVolumeReclaimPolicy": "Delete", "nodeAffinity": {
        "required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-c"]}]}]}}}}
    nodes = [{"metadata": {"name": f"node-{z}", "labels": {"topology.kubernetes.io/zone": f"zone-{z}"}},
              "status": {"conditions": [{"type": "Ready", "status": "True"}]}} for z in "ab"]
    w = world([p], [event("FailedScheduling", "0/2 nodes are available: 2 node(s) had volume node affinity "
                                              "conflict.", name="web-2")],
              nodes=nodes, persistentvolumeclaims=[claim])
    w.snap.objects["persistentvolumes"] = [volume]
    verdict = lead(w)
    assert verdict.family == "scheduling"
    assert "volume pvc-123 of claim data-web-2 is in zone-c" in verdict.cause
    assert "the nodes are in zone-a, zone-b" in verdict.cause
    assert "bring a node back in zone-c" in verdict.plans[0].title
    assert "do not delete claim data-web-2 (reclaimPolicy Delete" in verdict.plans[0].title
    # a node in that zone: the volume is not the conflict
    nodes.append({"metadata": {"name": "node-c", "labels": {"topology.kubernetes.io/zone": "zone-c"}}})
    assert "zone-c" not in lead(w).cause


def test_a_service_whose_target_port_no_pod_listens_on_is_critical_with_the_change_that_set_it() -> None:
    from tools.control_plane import AuditLog

    container = {"name": "web", "image": "shop/web:1", "ports": [{"containerPort": 3000, "name": "http"}]}
    running = [{"name": "web", "restartCount": 0, "ready": True, "state": {"running": {}}}]
    pods = [pod(f"web-{i}", containers=[container], status=running, ready=True) for i in range(2)]
    service = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": 8080}]}}
    w = world(pods, services=[service])
    w.audit = [AuditLog(id="a9", timestamp=NOW - timedelta(minutes=20), username="ci-bot", action="update",
                        resource_name="web", changes={"service.targetPort": {"from": 3000, "to": 8080}})]
    verdict = lead(w)
    assert verdict.family == "service_endpoints" and verdict.severity == "critical"
    assert "Service web sends to 8080, the containers listen on 3000" in verdict.title
    assert "since ci-bot's update at 11:40 UTC" in verdict.cause
    assert "back to 3000 (or the named port http)" in verdict.plans[0].title
    # a named targetPort the pods declare, or pods that declare no port at all, is nothing to report
    for target, ports in (("http", container["ports"]), (8080, None)):
        service["spec"]["ports"][0]["targetPort"] = target
        for p in pods:
            p["spec"]["containers"][0]["ports"] = ports
        assert not [v for v in causes.detect(w) if v.family == "service_endpoints"], target


def evicted_pod(message: str) -> dict[str, Any]:
    container = {"name": "web", "image": "shop/web:1", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                 "resources": {"limits": {"ephemeral-storage": "2Gi"}, "requests": {"ephemeral-storage": "1Gi"}}}
    p = pod("web-1", containers=[container], phase="Failed", status=[
        {"name": "web", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "Error",
                                                                    "finishedAt": at(-1200)}}}])
    p["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    p["status"] |= {"reason": "Evicted", "message": message}
    return p


def test_a_pod_over_its_own_ephemeral_storage_limit_is_told_apart_from_node_pressure() -> None:
    w = world([evicted_pod("Pod ephemeral local storage usage exceeds the total limit of containers 2Gi. ")])
    w.pod_logs = {"web-1/web": "INFO spilled 1.9 GiB to /scratch/runs"}
    verdict = lead(w)
    assert verdict.family == "eviction"  # not a crash with exit code 137
    assert "its own ephemeral-storage limit (the total of its containers' limits, 2Gi)" in verdict.cause
    assert "emptyDir scratch (/scratch)" in verdict.title and "a bare pod: nothing recreates it" in verdict.title
    assert verdict.plans[0].title.startswith("Raise the ephemeral-storage limit (2Gi)")
    assert "node work does not help" in verdict.plans[0].title
    w = world([evicted_pod('Usage of EmptyDir volume "scratch" exceeds the limit "1Gi". ')])
    assert "its emptyDir scratch's sizeLimit, 1Gi" in lead(w).cause
    w = world([evicted_pod("The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: "
                           "9Gi. Container web was using 5Gi, request is 0, has larger consumption of "
                           "ephemeral-storage. ")])
    verdict = lead(w)
    assert "node node-a ran low on ephemeral-storage" in verdict.cause
    assert "container web used 5Gi against a request of 0" in verdict.evidence


def test_a_cache_flush_before_a_recovered_episode_is_said_as_why_with_the_misses_and_the_database_out_of_connections(
) -> None:
    from bot.engine.causes.base import configured_hosts
    from tools.control_plane import AuditLog
    from tools.logs import LogLine
    from tools.metrics import Signal

    container = {"name": "web", "image": "shop/web:1", "env": [
        {"name": "CACHE_URL", "value": "redis://web-cache.shop.svc:6379/0"}, {"name": "DB_HOST", "value": "web-db"},
        {"name": "DB_POOL_MAX", "value": "50"}]}
    w = world([pod("web-1", containers=[container], ready=True)])
    assert configured_hosts(w) == ["web-cache", "web-db"]  # what the service is set to reach
    points = [Sample(NOW - timedelta(seconds=s), v) for s, v in
              [(2400, 0.0003), (1500, 0.0003), (1440, 0.08), (900, 0.08), (840, 0.0003), (0, 0.0003)]]
    w.window_seconds = 3000
    w.signals = {"error_rate": Signal("error_rate", "errors", "ratio", value=0.0003, health="healthy",
                                      thresholds=(0.01, 0.05), points=points)}
    w.tail = [LogLine(NOW - timedelta(seconds=1400), line, {"pod": "web-1"}, level) for line, level in (
        ("WARN cache miss for page 7: loading from database (miss rate 96%)", "warn"),
        ("ERROR query failed: pq: sorry, too many clients already", "error"))]
    w.dependency_audit = [AuditLog(
        id="a-1", timestamp=NOW - timedelta(seconds=1505), user_id="u-1", username="rahul", action="execute",
        resource_type="script", resource_id="s-1", resource_name="web-cache",
        changes={"command": {"from": None, "to": "redis-cli -h web-cache FLUSHALL"}}, result="success")]
    verdicts = causes.detect(w)
    assert not [v for v in verdicts if v.current]  # recovered: nothing to do now
    said = next(v for v in verdicts if v.family == "cache_flush")
    assert said.title.startswith("rahul ran `redis-cli -h web-cache FLUSHALL` on web-cache at 11:34 UTC")
    assert "thundering herd" in said.title and "miss rate 96%" in said.title and "too many clients" in said.title
    assert "nothing to do now" in said.title and not said.plans
    # a flush long before the trouble is not its cause
    w.dependency_audit[0].timestamp = NOW - timedelta(hours=2)
    assert not [v for v in causes.detect(w) if v.family == "cache_flush"]


def test_a_crash_whose_last_words_say_no_such_host_leads_with_the_name_that_does_not_resolve() -> None:
    from bot.engine.summary import headline

    line = ("FATAL failed to connect to database: dial tcp: lookup orders-db.shpo.svc.cluster.local on "
            "10.96.0.10:53: no such host")
    status = [{"name": "web", "restartCount": 6, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": at(-30)}}}]
    w = world([pod("web-1", status=status)])
    ev = Evidence(service="web", namespace="shop", deployment="web", now=NOW, window="15m", window_seconds=900,
                  snapshot=w.snap, pod_logs={"web-1/web": f"starting\n{line}\n{line}\n"})
    d = diagnose(ev)
    assert d.cause is not None and d.cause.key == "dns"
    assert headline(d).startswith("web is failing, most likely because of DNS resolution failing for "
                                  "orders-db.shpo.svc.cluster.local")
    crash = next(o for o in d.others if o.key == "crash")
    assert crash.text.count("no such host") == 1  # the line repeated on every retry is quoted once


def test_a_drain_blocked_by_a_budget_while_every_pod_serves_is_not_called_degraded() -> None:
    from bot.engine.summary import headline, verdict

    pods = [pod(f"web-{i}", ready=True, node=f"node-{i}") for i in (1, 2)]
    pdb = {"metadata": {"name": "web-pdb", "namespace": "shop"},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
           "status": {"disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2}}
    nodes = [{"metadata": {"name": f"node-{i}"}, "spec": {"unschedulable": i == 2},
              "status": {"conditions": [{"type": "Ready", "status": "True"}]}} for i in (1, 2)]
    w = world(pods, nodes=nodes)
    w.snap.objects["poddisruptionbudgets"] = [pdb]
    ev = Evidence(service="web", namespace="shop", deployment="web", now=NOW, window="15m", window_seconds=900,
                  snapshot=w.snap)
    d = diagnose(ev)
    assert d.cause is not None and d.cause.key == "pdb"
    assert verdict(d) == "healthy"
    assert headline(d).startswith("web is not failing; what needs a look is PodDisruptionBudget web-pdb allowing 0 "
                                  "disruptions")


@pytest.mark.parametrize(("line", "seconds"), [
    ("[3600s][info][gc] GC(801) Pause Full (G1 Compaction Pause) 3921M->3874M(4096M) 2700.400ms", 2.7),
    ("2026-12-03T10:00:00.000+0000: [Full GC (Allocation Failure)  3900M->3800M(4096M), 2.7654321 secs]", 2.77),
    ("Total time for which application threads were stopped: 1.5100 seconds, Stopping threads took: 0.0001 seconds",
     1.51),
    ("[o.e.m.j.JvmGcMonitorService] [node-1] [gc][old][944] duration [3.2s], collections [1]/[3.5s]", 3.2),
    ("[o.e.m.j.JvmGcMonitorService] [node-1] [gc][944] overhead, spent [1.9s] collecting in the last [2.1s]", 1.9),
    ("[1:0x5a] 123456 ms: Mark-Compact 2000.1 (2050.3) -> 1990.2 (2051.3) MB, 2345.6 / 0.0 ms  (average mu = 0.1)",
     2.35),
])
def test_gc_pause_lines_of_each_runtime_are_read_with_their_length(line: str, seconds: float) -> None:
    from bot.engine.causes.base import gc_pauses
    from tools.logs import LogLine

    w = world([pod("web-1")])
    w.tail = [LogLine(NOW, line, {"pod": "web-1"}, "info"),
              LogLine(NOW, "INFO indexed batch of 500 docs in 1200ms", {"pod": "web-1"}, "info")]  # no pause
    assert [round(p.seconds, 2) for p in gc_pauses(w)] == [seconds]


def test_cpu_throttling_is_not_user_impacting_while_latency_is_healthy_and_every_pod_is_ready() -> None:
    from tools.control_plane import Alert
    from tools.metrics import Signal

    w = world([pod("web-1", ready=True), pod("web-2", ready=True)])
    w.alerts = [Alert(id="al-1", name="CPUThrottlingHigh", severity="warning", status="firing", resource_name="web-1",
                      message="42.1% throttling of CPU in namespace shop for container log-shipper in pod web-1.")]
    w.signals = {"error_rate": Signal("error_rate", "errors", "ratio", value=0.0005, health="healthy",
                                      thresholds=(0.01, 0.05)),
                 "latency_p99": Signal("latency_p99", "p99", "s", value=0.18, health="healthy", thresholds=(0.5, 2.0))}
    verdict = next(v for v in causes.detect(w) if v.family == "cpu_throttling")
    assert verdict.severity == "info" and verdict.service_ok  # the alert fires, users do not feel it
    assert verdict.unaffected == ["error rate 0.05%", "p99 latency 180 ms", "2/2 pods ready"]
    w.signals["latency_p99"] = Signal("latency_p99", "p99", "s", value=0.9, health="warning", thresholds=(0.5, 2.0))
    verdict = next(v for v in causes.detect(w) if v.family == "cpu_throttling")
    assert verdict.severity == "warning" and not verdict.unaffected  # slow answers: the throttling is felt
    del w.signals["latency_p99"]  # unread: nothing shows users are fine
    assert next(v for v in causes.detect(w) if v.family == "cpu_throttling").severity == "warning"


def test_a_probe_timing_out_is_the_consequence_of_what_makes_the_process_slow_which_leads_with_its_severity() -> None:
    from tools.control_plane import Alert

    container = {"name": "web", "image": "shop/web:1", "ports": [{"containerPort": 8080}],
                 "resources": {"limits": {"cpu": "250m"}},
                 "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "timeoutSeconds": 1}}
    status = [{"name": "web", "restartCount": 5, "ready": True, "state": {"running": {}},
               "lastState": {"terminated": {"exitCode": 143, "reason": "Error"}}}]
    probe_failed = event("Unhealthy", 'Liveness probe failed: Get "http://10.0.0.1:8080/healthz": context deadline '
                         "exceeded (Client.Timeout exceeded while awaiting headers)", count=40, field="spec.containers{web}")
    w = world([pod("web-1", containers=[container], status=status, ready=True)], [
        probe_failed, event("Killing", "Container web failed liveness probe, will be restarted", count=5)])
    w.alerts = [Alert(id="al-1", name="CPUThrottlingHigh", severity="warning", status="firing", resource_name="web-1",
                      message="78.3% throttling of CPU in namespace shop for container web in pod web-1.")]
    current = [v for v in causes.detect(w) if v.current]
    probe = next(v for v in current if v.family == "liveness")
    assert probe.severity == "critical" and probe.shows == {causes.base.SLOW}
    [(symptom, mechanism)] = causes.mechanisms(current)
    assert (symptom.family, mechanism.family) == ("liveness", "cpu_throttling")
    assert mechanism.severity == "critical"  # the throttling takes the kills' severity: it leads, they follow
    # a probe refused on the wrong port observes no slowness: nothing explains it but itself
    probe_failed["message"] = 'Liveness probe failed: Get "http://10.0.0.1:8080/healthz": connection refused'
    assert not causes.mechanisms([v for v in causes.detect(w) if v.current])
