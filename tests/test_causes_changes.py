"""A change next to the service — a feature flag, a RoleBinding, a NetworkPolicy — read as the cause of errors that
began right after it, with the fix that undoes it; and which audit records concern a service at all."""
from __future__ import annotations

from datetime import timedelta

from bot.engine import causes
from bot.engine.causes.base import World
from bot.engine.causes.change import concerning
from tests.test_causes import NOW, lead, pod, world
from tools.control_plane import AuditLog
from tools.logs import LogLine, LogPattern, LogReport
from tools.metrics import Signal


def failing(w: World, *lines: str, since: int = -600) -> World:
    """`w` with a critical error rate and these error lines, first seen `since` seconds ago, in logs read for 45 min."""
    w.signals = {"error_rate": Signal("error_rate", "errors", "ratio", value=0.4, health="critical",
                                      thresholds=(0.01, 0.05))}
    first = NOW + timedelta(seconds=since)
    w.logs = LogReport(query="{app=\"web\"}", start=NOW - timedelta(minutes=45), end=NOW, lines_scanned=500,
                       limit_hit=False, patterns=[LogPattern(line, 40, first, NOW, line, "error") for line in lines])
    w.tail = [LogLine(first, line, {"pod": "web-1"}, "error") for line in lines]
    return w


def change(kind: str, name: str, action: str, seconds: int, namespace: str | None = "shop", who: str = "lena",
           **changes: object) -> AuditLog:
    return AuditLog(id=f"a-{name}", timestamp=NOW + timedelta(seconds=seconds), username=who, action=action,
                    resource_type=kind, resource_name=name, result="success",
                    changes=({"namespace": namespace} if namespace else {}) | changes)


def test_a_feature_flag_flipped_just_before_the_exceptions_that_name_it_is_the_cause_and_is_turned_off() -> None:
    w = failing(world([pod("web-1", ready=True)]),
                "ERROR TaxCalculatorV2 - tax calculation failed (flag new-tax-engine=on): java.lang.NullPointerException")
    w.audit = [change("feature_flag", "new-tax-engine", "update", -640, namespace=None,
                      enabled={"from": False, "to": True}, rollout_percentage={"from": 0, "to": 100})]
    verdict = lead(w)
    assert verdict.family == "change" and verdict.severity == "critical"
    assert verdict.cause == "lena's change of feature flag new-tax-engine at 11:49 UTC"
    assert "started the errors: they began the same minute" in verdict.title
    assert any("flag new-tax-engine=on" in e for e in verdict.evidence)
    plan = verdict.plans[0]
    assert plan.title.startswith("Turn feature flag new-tax-engine off again (enabled False, rollout_percentage 0)")
    assert "a rollback or a restart cannot help" in plan.title and plan.action is None


def test_a_deleted_rolebinding_behind_forbidden_errors_is_recreated_for_the_refused_account() -> None:
    w = failing(world([pod("web-1", ready=True)]),
                'ERROR create job: jobs.batch is forbidden: User "system:serviceaccount:shop:web" cannot create '
                'resource "jobs" in API group "batch" in the namespace "shop"')
    w.audit = [change("rolebinding", "web-jobs", "delete", -700, who="kim",
                      roleRef={"from": "Role/web-jobs", "to": None},
                      subjects={"from": ["ServiceAccount shop/web"], "to": None})]
    verdict = lead(w)
    assert verdict.family == "change" and "kim's deletion of RoleBinding web-jobs" in verdict.cause
    assert verdict.plans[0].title.startswith(
        "Recreate RoleBinding web-jobs (Role/web-jobs → ServiceAccount shop/web) so that "
        "system:serviceaccount:shop:web can create jobs again")


def test_an_egress_policy_created_before_connect_timeouts_is_opened_to_the_dependency_not_blamed_on_it() -> None:
    w = failing(world([pod("web-1", ready=True)]),
                'ERROR db: failed to connect to `host=orders-db.data.svc.cluster.local`: dial tcp 10.96.4.2:5432: '
                'i/o timeout')
    w.audit = [change("networkpolicy", "default-deny-egress", "create", -780, who="sam")]
    verdict = lead(w)
    assert verdict.family == "change" and verdict.cause.startswith("sam's creation of NetworkPolicy default-deny-egress")
    assert "Allow egress from web to orders-db.data.svc.cluster.local port 5432" in verdict.plans[0].title
    assert "or delete the policy" in verdict.plans[0].title


