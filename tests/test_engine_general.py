"""The general layers that keep an unseen failure mode from reading as "no problems found": evidence the signals
do not show (a firing alert, a new log pattern, a 4xx surge the question names, the question's own complaint)."""
from __future__ import annotations

from bot.engine.findings import ASKED_KEY, asked_status_queries
from bot.engine.reasoning import diagnose
from bot.engine.summary import headline, verdict, write_summary
from tests.test_engine_reasoning import NOW, ago, evidence, healthy_signals, logs, pod, report, revision, signal
from tools.control_plane import Alert
from tools.logs import LogPattern
from tools.metrics import QueryResult, Sample, Series


def quiet(**fields: object) -> dict[str, object]:
    """A service whose golden signals, pods and audit log are all fine."""
    return {"signals": healthy_signals(), "report": report([pod(f"p{i}", 3) for i in range(3)],
                                                          revision(3, "v1.4.2", ago(days=2)), None),
            "audit": [], "logs": logs()} | fields


def test_a_firing_alert_the_signals_do_not_show_needs_a_look_not_no_problems() -> None:
    lag = Alert(id="al-1", name="KafkaConsumerLagHigh", severity="P2", status="firing", resource_name="checkout",
                message="lag on order-events partition 3 above 5000", fired_at=ago(minutes=12))
    d = diagnose(evidence(**quiet(alerts=[lag])))

    assert verdict(d) == "degraded"
    assert headline(d).startswith("checkout needs a look: alert KafkaConsumerLagHigh (P2) firing")
    assert "partition 3 above 5000 — not explained by the signals I read" in headline(d)


def test_an_error_pattern_new_in_the_window_is_a_finding_and_established_noise_is_not() -> None:
    new = LogPattern("<ts> WARN rejected: ImmatureSignatureError (iat)", 40, ago(minutes=9), ago(seconds=10),
                     "WARN rejected: ImmatureSignatureError (iat)", "warning")
    d = diagnose(evidence(**quiet(logs=logs(new))))
    assert verdict(d) == "degraded"
    assert "“rejected: ImmatureSignatureError (iat)” (new: none in the 6 min before it" in headline(d)
    assert "noise" not in write_summary(d, [], approvers_configured=True)

    established = LogPattern("<ts> ERROR cache miss", 400, ago(minutes=15), NOW, "ERROR cache miss", "error")
    d = diagnose(evidence(**quiet(logs=logs(established))))
    assert verdict(d) == "healthy" and headline(d).startswith("No problems found in checkout")


def test_a_401_surge_the_question_names_counts_as_errors() -> None:
    queries = asked_status_queries("a quarter of requests get 401", "checkout", "5m", 900)
    assert set(queries) == {ASKED_KEY + "401", ASKED_KEY + "401:before"}
    assert 'status="401"' in queries[ASKED_KEY + "401"] and "offset 3600s" in queries[ASKED_KEY + "401:before"]

    def value(v: float) -> QueryResult:
        return QueryResult("q", "vector", [Series({}, [Sample(NOW, v)])])

    d = diagnose(evidence(**quiet(question="why do users get 401 after login?",
                                  metrics={ASKED_KEY + "401": value(0.27), ASKED_KEY + "401:before": value(0.01)})))
    assert verdict(d) == "failing"
    assert "401 responses: 27% of requests, up from 1% before; they are errors for the people who get them" \
        in headline(d)

    usual = diagnose(evidence(**quiet(question="why do users get 401 after login?",
                                      metrics={ASKED_KEY + "401": value(0.27), ASKED_KEY + "401:before": value(0.25)})))
    assert not any(f.title.startswith("401 responses") for f in usual.findings)


