"""The engine's reasoning as pure functions over tool data: no backend, no clock but the one given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.answer import Action, Recommendation
from bot.policy import NO_APPROVERS_HINT
from bot.engine.diagnosis import key_chart
from bot.engine.findings import Evidence, signal_title
from bot.engine.reasoning import agreement, diagnose
from bot.engine.summary import write_summary
from tools.control_plane import AuditLog, Incident
from tools.kubernetes import (
    Condition,
    ContainerStatus,
    DeploymentReport,
    KubeEvent,
    PodStatus,
    Revision,
    Snapshot,
    Termination,
)
from tools.logs import LogPattern, LogReport
from tools.metrics import Sample, Signal

NOW = datetime(2024, 5, 1, 10, 50, tzinfo=UTC)
THRESHOLDS = {
    "error_rate": (0.01, 0.05),
    "latency_p99": (0.5, 2.0),
    "cpu_ratio": (0.8, 0.95),
    "memory_ratio": (0.8, 0.95),
    "restarts": (1.0, 5.0),
}
UNITS = {"error_rate": "ratio", "latency_p99": "s", "cpu_ratio": "ratio", "memory_ratio": "ratio",
         "restarts": "count", "request_rate": "req/s"}


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


def signal(name: str, value: float | None, *, baseline: float | None = None, onset: datetime | None = None,
           trend: str | None = "stable") -> Signal:
    limits = THRESHOLDS.get(name)
    health = "no_data" if value is None else "healthy"
    if value is not None and limits is not None:
        health = "critical" if value >= limits[1] else "warning" if value >= limits[0] else "healthy"
    return Signal(name=name, query=f"{name}_query", unit=UNITS[name], value=value, baseline=baseline, trend=trend,
                  health=health, thresholds=limits, onset=onset)


def healthy_signals(**overrides: Signal) -> list[Signal]:
    base = {
        "request_rate": signal("request_rate", 100.0, baseline=100.0),
        "error_rate": signal("error_rate", 0.001, baseline=0.001),
        "latency_p99": signal("latency_p99", 0.12, baseline=0.12),
        "cpu_ratio": signal("cpu_ratio", 0.3),
        "memory_ratio": signal("memory_ratio", 0.35),
        "restarts": signal("restarts", 0.0),
    }
    return list((base | overrides).values())


def revision(number: int, tag: str, created: datetime, replicas: int = 3, ready: int = 3) -> Revision:
    return Revision(number, f"checkout-rs{number}", [f"shop/checkout:{tag}"], created, replicas, ready)


def pod(name: str, rev: int, *, ready: bool = True, restarts: int = 0, reason: str | None = None,
        last: Termination | None = None, terminating: bool = False, node: str = "node-1",
        created: datetime | None = None) -> PodStatus:
    state = "running" if reason is None else "waiting"
    container = ContainerStatus("checkout", "img", ready, restarts, state, reason, None, last)
    return PodStatus(name, "Running", ready, restarts, reason, [container], f"checkout-rs{rev}", rev, terminating,
                     node, created or ago(days=1))


def report(pods: list[PodStatus], current: Revision, previous: Revision | None, *, desired: int = 3,
           events: list[KubeEvent] | None = None) -> DeploymentReport:
    ready = sum(p.ready for p in pods if not p.terminating)
    return DeploymentReport("shop", "checkout", desired, ready, desired, ready, desired - ready, False,
                            [Condition("Available", "True" if ready == desired else "False", None, None, None)],
                            current, previous, pods, events or [])


def evidence(**fields: object) -> Evidence:
    return Evidence(service="checkout", namespace="shop", deployment="checkout", now=NOW, window="15m",
                    window_seconds=900, checked=["metrics", "kubernetes", "logs", "control_plane"], **fields)  # type: ignore[arg-type]


CRASH = Termination("Error", 1, ago(seconds=40))
PANIC = LogPattern("<ts> ERROR panic: nil pointer dereference in cart.Total", 120, ago(minutes=6), ago(seconds=5),
                   "2024-05-01T10:49:55Z ERROR panic: nil pointer dereference in cart.Total", "error")


def logs(*patterns: LogPattern) -> LogReport:
    return LogReport('{app="checkout"}', ago(minutes=15), NOW, sum(p.count for p in patterns), False, list(patterns))


def bad_rollout(**overrides: object) -> Evidence:
    new, old = revision(7, "v2.1.0", ago(minutes=8), ready=0), revision(6, "v2.0.3", ago(days=6), replicas=0)
    pods = [pod(f"checkout-rs7-{i}", 7, ready=False, restarts=4, reason="CrashLoopBackOff", last=CRASH,
                node=f"node-{i}", created=ago(minutes=8)) for i in (1, 2, 3)]
    pods.append(pod("checkout-rs6-old", 6, terminating=True))
    fields: dict[str, object] = {
        "signals": healthy_signals(
            error_rate=signal("error_rate", 0.083, baseline=0.001, onset=ago(minutes=6), trend="increasing")
        ),
        "report": report(pods, new, old),
        "logs": logs(PANIC),
        "audit": [AuditLog(id="a-1", timestamp=ago(minutes=8, seconds=30), username="alice", action="update",
                           resource_name="checkout", changes={"image": {"from": "v2.0.3", "to": "v2.1.0"}})],
        "incidents": [Incident(id="INC-7", title="Checkout 5xx", severity="critical", status="new",
                               created_at=ago(minutes=4))],
    }
    return evidence(**(fields | overrides))


def test_titles_carry_the_value_and_the_threshold() -> None:
    assert signal_title(signal("error_rate", 0.083)) == "Error rate 8.3% (critical > 5%)"
    assert signal_title(signal("error_rate", 0.02, baseline=0.001)) == (
        "Error rate 2% (warning > 1%), up from 0.1% an hour ago"
    )
    assert signal_title(signal("cpu_ratio", 0.97)) == "CPU at 97% of limit (critical > 95%)"
    assert signal_title(signal("latency_p99", 3.1)) == "p99 latency 3.1 s (critical > 2 s)"
    assert signal_title(signal("restarts", 4.0)) == "Restarts 4 (warning ≥ 1)"
    assert signal_title(signal("error_rate", None)) == "Error rate: no data (the query returned nothing, not zero)"


def test_a_fresh_unhealthy_rollout_is_the_cause_and_a_rollback_is_recommended() -> None:
    d = diagnose(bad_rollout())

    assert d.cause is not None and d.cause.key == "bad_rollout"
    assert d.cause.sources == {"kubernetes", "metrics", "logs", "control_plane"}
    assert d.correlation == "Errors rose 2 min after checkout v2.1.0 rolled out at 10:42 UTC by alice"
    assert d.confidence == 0.9
    [rollback, ack] = d.plans
    assert rollback.title == "Roll back checkout to revision 6 (image v2.0.3)"
    assert rollback.action == Action(kind="rollback", target="shop/checkout")
    assert ack.action == Action(kind="ack_incident", target="INC-7", params={"title": "Checkout 5xx"})
    assert [f.severity for f in d.findings][:3] == ["critical"] * 3
    assert d.findings[0].source in ("kubernetes", "engine", "metrics")
    titles = [f.title for f in d.findings]
    assert "3 of 3 pods of v2.1.0 (revision 7) in CrashLoopBackOff: exit code 1 (Error), 4 restarts" in titles
    assert "Error rate 8.3% (critical > 5%), up from 0.1% an hour ago" in titles
    ruled = {r.cause: r.why for r in d.ruled_out}
    assert ruled["OOM"] == "exit code 1 (Error); memory at 35% of its limit"
    assert ruled["Node"] == "failing pods run on 3 nodes (node-1, node-2 and node-3)"
    assert ruled["Quota"] == "no FailedCreate events; all 3 pods were created"
    assert "Image pull" in ruled and "Traffic surge" in ruled
    # the old pod is old news, said once and not as a cause
    old = [f for f in d.findings if "checkout-rs6-old" in f.title]
    assert len(old) == 1 and old[0].severity == "info" and old[0].title.startswith("Old news:")


def test_errors_that_started_before_the_rollout_rule_the_rollout_out() -> None:
    new, old = revision(7, "v2.1.0", ago(minutes=3)), revision(6, "v2.0.3", ago(days=6))
    ev = evidence(
        signals=healthy_signals(error_rate=signal("error_rate", 0.03, baseline=0.001, onset=ago(minutes=10))),
        report=report([pod(f"p{i}", 7, created=ago(minutes=3)) for i in range(3)], new, old),
        audit=[],
    )

    d = diagnose(ev)

    assert d.cause is not None and d.cause.key == "unexplained"
    assert not [p for p in d.plans if p.action and p.action.kind == "rollback"]
    ruled = {r.cause: r.why for r in d.ruled_out}
    assert ruled["The checkout v2.1.0 rollout"] == "errors rose at 10:40 UTC, 7 min before it rolled out"


def test_restarts_that_recovered_are_old_news() -> None:
    current = revision(3, "v1.4.2", ago(days=2))
    recovered = pod("checkout-rs3-a", 3, restarts=2, last=Termination("OOMKilled", 137, ago(hours=3)))
    d = diagnose(evidence(signals=healthy_signals(), report=report([recovered, pod("checkout-rs3-b", 3),
                                                                     pod("checkout-rs3-c", 3)], current, None)))

    assert d.healthy and d.cause is None and not d.plans
    assert d.old_news == [
        "pod checkout-rs3-a restarted 2 times, last at 07:50 UTC (exit code 137 (OOMKilled)) and is ready again"
    ]
    summary = write_summary(d, [], approvers_configured=True)
    assert summary.startswith("No problems found in checkout: error rate 0.1%")
    assert "Old news, not the cause: pod checkout-rs3-a restarted 2 times" in summary


def test_a_noisy_but_healthy_service_raises_no_alarm() -> None:
    noise = LogPattern("<ts> ERROR cache miss for key=<str>", 400, ago(minutes=15), NOW, "ERROR cache miss", "error")
    current = revision(3, "v1.4.2", ago(days=2))
    d = diagnose(evidence(signals=healthy_signals(error_rate=signal("error_rate", 0.004)), logs=logs(noise),
                          report=report([pod(f"p{i}", 3) for i in range(3)], current, None), audit=[]))

    assert d.healthy and not d.ruled_out and d.confidence == 0.85
    assert [(f.severity, f.source) for f in d.findings] == [("info", "logs")]
    assert "noise" in d.findings[0].title
    summary = write_summary(d, [], approvers_configured=True)
    assert summary.startswith("No problems found in checkout: ")
    assert "3/3 pods ready on v1.4.2 (revision 3, rolled out 2 days ago)" in summary
    assert "no changes in the audit log" in summary


def test_stuck_pods_without_evidence_of_why_get_no_restart_and_no_invented_cause() -> None:
    current = revision(3, "v1.4.2", ago(days=2))
    stuck = pod("checkout-rs3-a", 3, ready=False, reason="ContainerCreating", created=ago(minutes=30))
    d = diagnose(evidence(report=report([stuck, pod("b", 3), pod("c", 3)], current, None)))

    assert d.cause is None and not d.healthy
    assert not [p for p in d.plans if p.action]
    assert any(f.title.startswith("1 pod not ready for 30 min (ContainerCreating)") for f in d.findings)


def test_cpu_saturation_scales_out_by_half_and_at_least_one() -> None:
    for desired, wanted in ((1, 2), (4, 6), (5, 8)):
        current = revision(3, "v1.4.2", ago(days=2), replicas=desired, ready=desired)
        d = diagnose(evidence(
            signals=healthy_signals(cpu_ratio=signal("cpu_ratio", 0.97, onset=ago(minutes=5))),
            report=report([pod(f"p{i}", 3) for i in range(desired)], current, None, desired=desired),
        ))
        assert d.cause is not None and d.cause.key == "cpu_saturation"
        [scale] = [p for p in d.plans if p.action]
        assert scale.action == Action(kind="scale", target="shop/checkout", params={"replicas": wanted})
        assert d.confidence == 0.3  # metrics alone


def test_failing_calls_name_the_dependency_and_no_rollback() -> None:
    timeout = LogPattern('<ts> level=error msg=<str> err="connection to payments timed out after <num>ms"', 300,
                         ago(minutes=6), NOW, 'level=error err="connection to payments.shop.svc:8080 timed out"',
                         "error")
    current = revision(8, "v2.2.0", ago(days=4))
    d = diagnose(evidence(
        signals=healthy_signals(error_rate=signal("error_rate", 0.06, baseline=0.001, onset=ago(minutes=6))),
        report=report([pod(f"p{i}", 8) for i in range(3)], current, revision(7, "v2.1.9", ago(days=9))),
        logs=logs(timeout), audit=[],
    ))

    assert d.cause is not None and d.cause.key == "dependency" and d.cause.sources == {"logs", "metrics"}
    assert d.confidence == 0.6
    assert [p.action for p in d.plans] == [None]
    assert d.plans[0].title.startswith("Diagnose payments:")
    ruled = {r.cause: r.why for r in d.ruled_out}
    assert ruled["A recent deploy or change"] == (
        "the last rollout (v2.2.0 (revision 8)) was 4 days ago; the audit log has no changes to checkout"
    )
    assert ruled["Crashing pods"] == "3/3 pods ready, no restarts"
    assert "payments.shop.svc:8080" in d.cause.text


def test_a_control_plane_change_before_the_errors_is_the_suspect() -> None:
    current = revision(8, "v2.2.0", ago(days=4))
    change = AuditLog(id="a-9", timestamp=ago(minutes=12), username="bob", action="update", resource_name="checkout",
                      changes={"replicas": {"from": 6, "to": 2}})
    d = diagnose(evidence(
        signals=healthy_signals(latency_p99=signal("latency_p99", 1.1, baseline=0.1, onset=ago(minutes=9))),
        report=report([pod(f"p{i}", 8) for i in range(3)], current, None), audit=[change],
    ))

    assert d.cause is not None and d.cause.key == "config_change"
    assert d.correlation == "Latency rose 3 min after bob updated checkout at 10:38 UTC"
    assert d.cause.text == "bob's update of checkout at 10:38 UTC (replicas 6 → 2)"


def test_confidence_follows_agreement_and_drops_with_failed_tools() -> None:
    assert [agreement(n) for n in (1, 2, 3, 4)] == [0.3, 0.6, 0.85, 0.9]
    blind = bad_rollout(logs=None, audit=None, incidents=None, failed={"logs": "timeout", "control_plane": "timeout"})
    d = diagnose(blind)
    assert d.cause is not None and d.cause.sources == {"kubernetes", "metrics"}
    assert d.confidence == 0.4  # two sources (0.6), two tools missing


def test_no_metrics_at_all_is_said_and_not_called_healthy() -> None:
    nothing = [signal(name, None) for name in UNITS]
    d = diagnose(evidence(signals=nothing, report=report([pod("p", 3)], revision(3, "v1", ago(days=2)), None,
                                                         desired=1)))
    assert not d.healthy
    [finding] = [f for f in d.findings if f.severity != "info"]
    assert finding.title == "No metrics for checkout: every golden-signal query returned no data (not zero)"
    summary = write_summary(d, [], approvers_configured=True)
    assert summary.startswith("checkout needs a look: no metrics for checkout")
    assert "No problems" not in summary


def test_the_summary_argues_and_says_what_could_not_be_proposed_or_checked() -> None:
    d = diagnose(bad_rollout(failed={"logs": "timeout: logs.error_patterns: timed out"}, logs=None))
    recommendations = [
        Recommendation(title=d.plans[0].title, action=d.plans[0].action),
        Recommendation(title=d.plans[1].title, action=d.plans[1].action, approval_id="apr_1"),
    ]
    summary = write_summary(d, recommendations, approvers_configured=False,
                            problems={d.plans[0].title: "deployment is paused"})

    assert summary.startswith("checkout is failing, most likely because of the v2.1.0 rollout (revision 7 at "
                              "10:42 UTC by alice): 3 of 3 pods")
    assert "Errors rose 2 min after checkout v2.1.0 rolled out at 10:42 UTC by alice." in summary
    assert "Ruled out: OOM, image pull, node, quota" in summary
    assert "roll back checkout to revision 6 (image v2.0.3) (cannot be proposed: deployment is paused)" in summary
    assert "(approval apr_1)" in summary and NO_APPROVERS_HINT in summary
    assert summary.endswith("Could not check logs (timeout: logs.error_patterns: timed out).")


def test_the_chart_shows_what_users_feel_even_when_restarts_rose_first() -> None:
    # Restarts of a crash loop rise and fall with its backoff: drawn, they read as recoveries that did not happen.
    restarts = signal("restarts", 12.0, onset=ago(minutes=8))
    errors = signal("error_rate", 0.083, baseline=0.001, onset=ago(minutes=6), trend="increasing")
    for s, values in ((restarts, (0, 12, 0)), (errors, (0.001, 0.08, 0.083))):
        s.points = [Sample(ago(minutes=9 - 3 * i), v) for i, v in enumerate(values)]
    ev = bad_rollout(signals=healthy_signals(error_rate=errors, restarts=restarts))
    d = diagnose(ev)
    assert d.onset is restarts  # it did turn bad first
    chart = key_chart(ev, d)
    assert chart is not None and chart.title == "Error rate of checkout"
    assert [m.kind for m in chart.marks] == ["onset", "change"]


def test_a_firing_alert_named_in_the_question_is_said_and_tied_to_the_cause_it_is_about() -> None:
    from tools.control_plane import Alert

    timeout = LogPattern('<ts> level=error err="connection to payments timed out"', 300, ago(minutes=6), NOW,
                         'level=error err="connection to payments.shop.svc:8080 timed out"', "error")
    alert = Alert(id="al-9", name="CheckoutHighErrorRate", severity="P1", status="firing", resource_name="checkout",
                  message="5xx ratio 6%", fired_at=ago(minutes=5))
    d = diagnose(evidence(
        signals=healthy_signals(error_rate=signal("error_rate", 0.06, baseline=0.001, onset=ago(minutes=6))),
        report=report([pod(f"p{i}", 8) for i in range(3)], revision(8, "v2.2.0", ago(days=4)), None),
        logs=logs(timeout), audit=[], alerts=[alert], question="CheckoutHighErrorRate fired, why?",
    ))

    said = next(f for f in d.findings if f.title.startswith("Alert CheckoutHighErrorRate (P1) firing"))
    assert said.severity == "info" and "(named in the question)" in (said.evidence or "")
    assert "on checkout: 5xx ratio 6% — explained by its dependency payments.shop.svc:8080" in said.title


def replicaset(number: int, image: str, **annotations: str) -> dict[str, object]:
    template = {"metadata": {"labels": {"app": "checkout", "pod-template-hash": f"h{number}"}},
                "spec": {"containers": [{"name": "checkout", "image": image}]}}
    if annotations:
        template["metadata"]["annotations"] = annotations  # type: ignore[index]
    return {"metadata": {"name": f"checkout-rs{number}"}, "spec": {"template": template}}


def test_a_restart_of_the_same_template_is_not_rolled_back_and_a_new_image_is() -> None:
    # `kubectl rollout restart` makes a revision whose pods run what the previous one ran: when they fail, what
    # they read from outside the template changed, and rolling back would run the same thing again.
    restart = Snapshot("shop", "checkout", "Deployment", {}, replicasets=[
        replicaset(6, "shop/checkout:v2.0.3"),
        replicaset(7, "shop/checkout:v2.0.3", **{"kubectl.kubernetes.io/restartedAt": "2026-12-03T11:50:00Z"})])
    d = diagnose(bad_rollout(snapshot=restart))
    assert d.cause is None or d.cause.key != "bad_rollout"
    assert not [p for p in d.plans if p.action and p.action.kind == "rollback"]
    assert any(r.cause == "A rollback" and "restart of revision 6's template" in r.why for r in d.ruled_out)

    upgrade = Snapshot("shop", "checkout", "Deployment", {}, replicasets=[
        replicaset(6, "shop/checkout:v2.0.3"), replicaset(7, "shop/checkout:v2.1.0")])
    d = diagnose(bad_rollout(snapshot=upgrade))
    assert d.cause is not None and d.cause.key == "bad_rollout"
    assert d.plans[0].action == Action(kind="rollback", target="shop/checkout")


def test_a_new_revision_that_cannot_start_while_the_old_one_serves_is_degraded_not_failing() -> None:
    old, new = replicaset(6, "shop/checkout:v2.0.3"), replicaset(7, "shop/checkout:v2.1.0")
    old["status"], new["status"] = {"readyReplicas": 3}, {"readyReplicas": 0}
    serving = Snapshot("shop", "checkout", "Deployment", {}, replicasets=[old, new])
    d = diagnose(bad_rollout(snapshot=serving, signals=healthy_signals()))
    assert d.cause is not None and d.cause.key == "bad_rollout" and d.cause.severity == "warning"
    assert "the previous revision still serves all 3 replicas (v2.0.3)" in d.cause.clauses[-1]
    assert d.plans[0].action == Action(kind="rollback", target="shop/checkout")  # rolling back still finishes it
    # the same rollout while calls fail is an outage
    d = diagnose(bad_rollout(snapshot=serving))
    assert d.cause is not None and d.cause.severity == "critical"


def test_an_alert_still_firing_for_a_spike_that_is_over_is_history_and_the_failing_calls_are_the_spikes() -> None:
    from tools.control_plane import Alert

    spike = [Sample(ago(seconds=s), v) for s, v in [(800, 0.001), (330, 0.001), (300, 0.09), (240, 0.001),
                                                     (120, 0.001), (0, 0.001)]]
    errors = healthy_signals(error_rate=signal("error_rate", 0.001, baseline=0.001))
    next(s for s in errors if s.name == "error_rate").points = spike
    reset = LogPattern('<ts> level=error err="payments: connection reset by peer"', 44, ago(seconds=330),
                       ago(seconds=242), 'level=error err="payments: connection reset by peer"', "error")
    alert = Alert(id="al-9", name="CheckoutHighErrorRate", severity="P1", status="firing", resource_name="checkout",
                  message="5xx ratio over 5% for 1m", fired_at=ago(seconds=270))
    d = diagnose(evidence(
        signals=errors, report=report([pod(f"p{i}", 8) for i in range(3)], revision(8, "v2.2.0", ago(days=4)), None),
        logs=logs(reset), audit=[], alerts=[alert], question="CheckoutHighErrorRate is firing, is checkout down?",
    ))

    assert d.cause is None and d.healthy and not any(f.severity != "info" for f in d.findings)
    said = next(f for f in d.findings if f.title.startswith("Alert CheckoutHighErrorRate (P1) firing"))
    assert "it fired for the spike of 10:45 UTC–10:46 UTC, which is over" in said.title
    assert "no action is needed now" in d.history[-1]
    # the same alert with the errors still high is a current fault, never history
    next(s for s in errors if s.name == "error_rate").health = "warning"
    assert not diagnose(evidence(signals=errors, report=report([pod("p0", 8)], revision(8, "v2.2.0", ago(days=4)), None),
                                 logs=logs(reset), audit=[], alerts=[alert])).healthy


def test_an_alert_no_cause_explains_on_a_service_users_find_healthy_is_said_not_raised() -> None:
    from tools.control_plane import Alert

    alert = Alert(id="al-7", name="PodRestarted", severity="warning", status="firing", resource_name="p0",
                  message="Container checkout in pod shop/p0 restarted 1 time in the last 2 hours.", fired_at=ago(hours=1))
    ready = [{"metadata": {"name": f"p{i}"}, "status": {"phase": "Running",
                                                     "conditions": [{"type": "Ready", "status": "True"}]}}
             for i in range(3)]
    fine = evidence(signals=healthy_signals(), report=report([pod(f"p{i}", 8) for i in range(3)],
                                                             revision(8, "v2.2.0", ago(days=4)), None),
                    snapshot=Snapshot("shop", "checkout", "Deployment", {"metadata": {"name": "checkout"}}, pods=ready),
                    audit=[], alerts=[alert], question="PodRestarted is firing on checkout, do we need to act?")
    d = diagnose(fine)
    assert d.cause is None and d.healthy and d.unaffected == ["error rate 0.1%", "p99 latency 120 ms", "3/3 pods ready"]
    assert d.unfelt == ["alert PodRestarted (warning) fires on p0: Container checkout in pod shop/p0 restarted 1 time in "
                        "the last 2 hours"]
    summary = write_summary(d, [], approvers_configured=True)
    assert summary.startswith("checkout's users are not affected (error rate 0.1%, p99 latency 120 ms and 3/3 pods "
                              "ready); alert PodRestarted (warning) fires on p0")
    assert "not user-impacting now: no action is needed now" in summary
    # with latency unread nothing shows users are fine: the alert still needs a look
    fine.signals = [s for s in fine.signals if s.name != "latency_p99"]
    assert not diagnose(fine).healthy
