"""Turns a message into an intent, the words that may name a service, and parameters; no I/O."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from bot.actions import REGISTRY

# Intents of the engine. "pods" and "changes" answer as Answer intent "diagnose"; the write intents as "action".
ACTIONS = tuple(REGISTRY)
NEEDS_SERVICE = {"diagnose", "logs", "metrics", "pods", "changes", "capacity"} | {
    kind for kind, action in REGISTRY.items() if action.needs_service
}

_WORD = r"[A-Za-z0-9][A-Za-z0-9_.\-/]*"
_PERIOD = re.compile(r"\b(\d{1,3})\s*(d|days?|w|weeks?|m|months?)\b", re.IGNORECASE)
# "in namespace shop", "in the shop namespace", "in `shop`" (a namespace word the user wrote)
_NAMESPACE = re.compile(
    r"\bnamespace\s+[`'\"]?(?P<a>[a-z0-9][a-z0-9-]*)|\b(?:in|to|from|into)\s+(?:the\s+)?[`'\"]?(?P<b>[a-z0-9][a-z0-9-]*)"
    r"[`'\"]?\s+namespace\b",
    re.IGNORECASE,
)
_SLACK_MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")
_TEAMS_MENTION = re.compile(r"<at>[^<]*</at>", re.IGNORECASE)


def _rule(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# A command word at the very start decides the intent ("logs checkout", "/sre pods checkout").
_COMMANDS: dict[str, str] = {
    "diagnose": "diagnose",
    "diag": "diagnose",
    "investigate": "diagnose",
    "check": "diagnose",
    "logs": "logs",
    "log": "logs",
    "metrics": "metrics",
    "signals": "metrics",
    "pods": "pods",
    "pod": "pods",
    "deployment": "pods",
    "rollout": "pods",
    "capacity": "capacity",
    "cost": "cost",
    "costs": "cost",
    "spend": "cost",
    "incidents": "incidents",
    "incident": "incidents",
    "alerts": "alerts",
    "alert": "alerts",
    "changes": "changes",
}

# Then the first rule that matches anywhere in the text, in this order: topics that are never about one
# service's health first, questions about a failure before the narrower topics they may mention.
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("cost", _rule(r"\b(costs?|spend(ing)?|bill(ing)?|budget)\b")),
    ("incidents", _rule(r"\bincidents?\b")),
    ("alerts", _rule(r"\b(alerts?|alerting|firing|paging|pages)\b")),
    # a question about something going wrong is a diagnosis, whatever else it mentions ("the logs look clean")
    (
        "diagnose",
        _rule(
            r"\b(why|what'?s wrong|wrong with|what'?s going on|going on|happening|fail\w*|broken|down|outage|crash\w*|"
            r"restart(s|ed|ing)|keeps?|stuck|pending|won'?t|can'?t|cannot|never|not (starting|ready|scaling|coming up|"
            r"responding|working|running)|isn'?t|aren'?t|doesn'?t|oom\w*|out of memory|killed|evicted|unhealthy|"
            r"degraded|slow|high latency|latency is|through the roof|timing out|time ?outs?|5\d\ds?|5xx|problems?|"
            r"issues?|worry|unreachable|unschedulable|blocking|blocked|diagnose|investigate|"
            # "did the nightly job even run?": whether something that should have happened did
            r"(?:did|didn'?t|has|hasn'?t|have|haven'?t)\b[\w\s-]{0,60}?\b(?:run|ran|fire|fired|trigger(?:ed)?|"
            r"execute[ds]?|finish(?:ed)?|complete[ds]?))\b"
        ),
    ),
    ("logs", _rule(r"\b(logs?|log lines|stack ?traces?|exceptions?)\b")),
    (
        "diagnose",
        _rule(
            r"\b(why|what'?s wrong|wrong with|failing|fails|failed|broken|down|outage|crash\w*|erroring|unhealthy|"
            r"degraded|slow|timing out|5\d\d|5xx|problems?|issues?|diagnose|investigate)\b"
        ),
    ),
    ("capacity", _rule(r"\b(capacity|cpu|memory|saturat\w*|headroom|limits|requests and limits|throttl\w*)\b")),
    ("changes", _rule(r"\bwhat('?s| has)?\s+changed\b|\b(changes?|deploy(s|ed|ments?)?|rollouts?|releases?)\b")),
    ("pods", _rule(r"\b(pods?|replicas|containers?|restarts?)\b")),
    ("metrics", _rule(r"\b(metrics|golden signals|latency|p99|error rate|traffic|rps|throughput)\b")),
    ("diagnose", _rule(r"\b(check|health|healthy|status of|look at|errors?|ok|okay|fine)\b")),
]

_ACTION_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("ack_incident", _rule(r"\b(ack|acknowledge)\s+(the\s+)?incident\s+#?(?P<id>[\w-]+)")),
    ("run_automation", _rule(r"\brun\s+(the\s+)?(automation|script)\s+(?P<script>[\w.-]+)(\s+(on|for)\s+(?P<rest>.*))?")),
    ("scale", _rule(r"^\s*(please\s+)?scale\s+(?P<rest>.*)$")),
    ("restart", _rule(r"^\s*(please\s+)?(rollout\s+)?restart\s+(?P<rest>.+)$")),
    ("rollback", _rule(r"^\s*(please\s+)?(rollback|roll\s+back|revert|undo)\s+(?P<rest>.+)$")),
    # also in a sentence: "can you restart checkout?"
    ("restart", _rule(r"\b(can|could|should|would)\s+(you|we|i)\s+restart\s+(?P<rest>.+)$")),
    ("rollback", _rule(r"\b(can|could|should|would)\s+(you|we|i)\s+(rollback|roll\s+back)\s+(?P<rest>.+)$")),
    ("scale", _rule(r"\b(can|could|should|would)\s+(you|we|i)\s+scale\s+(?P<rest>.+)$")),
]

# Words that never name a service.
STOPWORDS = frozenset(
    """a an the is are was were be been being of for to in on at by with and or but if then so as than
    what whats what's why how who when where which it its it's this that these those me my our your their
    i we you they he she them us please pls can could would should will do does did done doing any some all
    there here now today yesterday tonight ago diagnose diag investigate check logs log metrics metric signals
    cost costs spend spending bill billing budget incidents incident alerts alert alerting capacity restart
    restarts restarted restarting scale scaled rollback roll back revert undo ack acknowledge run automation
    script pods pod deployment deployments rollout rollouts replicas replica help status cancel stop failing
    fails failed broken down slow health healthy unhealthy degraded wrong problem problems issue issues
    errors error erroring going on happening happened changed change changes latency rate traffic rps
    throughput cpu memory service services look about into tell show give get last past week weeks day days
    month months hour hours minute minutes d w m h again also too just still firing paging pages up hi hello
    hey thanks thank ok okay fine promql resources limits headroom crash crashing crashes crashed saturated
    saturation throttled throttling exceptions exception stack trace traces deploy deployed deploys release
    releases new old p99 golden outage timing out many much more less high low lot lots going container
    containers has have had not no yes out off prod production env environment cluster namespace app apps
    there's let let's lets see know think seems seem looks like something anything everything whole site
    system platform requests""".split()
)


@dataclass
class Parsed:
    intent: str
    text: str  # the message without mentions
    candidates: list[str] = field(default_factory=list)  # words that may name a service, in order
    explicit: str | None = None  # the word right after a command or action verb: a name the user meant
    params: dict[str, object] = field(default_factory=dict)


def clean(text: str) -> str:
    return _TEAMS_MENTION.sub(" ", _SLACK_MENTION.sub(" ", text)).strip()


def candidates(text: str) -> list[str]:
    """Words of `text` that could be a service or deployment name (namespace/name included)."""
    found = []
    for raw in re.findall(_WORD, text):
        word = raw.strip(".-/")
        lowered = word.lower()
        if (
            len(word) > 1
            and lowered not in STOPWORDS
            and not word.isdigit()
            and not _PERIOD.fullmatch(word)
            and not re.fullmatch(r"\d+(ms|s|m|h|d|w|%)?", lowered)
        ):
            found.append(word)
    return found


def parse(text: str, names: Collection[str] = ()) -> Parsed:
    """Classify `text`; the service is still a candidate word, which the engine resolves against the catalog
    and the cluster. `names`: what the text may name (services, workloads, namespaces) — a topic word that is
    one of them is that thing's name, not the topic ("did the invoices job in billing run?" is not about cost)."""
    cleaned = clean(text)
    words = candidates(cleaned)
    if re.match(r"^\s*(help|\?|what can you do|commands|usage)\s*[?!.]*\s*$", cleaned, re.IGNORECASE) or not cleaned:
        return Parsed("help", cleaned, words)
    promql = re.match(r"^\s*promql\s*:\s*(?P<expr>.+)$", cleaned, re.IGNORECASE | re.DOTALL)
    if promql:
        return Parsed("metrics", cleaned, [], params={"expr": promql.group("expr").strip()})
    action = _action(cleaned, words)
    if action is not None:
        return action
    first = re.match(r"^\s*/?(?:sre\s+)?(?P<command>[a-z]+)\b\s*(?P<rest>.*)$", cleaned, re.IGNORECASE | re.DOTALL)
    if first and first.group("command").lower() in _COMMANDS:
        intent = _COMMANDS[first.group("command").lower()]
        rest = candidates(first.group("rest"))
        parsed = Parsed(intent, cleaned, words, explicit=rest[0] if rest else None)
    else:
        # "moved it to the billing namespace" is about a namespace, not about billing
        topic = _NAMESPACE.sub(" ", cleaned)
        if names:
            known = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True) if n)
            topic = re.sub(rf"(?<![\w/-])(?:{known})(?![\w-])", " ", topic, flags=re.IGNORECASE)
        intent = next((name for name, pattern in _RULES if pattern.search(topic)), "chat")
        parsed = Parsed(intent, cleaned, words)
    namespace = _NAMESPACE.search(cleaned)
    if namespace:
        parsed.params["namespace"] = (namespace.group("a") or namespace.group("b")).lower()
        parsed.candidates = [w for w in parsed.candidates if w.lower() != parsed.params["namespace"]]
    if parsed.intent == "cost":
        period = _PERIOD.search(cleaned)
        if period:
            unit = period.group(2)[0].lower()
            parsed.params["days"] = int(period.group(1)) * {"d": 1, "w": 7, "m": 30}[unit]
    return parsed