def test_a_change_after_the_errors_began_or_long_before_them_is_not_their_cause() -> None:
    line = "ERROR TaxCalculatorV2 failed (flag new-tax-engine=on): java.lang.NullPointerException"
    for seconds in (-300, -3000):  # 5 min after the first error; 40 min before it
        w = failing(world([pod("web-1", ready=True)]), line)
        w.audit = [change("feature_flag", "new-tax-engine", "update", seconds, namespace=None)]
        assert not [v for v in causes.detect(w) if v.family == "change"], seconds


def test_a_change_concerns_the_service_by_its_name_its_namespace_policies_or_its_logs() -> None:
    w = failing(world([pod("web-1", ready=True)]), "ERROR tax failed (flag new-tax-engine=on)")
    own = change("deployment", "web", "update", -600)
    policy_here = change("networkpolicy", "default-deny-egress", "create", -600)
    policy_elsewhere = change("networkpolicy", "default-deny-egress", "create", -600, namespace="sandbox")
    flag = change("feature_flag", "new-tax-engine", "update", -600, namespace=None)
    other_flag = change("feature_flag", "dark-mode", "update", -600, namespace=None)
    neighbour = change("deployment", "billing", "update", -600)
    assert concerning(w, [own, policy_here, policy_elsewhere, flag, other_flag, neighbour]) == [own, policy_here, flag]


# --- quoted log evidence read for its cause -------------------------------------------------------------------
def series(query: str, values: dict[str, float]) -> object:
    from tools.metrics import QueryResult, Sample, Series
    return QueryResult(query, "vector", [Series({"pod": p}, [Sample(NOW, v)]) for p, v in values.items()])


def test_pods_at_their_open_files_limit_with_descriptors_climbing_are_a_leak_and_the_pods_are_restarted() -> None:
    from bot.engine.causes.fd_exhaustion import LIMIT, OPEN, PER_HOUR
    w = failing(world([pod("web-1", ready=True)]), "ERROR http: Accept error: accept tcp [::]:8080: accept4: too many "
                "open files; retrying in 1s")
    w.metrics = {OPEN.key: series("open", {"web-a": 1024, "web-b": 870}), LIMIT.key: series("max", {"web-a": 1024,
                 "web-b": 1024}), PER_HOUR.key: series("deriv", {"web-a": 21, "web-b": 22})}
    verdict = lead(w)
    assert verdict.family == "fd_exhaustion" and verdict.severity == "critical"
    assert verdict.cause.startswith("a file-descriptor leak: descriptors climb steadily (+22 an hour per pod)")
    assert "1 of 2 pods (web-a) have used all 1024 file descriptors" in verdict.cause
    assert "web-b at 870 reaches the limit in about 7 h" in verdict.evidence
    restart = verdict.plans[0]
    assert restart.action is not None and restart.action.kind == "restart" and restart.action.target == "shop/web"
    assert "Find the leak" in verdict.plans[1].title and "only buys time" in verdict.plans[1].title


def test_one_throttled_retry_among_many_other_errors_is_not_read_as_rate_limiting() -> None:
    w = failing(world([pod("web-1", ready=True)]), *(f"ERROR open /tmp/x-{i}: too many open files" for i in range(3)))
    w.tail.append(LogLine(NOW, "WARN objstore: GET media/1.jpg returned 503 SlowDown; retrying", {"pod": "web-1"}, "warning"))
    assert not [v for v in causes.detect(w) if v.family == "rate_limited"]
    w.logs.patterns = w.logs.patterns[:1]
    w.logs.patterns[0].count = 2  # the same line among two errors: it is what fails them
    assert [v for v in causes.detect(w) if v.family == "rate_limited"]