def test_a_reported_symptom_nothing_shows_is_inconclusive_not_no_problems() -> None:
    d = diagnose(evidence(**quiet(question="orders are stuck and checkout is slow, why?")))
    assert verdict(d) == "inconclusive"
    assert headline(d).startswith("Nothing I checked shows what you report (stuck and slow) in checkout: ")

    for question in ("is checkout ok?", "<@U42> is checkout down?", "@srebot any errors in checkout?"):
        asked = diagnose(evidence(**quiet(question=question)))
        assert verdict(asked) == "healthy" and headline(asked).startswith("No problems found in checkout")


def test_a_secret_rotated_before_the_errors_is_the_suspect_and_its_env_readers_are_restarted() -> None:
    from tools.control_plane import AuditLog
    from tools.kubernetes import Snapshot

    env = [{"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": "checkout-db", "key": "user"}}},
           {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "checkout-db", "key": "password"}}}]
    workload = {"metadata": {"name": "checkout"},
                "spec": {"template": {"spec": {"containers": [{"name": "app", "env": env}]}}}}
    rotated = AuditLog(id="a-9", timestamp=ago(minutes=9), username="rotator", action="update", resource_type="secret",
                       resource_name="checkout-db", changes={"data.password": {"from": "x", "to": "y"}})
    auth = LogPattern('<ts> ERROR pq: password authentication failed for user "shop"', 50, ago(minutes=6), NOW,
                      'ERROR pq: password authentication failed for user "shop"', "error")
    d = diagnose(evidence(**quiet(
        signals=healthy_signals(error_rate=signal("error_rate", 0.3, baseline=0.001, onset=ago(minutes=6))),
        snapshot=Snapshot("shop", "checkout", "Deployment", workload), audit=[rotated], logs=logs(auth))))

    assert d.cause is not None and d.cause.text.startswith("rotator's update of secret checkout-db at 10:41 UTC")
    assert "its pods read it through env DB_USER, DB_PASSWORD" in headline(d)
    assert "password authentication failed" in headline(d)
    [plan] = [p for p in d.plans if p.action is not None]
    assert plan.action.kind == "restart"
    assert plan.title.startswith("Restart checkout so that its pods read the new secret checkout-db: they take it "
                                 "through env DB_USER, DB_PASSWORD, which is read only when a container starts")
    assert not any(r.cause == "A recent deploy or change" for r in d.ruled_out)


