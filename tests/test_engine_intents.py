"""Understanding a message: intents and parameters (no I/O), and which service it is about (catalog, cluster,
thread), against the Kubernetes fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.config import load_settings
from bot.engine.core import DiagnosticEngine
from bot.engine.intents import parse
from bot.engine.resolve import Resolver
from devtools.loopback.kube import KubeFake
from bot.toolbox import Toolbox
from tools.kubernetes import Kubernetes

CATALOG = {
    "checkout": {"namespace": "shop", "aliases": ["checkout-api", "cart checkout"]},
    "catalog": {"namespace": "shop"},
}


@pytest.mark.parametrize(
    ("text", "intent", "explicit", "params"),
    [
        ("why is checkout failing?", "diagnose", None, {}),
        ("<@U0BOT> is checkout down", "diagnose", None, {}),
        ("diagnose checkout", "diagnose", "checkout", {}),
        ("and its logs?", "logs", None, {}),
        ("what changed?", "changes", None, {}),
        ("metrics checkout", "metrics", "checkout", {}),
        ("what's the p99 latency of checkout", "metrics", None, {}),
        ("promql: sum(rate(x[5m]))", "metrics", None, {"expr": "sum(rate(x[5m]))"}),
        ("pods checkout", "pods", "checkout", {}),
        ("capacity api", "capacity", "api", {}),
        ("is api running out of cpu", "capacity", None, {}),
        ("cost checkout 30d", "cost", "checkout", {"days": 30}),
        ("cost 7d", "cost", None, {"days": 7}),
        ("how much did we spend last 2 weeks", "cost", None, {"days": 14}),
        ("incidents", "incidents", None, {}),
        ("anything firing?", "alerts", None, {}),
        ("restart checkout", "restart", "checkout", {}),
        ("can you restart checkout please", "restart", "checkout", {}),
        ("scale checkout to 5", "scale", "checkout", {"replicas": 5}),
        ("rollback checkout", "rollback", "checkout", {}),
        ("roll back checkout", "rollback", "checkout", {}),
        ("ack incident INC-101", "ack_incident", None, {"incident_id": "INC-101"}),
        ("run automation flush-cache on catalog", "run_automation", "catalog", {"script": "flush-cache"}),
        ("help", "help", None, {}),
        ("tell me a joke", "chat", None, {}),
    ],
)
def test_intents(text: str, intent: str, explicit: str | None, params: dict[str, object]) -> None:
    parsed = parse(text)
    assert (parsed.intent, parsed.explicit, parsed.params) == (intent, explicit, params)


def test_a_topic_word_that_names_a_known_namespace_or_workload_does_not_decide_the_intent() -> None:
    question = "no invoices went out this morning — did the nightly-invoices cronjob in billing even run last night?"
    names = {"nightly-invoices", "billing"}
    assert parse(question).intent == "cost"  # without knowing that billing is a namespace, "billing" reads as cost
    assert parse(question, names).intent == "diagnose"
    assert parse("how much did billing cost last 7 days", names).intent == "cost"
    assert parse("billing spend 30d", names).params == {"days": 30}


def test_candidates_leave_out_common_words_and_periods() -> None:
    assert parse("and its logs?").candidates == []
    assert parse("cost 7d").candidates == []
    assert parse("why is shop/checkout slow in prod today?").candidates == ["shop/checkout"]


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with KubeFake() as fake:
        for namespace, name in [("shop", "checkout"), ("payments", "ledger"), ("a", "web"), ("b", "web"),
                                ("default", "api"), ("ops", "api")]:
            fake.add_deployment(namespace, name, image=f"{name}:v1")
        yield fake


@pytest.fixture
async def resolver(kube: KubeFake) -> AsyncIterator[Resolver]:
    tool = Kubernetes(kubeconfig=kube.kubeconfig_path, context=kube.context, cache_ttl=0)  # the resolver caches
    try:
        yield Resolver(load_settings(env={}, config_path="/dev/null", services=CATALOG), tool)
    finally:
        await tool.aclose()


async def test_catalog_names_and_multi_word_aliases_win(resolver: Resolver, kube: KubeFake) -> None:
    for text in ("why is cart checkout slow?", "diagnose CHECKOUT-API", "is checkout ok"):
        resolution = await resolver.resolve(parse(text), None)
        assert resolution.target is not None and resolution.target.source == "catalog", text
        assert (resolution.target.name, resolution.target.namespace) == ("checkout", "shop")
    assert not kube.requests  # the catalog needs no cluster


async def test_deployments_are_found_in_the_cluster(resolver: Resolver, kube: KubeFake) -> None:
    ledger = await resolver.resolve(parse("why is ledger failing"), None)
    assert ledger.target is not None and (ledger.target.name, ledger.target.namespace) == ("ledger", "payments")
    assert ledger.target.source == "kubernetes" and ledger.target.ref.log_selector == '{namespace="payments", app="ledger"}'

    api = await resolver.resolve(parse("logs api"), None)  # in the default namespace and another: the default
    assert api.target is not None and api.target.namespace == "default"

    web = await resolver.resolve(parse("diagnose web"), None)  # two namespaces, neither the default
    assert web.target is None and web.ambiguous == ["a/web", "b/web"]
    chosen = await resolver.resolve(parse("diagnose b/web"), None)
    assert chosen.target is not None and (chosen.target.name, chosen.target.namespace) == ("b/web", "b")

    lists = [path for method, path in kube.requests if path.startswith("/apis/apps/v1/deployments")]
    assert len(lists) == 1  # the listing is cached


async def test_a_new_deployment_is_found_without_waiting_for_the_cache(resolver: Resolver, kube: KubeFake) -> None:
    assert (await resolver.resolve(parse("diagnose fresh"), None)).unknown == "fresh"
    kube.add_deployment("shop", "fresh", image="fresh:v1")
    resolver._fetched -= 60  # a listing older than the refresh-on-miss age
    found = await resolver.resolve(parse("diagnose fresh"), None)
    assert found.target is not None and found.target.namespace == "shop"


async def test_follow_ups_use_the_thread_s_service(resolver: Resolver) -> None:
    follow_up = await resolver.resolve(parse("and its logs?"), "checkout")
    assert follow_up.target is not None and follow_up.target.name == "checkout" and follow_up.from_session

    # a word that names nothing does not pull the thread off its service, and is said
    other = await resolver.resolve(parse("what about the frontend?"), "ledger")
    assert other.target is not None and other.target.name == "ledger" and other.ignored == ["frontend"]

    # with no thread service, an unknown name is unknown
    assert (await resolver.resolve(parse("why is frobnicator failing?"), None)).unknown == "frobnicator"
    assert await resolver.known() == ["api", "catalog", "checkout", "ledger", "web"]


async def test_without_a_cluster_or_catalog_the_name_is_taken_as_given() -> None:
    resolver = Resolver(load_settings(env={}, config_path="/dev/null"), Kubernetes(enabled=False))
    resolution = await resolver.resolve(parse("diagnose checkout"), None)
    assert resolution.target is not None and resolution.target.source == "unverified"
    assert resolution.target.namespace == "default"


def test_the_acknowledgement_names_the_service_without_io(tmp_path) -> None:
    settings = load_settings(env={"SREBOT_KUBERNETES": "off"}, config_path="/dev/null", services=CATALOG)
    engine = DiagnosticEngine(settings, Toolbox.from_settings(settings), actions=None)  # type: ignore[arg-type]
    assert engine.acknowledgement("why is cart checkout slow?") == "Looking into checkout…"
    assert engine.acknowledgement("and its logs?") == "Looking into it…"  # before the session is read
    assert engine.acknowledgement("help") == "One moment…"
    assert engine.acknowledgement("incidents") == "Looking at open incidents…"
    assert engine.acknowledgement("what now") == "Looking into it…"
    assert engine.acknowledgement("scale checkout 5") == "Preparing scale of checkout…"