def _action(cleaned: str, words: list[str]) -> Parsed | None:
    for intent, pattern in _ACTION_RULES:
        match = pattern.search(cleaned)
        if not match:
            continue
        groups = match.groupdict()
        rest = candidates(groups.get("rest") or "")
        parsed = Parsed(intent, cleaned, words, explicit=rest[0] if rest else None)
        if intent == "ack_incident":
            parsed.params["incident_id"] = groups["id"]
            parsed.explicit = None
        elif intent == "run_automation":
            parsed.params["script"] = groups["script"]
            parsed.candidates = rest
        elif intent == "scale":
            count = re.search(r"\b(?:to\s+)?(\d{1,4})\b(?!\s*(%|m|s|h|d)\b)", groups.get("rest") or "")
            if count:
                parsed.params["replicas"] = int(count.group(1))
        return parsed
    return None


# What a person reports as wrong, in their words: an HTTP status (401, 5xx), errors, slowness, a lag, something stuck or
# not rolled out. When nothing checked shows it the answer says so instead of "no problems found".
_SYMPTOM = _rule(
    r"\b(?:[45]\d\d|[45]xx)s?\b|\berrors?\b|\bfail(?:s|ing|ed|ures?)?\b|\btim(?:e|ing) ?outs?\b|\btiming out\b|\bslow\w*"
    r"|\blatency\b|\blag(?:s|ging)?\b|\bstuck\b|\bdown\b|\bcrash\w*|\bunauthori[sz]ed\b|\bforbidden\b|\boutage\b"
    r"|\bbroken\b|\bnot (?:rolled|rolling|deployed|updated|picked up)\b|\bstill (?:on|serv\w*|running|see\w*)\b"
    r"|\b(?:did ?n.t|does ?n.t|won.t) (?:go out|roll|deploy|update)")


# A yes/no question asks whether there is a symptom ("is checkout down?", "any errors?"); it reports none.
_ASKING = _rule(r"^\W*(?:is|are|any|do|does|did|has|have|was|were|can|could)\b")


def symptoms(text: str) -> list[str]:
    """The symptoms a message reports, as written and in order ('401', 'errors'); none for 'is checkout ok?' or
    'is checkout down?', which ask rather than report."""
    if _ASKING.match(re.sub(r"^\s*@[\w.-]+[:,]?", "", _TEAMS_MENTION.sub("", _SLACK_MENTION.sub("", text)))):
        return []
    out: list[str] = []
    for match in _SYMPTOM.finditer(text):
        word = match.group(0).lower()
        if word not in out:
            out.append(word)
    return out