def test_a_change_concerns_the_service_through_what_its_pods_read_or_run_on_and_not_otherwise() -> None:
    from bot.engine.causes.base import World
    from bot.engine.causes.change import concerning
    from tools.control_plane import AuditLog
    from tools.kubernetes import Snapshot

    workload = {"metadata": {"name": "checkout"}, "spec": {"template": {"spec": {
        "serviceAccountName": "checkout-sa",
        "containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "shop-flags"}}]}]}}}}
    pods = [{"metadata": {"name": "checkout-1"}, "spec": {"nodeName": "node-3"}}]
    world = World("checkout", "shop", NOW, 900, snap=Snapshot("shop", "checkout", "Deployment", workload, pods=pods))

    def change(kind: str, name: str) -> AuditLog:
        return AuditLog(id=name, timestamp=ago(minutes=9), username="kim", action="update", resource_type=kind,
                        resource_name=name, changes={})

    entries = [change("configmap", "shop-flags"), change("node", "node-3"), change("serviceaccount", "checkout-sa"),
               change("secret", "billing-db"), change("node", "node-7"), change("priorityclass", "etl-critical")]
    assert [e.resource_name for e in concerning(world, entries)] == ["shop-flags", "node-3", "checkout-sa",
                                                                      "etl-critical"]


def test_a_paused_deployment_says_who_paused_it_what_waits_and_to_resume() -> None:
    from bot.engine.causes.base import World
    from bot.engine.causes.paused import detect
    from tools.control_plane import AuditLog
    from tools.kubernetes import Snapshot

    workload = {"metadata": {"name": "checkout"},
                "spec": {"paused": True, "template": {"spec": {"containers": [{"name": "app", "image": "shop/checkout:2.0"}]}}},
                "status": {"conditions": [{"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused"}]}}
    pods = [{"metadata": {"name": "checkout-1"}, "spec": {"containers": [{"name": "app", "image": "shop/checkout:1.9"}]}}]
    audit = [AuditLog(id="a-1", timestamp=ago(days=3), username="nina", action="update", resource_name="checkout",
                      changes={"spec.paused": {"from": False, "to": True}, "reason": {"from": None, "to": "INC-7"}}),
             AuditLog(id="a-2", timestamp=ago(hours=1), username="ci", action="update", resource_name="checkout",
                      changes={"image": {"from": "1.9", "to": "2.0"}})]
    world = World("checkout", "shop", NOW, 900, snap=Snapshot("shop", "checkout", "Deployment", workload, pods=pods),
                  audit=audit)

    [verdict_] = detect(world)
    assert verdict_.service_ok and verdict_.severity == "warning"
    assert verdict_.title == ("Deployment checkout is paused (spec.paused: true) since 2024-04-28 10:50 UTC (3 days ago) "
                              "by nina (“INC-7”): the controller rolls out no change to its template; ci's update at "
                              "09:50 UTC (1 h ago) has not rolled out; its pods still run 1.9, the template asks for 2.0")
    assert verdict_.plans[0].title.startswith("Resume the rollout once the reason it was paused no longer holds: "
                                              "`kubectl rollout resume deployment/checkout -n shop`")


def test_any_warning_event_is_quoted_in_its_own_words_and_ranked_by_whether_it_touches_failing_pods() -> None:
    from bot.engine.causes.base import World
    from bot.engine.findings import event_findings
    from tools.kubernetes import Snapshot

    def pod_(name: str, node: str, ready: bool) -> dict[str, object]:
        return {"metadata": {"name": name}, "spec": {"nodeName": node},
                "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}

    def event(reason: str, kind: str, name: str, message: str, count: int, kind_: str = "Warning") -> dict[str, object]:
        return {"type": kind_, "reason": reason, "message": message, "count": count,
                "involvedObject": {"kind": kind, "name": name},
                "firstTimestamp": ago(minutes=20).isoformat(), "lastTimestamp": ago(minutes=1).isoformat()}

    sandbox = 'failed to setup network for sandbox "' + "ab12" * 16 + '": failed to assign an IP address to container'
    snap = Snapshot("shop", "checkout", "Deployment", {"metadata": {"name": "checkout"}, "spec": {}},
                    pods=[pod_("checkout-a", "node-1", True), pod_("checkout-b", "node-2", False)],
                    events=[event("FailedCreatePodSandBox", "Pod", "checkout-b", sandbox, 71),
                            event("ImageGCFailed", "Node", "node-1", "only found 0 bytes eligible to free", 27),
                            event("Preempted", "Pod", "checkout-gone", "Preempted by pod on node node-2", 1, "Normal"),
                            event("BackOff", "Pod", "checkout-b", "Back-off restarting", 9),
                            event("Scheduled", "Pod", "checkout-b", "assigned", 1, "Normal")])
    found = {f.finding.title.split(" ×")[0]: f.finding for f in
             event_findings(evidence(**quiet(snapshot=snap)), World("checkout", "shop", NOW, 900, snap=snap), "")}

    assert set(found) == {"FailedCreatePodSandBox", "ImageGCFailed", "Preempted"}
    assert found["FailedCreatePodSandBox"].severity == "warning"
    assert found["FailedCreatePodSandBox"].title == (
        "FailedCreatePodSandBox ×71 on pod checkout-b (first 10:30 UTC, last 10:49 UTC): failed to setup network for "
        "sandbox \"…\": failed to assign an IP address to container")
    assert found["Preempted"].severity == "warning"  # the pod it took is gone
    assert found["ImageGCFailed"].severity == "info"  # node-1 runs only a ready pod


def test_an_unknown_event_on_the_failing_pods_explains_errors_no_rule_knows() -> None:
    from tools.kubernetes import Snapshot

    snap = Snapshot("shop", "checkout", "Deployment", {"metadata": {"name": "checkout"}, "spec": {}},
                    pods=[{"metadata": {"name": "checkout-b"}, "spec": {}, "status": {"conditions": []}}],
                    events=[{"type": "Warning", "reason": "FailedCreatePodSandBox", "count": 5,
                             "message": "failed to assign an IP address to container",
                             "involvedObject": {"kind": "Pod", "name": "checkout-b"},
                             "lastTimestamp": ago(minutes=1).isoformat()}])
    d = diagnose(evidence(**quiet(
        signals=healthy_signals(error_rate=signal("error_rate", 0.03, baseline=0.0, onset=ago(minutes=6))),
        snapshot=snap)))
    assert headline(d).startswith("checkout is degraded, most likely because of what Kubernetes reports on its failing "
                                  "pods: FailedCreatePodSandBox ×5 on pod checkout-b")
    assert d.plans[0].title.startswith("Fix what the FailedCreatePodSandBox events say (“failed to assign an IP address")


def test_a_pod_stuck_terminating_on_a_lost_node_is_no_rollout_leftover_and_says_what_it_holds() -> None:
    from bot.engine.findings import KubeView
    from tools.kubernetes import Snapshot

    node = {"metadata": {"name": "node-2"}, "status": {"conditions": [
        {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "lastTransitionTime": ago(minutes=26).isoformat(),
         "message": "Kubelet stopped posting node status."}]}}
    old = {"metadata": {"name": "checkout-rs6-old"}, "spec": {"nodeName": "node-2", "volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "checkout-data"}}]}}
    snap = Snapshot("shop", "checkout", "Deployment", {"metadata": {"name": "checkout"}}, pods=[old],
                    objects={"nodes": [node]})
    pods = [pod("checkout-rs7-1", 7), pod("checkout-rs6-old", 6, terminating=True, node="node-2")]
    view = KubeView(evidence(report=report(pods, revision(7, "v2", ago(days=1)), revision(6, "v1", ago(days=3)),
                                           desired=1), snapshot=snap))

    assert not any("as expected in a rollout" in text for text in view.old_news())
    [stuck] = [s.finding for s in view.stranded()]
    assert stuck.severity == "warning"
    assert stuck.title.startswith(
        "Pod checkout-rs6-old is stuck terminating on node node-2, which is Unknown since 10:24 UTC (NodeStatusUnknown: "
        "Kubelet stopped posting node status.): no kubelet there can end it; it still holds volume claim checkout-data")
    assert "taint the node node.kubernetes.io/out-of-service=nodeshutdown:NoExecute" in stuck.title


def test_a_script_run_on_what_the_service_consumes_before_its_alert_fired_is_the_suspect() -> None:
    from tools.control_plane import AuditLog

    run = AuditLog(id="a-3", timestamp=ago(minutes=40), username="leo", action="execute", resource_type="script",
                   resource_name="produce-test-event", changes={"topic": {"from": None, "to": "order-events"}})
    lag = Alert(id="al-2", name="ConsumerLagHigh", severity="P2", status="firing", resource_name="checkout",
                message="lag on order-events partition 3 above 5000", fired_at=ago(minutes=25))
    d = diagnose(evidence(**quiet(audit=[run], alerts=[lag])))

    assert verdict(d) == "degraded"
    assert headline(d).startswith("checkout is degraded, most likely because of leo's execute of script "
                                  "produce-test-event at 10:10 UTC")
    assert "15 min before the trouble began (it acted on order-events, which its logs or alerts name)" in headline(d)
    assert "alert ConsumerLagHigh firing since 10:25 UTC" in headline(d)
    assert d.plans[0].title.startswith("Check what leo's execute of script produce-test-event at 10:10 UTC")