# --- an autoscaler at its ceiling under risen traffic ---------------------------------------------------------
def test_an_hpa_pinned_at_max_with_traffic_tripled_and_cpu_saturated_is_scaled_out_not_given_more_cpu() -> None:
    w = failing(world([pod("web-1", ready=True)], horizontalpodautoscalers=[{
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "web"}, "minReplicas": 3, "maxReplicas": 6,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"averageUtilization": 70}}}]},
        "status": {"currentReplicas": 6, "desiredReplicas": 6,
                   "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 98}}}],
                   "conditions": [{"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas",
                                   "message": "the desired replica count is more than the maximum replica count"}]}}]),
        "ERROR GET /v1/search 503 request queue full, shedding load")
    w.signals["request_rate"] = Signal("request_rate", "rate", "req/s", value=900, baseline=300, health="healthy")
    w.signals["cpu_ratio"] = Signal("cpu_ratio", "cpu", "ratio", value=0.98, health="critical", thresholds=(0.8, 0.95))
    verdict = lead(w)
    assert verdict.family == "hpa" and verdict.severity == "critical"
    assert verdict.cause.startswith("traffic up 3.0×") and "pinned at its maxReplicas 6" in verdict.cause
    plan = verdict.plans[0]
    assert plan.title.startswith("Raise maxReplicas of HPA web from 6 to 9") and "scales it back to 6" in plan.title
    assert plan.action is not None and plan.action.kind == "scale" and plan.action.params == {"replicas": 9}
    w.signals["request_rate"].value = 310  # the same traffic: not the load, the HPA's ceiling is only noted
    verdict = next(v for v in causes.detect(w) if v.family == "hpa")
    assert verdict.severity == "warning" and verdict.plans[0].action is None


# --- a CronJob blocked by its own hung run ------------------------------------------------------------------------
def test_a_forbid_cronjob_whose_run_waits_on_a_lock_says_so_and_ends_the_run_not_the_cronjob() -> None:
    run = pod("web-29416020-k7q2x", ready=True)
    w = world([run], [{"reason": "JobAlreadyActive", "count": 5, "lastTimestamp": "2026-12-03T11:10:00Z",
                       "message": "Not starting job because prior execution is running and concurrency policy is Forbid",
                       "involvedObject": {"kind": "CronJob", "name": "web"}}])
    w.snap.kind = "CronJob"
    w.snap.workload["spec"] = {"schedule": "10 * * * *", "concurrencyPolicy": "Forbid", "suspend": False,
                               "jobTemplate": {"spec": {"template": {"spec": {}}}}}
    w.snap.workload["status"] = {"active": [{"kind": "Job", "name": "web-29416020"}]}
    w.snap.objects["jobs"] = [{"metadata": {"name": "web-29416020"},
                               "status": {"startTime": "2026-12-03T06:50:00Z", "active": 1}}]
    w.tail = [LogLine(NOW, "WARN still waiting for lock on relation events_hourly after 305m: blocked by pid 31877 "
                      "(state 'idle in transaction')", {"pod": "web-29416020-k7q2x"}, "warning")]
    verdict = lead(w)
    assert verdict.family == "cronjob"
    assert verdict.cause == "its run web-29416020 hanging since 06:50 UTC, waiting for a lock held by pid 31877"
    assert "concurrencyPolicy Forbid and run web-29416020 still active after 5 h 10 min" in verdict.title
    assert "skipped 5 schedule(s) (JobAlreadyActive)" in verdict.title
    assert verdict.plans[0].title.startswith("End what the run waits on (pid 31877 holds the lock: end that session) "
                                             "and then delete Job web-29416020")
    assert "activeDeadlineSeconds" in verdict.plans[1].title
    assert all(p.action is None for p in verdict.plans)
    assert ("Suspended", "spec.suspend is false: the controller tries each schedule and skips it because a run is "
                         "active") in verdict.ruled_out


