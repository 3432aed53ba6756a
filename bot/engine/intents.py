"""Turns a message into an intent, a service mention and parameters, without I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HELP_TEXT = """I'm srebot. Ask me in a thread, DM me, or use /sre:
• diagnose <service> — why is it failing or slow (metrics, logs, Kubernetes, changes, incidents)
• logs <service> — top error patterns in the window
• metrics <service> — golden signals; promql: <expr> for a free query
• pods <service> — deployment, rollout and pod state
• capacity <service> — CPU and memory against requests and limits
• cost [service] [7d|30d] — spend by service, period over period
• incidents / alerts — open incidents, firing alerts (then diagnosed)
• restart <service> / scale <service> <replicas> / rollback <service> — proposed, run after someone else approves
• ack incident <id> — acknowledge an incident (after approval)
• status — work in flight · cancel — stop the running request in this thread
Follow-ups in a thread need no mention: "and its logs?", "what changed?"."""

_WORD = r"[A-Za-z0-9][A-Za-z0-9_.\-/]*"


@dataclass
class Parsed:
    intent: str
    service: str | None = None  # a word that may name a service, not yet resolved
    params: dict[str, object] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)


_PERIOD = re.compile(r"\b(\d{1,3})\s*(d|day|days|w|week|weeks|m|month|months)\b", re.I)

_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("help", re.compile(r"^\s*(help|\?|what can you do|commands|usage)\b", re.I)),
    ("promql", re.compile(r"^\s*promql\s*:\s*(?P<expr>.+)$", re.I | re.S)),
    ("ack_incident", re.compile(r"\b(ack|acknowledge)\s+(the\s+)?incident\s+#?(?P<id>[\w-]+)", re.I)),
    ("run_automation", re.compile(r"\brun\s+(automation|script)\s+(?P<script>[\w.-]+)(\s+on\s+(?P<svc>" + _WORD + "))?", re.I)),
    ("scale", re.compile(r"\bscale\s+(?P<svc>" + _WORD + r")\s+(to\s+)?(?P<replicas>\d{1,4})\b", re.I)),
    ("restart", re.compile(r"\brestart\s+(?P<svc>" + _WORD + ")", re.I)),
    ("rollback", re.compile(r"\b(rollback|roll\s+back|revert)\s+(?P<svc>" + _WORD + ")", re.I)),
    ("incidents", re.compile(r"\bincidents?\b", re.I)),
    ("alerts", re.compile(r"\b(alerts?|firing|paging)\b", re.I)),
    ("cost", re.compile(r"\b(cost|costs|spend|spending|bill|billing)\b", re.I)),
    ("capacity", re.compile(r"\b(capacity|cpu|memory|saturat\w*|resources|limits|headroom)\b", re.I)),
    ("logs", re.compile(r"\b(logs?|errors? in|exceptions?|stack ?traces?)\b", re.I)),
    ("pods", re.compile(r"\b(pods?|deployment|rollout|replicas|crash\w*)\b", re.I)),
    ("changes", re.compile(r"\bwhat\s+changed\b|\bchanges?\b|\bdeploy(s|ed)?\b", re.I)),
    ("metrics", re.compile(r"\b(metrics|golden signals|latency|error rate|traffic|rps)\b", re.I)),
    (
        "diagnose",
        re.compile(
            r"\b(diagnose|diag|investigate|check|why|what'?s wrong|wrong|failing|broken|down|slow|health|healthy|"
            r"status of|look at|problem|issue|5\d\d|errors?)\b",
            re.I,
        ),
    ),
]

# words that are never a service name
_STOP = set(
    """a an the is are was were be been of for to in on at by with and or but if then so what whats what's why how
    who when where which it its it's this that these those me my our your their i we you they he she them us
    please pls can could would should will do does did done any some all there here now today yesterday
    diagnose diag investigate check logs log metrics metric cost costs spend incidents incident alerts alert
    capacity restart scale rollback roll back revert ack acknowledge run automation script pods pod deployment
    rollout replicas help status cancel stop failing broken down slow health healthy wrong problem issue
    errors error going on happening changed change changes latency rate traffic cpu memory service services
    look about into tell show give last past week weeks day days month months d w m again also too just still
    firing paging up hi hello hey thanks thank ok okay promql resources limits headroom crash crashing
    saturated saturation exceptions exception stack trace traces deploy deployed deploys new old""".split()
)


def _candidates(text: str) -> list[str]:
    words = re.findall(_WORD, text)
    return [w.strip(".-/") for w in words if w.lower().strip(".-/") not in _STOP and not w.isdigit() and len(w) > 1]


def parse(text: str) -> Parsed:
    """Classify `text`. The service is a candidate word; the engine resolves it against the catalog."""
    cleaned = re.sub(r"<@[A-Z0-9]+>", " ", text).strip()  # Slack mentions
    words = _candidates(cleaned)
    for intent, pattern in _RULES:
        match = pattern.search(cleaned)
        if not match:
            continue
        groups = match.groupdict()
        parsed = Parsed(intent=intent, words=words)
        if intent == "promql":
            parsed.params["expr"] = groups["expr"].strip()
        elif intent == "ack_incident":
            parsed.params["incident_id"] = groups["id"]
        elif intent == "run_automation":
            parsed.params["script_id"] = groups["script"]
            parsed.service = groups.get("svc")
        elif intent in ("scale", "restart", "rollback"):
            parsed.service = groups["svc"]
            if intent == "scale":
                parsed.params["replicas"] = int(groups["replicas"])
        if intent == "cost":
            period = _PERIOD.search(cleaned)
            if period:
                unit = period.group(2)[0].lower()
                parsed.params["days"] = int(period.group(1)) * {"d": 1, "w": 7, "m": 30}[unit]
        if parsed.service is None and words:
            parsed.service = words[0]
        return parsed
    return Parsed(intent="chat", service=words[0] if words else None, words=words)
