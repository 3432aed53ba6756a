"""The general layers that keep an unseen failure mode from reading as "no problems found": evidence the signals
do not show (a firing alert, a new log pattern, a 4xx surge the question names, the question's own complaint)."""
from __future__ import annotations

from bot.engine.findings import ASKED_KEY, asked_status_queries
from bot.engine.reasoning import diagnose
from bot.engine.summary import headline, verdict, write_summary
from tests.test_engine_reasoning import NOW, ago, evidence, healthy_signals, logs, pod, report, revision
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

    asked = diagnose(evidence(**quiet(question="is checkout ok?")))
    assert verdict(asked) == "healthy" and headline(asked).startswith("No problems found in checkout")