# --- failures confined to one node ----------------------------------------------------------------------------
def test_errors_only_from_the_pods_on_a_node_with_a_full_conntrack_table_blame_the_node_not_dns() -> None:
    from bot.engine.causes.node_local import CONNTRACK, CONNTRACK_LIMIT
    from tools.metrics import QueryResult, Sample, Series
    pods = [pod(f"web-{i}", ready=True, node=f"node-{i % 3 + 1}") for i in range(6)]
    w = failing(world(pods), "ERROR resolver: lookup orders.shop.svc.cluster.local on 10.96.0.10:53: i/o timeout")
    w.tail = [LogLine(NOW, "INFO GET /orders 200 30ms", {"pod": p["metadata"]["name"]}, "info") for p in pods] + [
        LogLine(NOW, "ERROR resolver: lookup orders.shop.svc.cluster.local on 10.96.0.10:53: i/o timeout",
                {"pod": name}, "error") for name in ("web-2", "web-5")]  # web-2 and web-5 run on node-3

    def by_node(values: dict[str, float]) -> QueryResult:
        return QueryResult("q", "vector", [Series({"instance": f"10.0.{n[-1]}.1:9100", "node": n}, [Sample(NOW, v)])
                                           for n, v in values.items()])
    w.metrics = {CONNTRACK.key: by_node({"node-1": 0.16, "node-2": 0.15, "node-3": 1.0}),
                 CONNTRACK_LIMIT.key: by_node({"node-1": 262144, "node-2": 262144, "node-3": 262144})}
    verdict = lead(w)
    assert verdict.family == "node_local" and verdict.severity == "critical"
    assert verdict.cause.startswith("node-3's conntrack table being full (100% of 262144 entries)")
    assert verdict.title == "Only web's pods on node-3 fail (2 of 6): node-3's conntrack table is full and the kernel is dropping packets"
    assert "Cordon node-3" in verdict.plans[0].title and "nf_conntrack_max on node-3 above 262144" in verdict.plans[0].title
    # the same errors from a pod on another node too: not the node
    w.tail.append(LogLine(NOW, "ERROR resolver: lookup orders: i/o timeout", {"pod": "web-0"}, "error"))
    assert not [v for v in causes.detect(w) if v.family == "node_local"]


def test_an_egress_policy_that_admits_dns_but_not_the_database_port_is_found_without_any_audit_record() -> None:
    policy = {"metadata": {"name": "default-deny-egress"},
              "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                                   "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}
    line = 'ERROR db: failed to connect to `host=orders-db`: dial tcp 10.96.4.2:5432: i/o timeout'
    w = failing(world([pod("web-1", ready=True)], networkpolicies=[policy]), line)
    verdict = lead(w)
    assert verdict.family == "network_policy" and verdict.severity == "critical"
    assert verdict.title == ("NetworkPolicy default-deny-egress denies egress from web to postgres:5432: no egress rule "
                             "admits port 5432 (only 53)")
    assert verdict.ruled_out[0][0] == "postgres down"
    from bot.engine.causes.network_policy import EXPORTER_UP
    from tools.metrics import QueryResult, Sample, Series
    w.metrics = {EXPORTER_UP.key: QueryResult("up", "vector", [Series({"__name__": "pg_up", "service": "orders-db"},
                                                                      [Sample(NOW, 1)])])}
    verdict = lead(w)
    assert verdict.ruled_out[0][1].startswith("pg_up is 1 (orders-db): postgres itself is up; the connections time out")
    assert "metric pg_up is 1 (orders-db): postgres itself is up" in verdict.evidence
    assert verdict.plans[0].title.startswith("Allow egress from web to postgres port 5432 in NetworkPolicy")
    # a refused connection is not a dropped one, and a rule for the port lets it out
    w.tail = [LogLine(NOW, line.replace("i/o timeout", "connect: connection refused"), {"pod": "web-1"}, "error")]
    w.logs.patterns = []
    assert not [v for v in causes.detect(w) if v.family == "network_policy"]
    w = failing(world([pod("web-1", ready=True)], networkpolicies=[policy]), line)
    policy["spec"]["egress"].append({"ports": [{"protocol": "TCP", "port": 5432}]})
    assert not [v for v in causes.detect(w) if v.family == "network_policy"]


def test_rbac_refusals_without_any_change_record_name_the_account_verb_and_resource_and_grant_them() -> None:
    w = failing(world([pod("web-1", ready=True)]),
                'ERROR create job: jobs.batch is forbidden: User "system:serviceaccount:shop:web" cannot create '
                'resource "jobs" in API group "batch" in the namespace "shop"',
                'ERROR informer: jobs.batch is forbidden: User "system:serviceaccount:shop:web" cannot list resource '
                '"jobs" in API group "batch" in the namespace "shop"')
    verdict = lead(w)
    assert verdict.family == "permissions" and verdict.severity == "critical"
    assert verdict.cause == ("missing RBAC permissions: the API server forbids ServiceAccount shop/web to create "
                             "jobs.batch, list jobs.batch in namespace shop")
    plan = verdict.plans[0].title
    assert "kubectl create role web-access -n shop --verb=create,list --resource=jobs.batch" in plan
    assert "--serviceaccount=shop:web" in plan and verdict.plans[0].action is None
    # with the deletion of the binding in the audit log, that change leads and is undone
    w.audit = [change("rolebinding", "web-jobs", "delete", -700, who="kim")]
    assert lead(w).family == "change"
