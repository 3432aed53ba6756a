"""Prometheus metrics of the bot itself (tool metrics live in tools.base)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_RECEIVED = Counter("srebot_events_received_total", "Platform events received", ["platform", "kind"])
EVENTS_DROPPED = Counter("srebot_events_dropped_total", "Platform events acked but not processed", ["platform", "reason"])
ACK_LATENCY = Histogram(
    "srebot_ack_latency_seconds",
    "Time from receiving a platform request to acknowledging it",
    ["platform"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3),
)
REQUESTS_IN_FLIGHT = Gauge("srebot_requests_in_flight", "Requests being worked on")
QUEUE_DEPTH = Gauge("srebot_dispatch_queue_depth", "Requests waiting for their thread or a worker slot")
OUTCOMES = Counter(
    "srebot_request_outcomes_total",
    "How accepted requests ended for the person: answered, failed, interrupted or busy (told overloaded)",
    ["outcome"],
)
REQUESTS = Counter("srebot_requests_total", "Requests finished", ["intent", "status"])
REQUEST_DURATION = Histogram(
    "srebot_request_duration_seconds",
    "Request duration from start of work to answer",
    ["intent", "status"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
APPROVALS = Counter("srebot_approvals_total", "Approval transitions", ["status"])
LLM_TOKENS = Counter("srebot_llm_tokens_total", "LLM tokens used", ["kind"])
ALERTS_RECEIVED = Counter("srebot_alerts_received_total", "Alert group notifications accepted", ["source", "status"])
ALERTS_REJECTED = Counter("srebot_alerts_rejected_total", "Alert webhook requests refused", ["reason"])
ALERTS_DEDUPLICATED = Counter(
    "srebot_alerts_deduplicated_total",
    "Alert notifications that changed nothing (repeats, HA copies), and investigations another group of the same"
    " service had already started",
    ["source"],
)
ALERTS_INVESTIGATED = Counter("srebot_alerts_investigated_total", "Alert group investigations started", ["reason"])
ALERTS_RESOLVED = Counter("srebot_alerts_resolved_total", "Alert groups resolved in their thread", ["source"])
