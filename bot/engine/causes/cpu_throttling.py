"""CPU throttling: a container that uses its whole CPU limit is throttled by the CFS scheduler in most periods —
slow, not down; the fix is the limit, not a restart."""
from __future__ import annotations

import re

from bot.engine.causes.base import SLOW, Plan, Query, Rule, Verdict, World, name, quantity, short

THROTTLED = Query(
    "cpu_throttled",
    'sum by (container) (rate(container_cpu_cfs_throttled_periods_total{{namespace="{namespace}",pod=~"{workload}-.*",'
    'container!=""}}[5m])) / sum by (container) (rate(container_cpu_cfs_periods_total{{namespace="{namespace}",'
    'pod=~"{workload}-.*",container!=""}}[5m]))',
)
ALERT = re.compile(r"(?i)(?P<pct>\d+(?:\.\d+)?)\s*% throttling of CPU.*?container (?P<container>[\w-]+)")
NOTABLE = 0.25  # kube-prometheus's CPUThrottlingHigh fires above 25 %


def _cpu(value: float | None) -> str:
    return "no" if value is None else (f"{value:g} CPU" if value >= 1 else f"{value * 1000:.0f}m CPU")


def detect(world: World) -> list[Verdict]:
    throttled: dict[str, float] = {}
    evidence: list[str] = []
    result = world.metrics.get(THROTTLED.key)
    for series in result.series if result else []:
        if series.samples and series.samples[-1].value >= NOTABLE:
            throttled[series.labels.get("container", "?")] = series.samples[-1].value
    if throttled:
        evidence.append(f"metric {short(result.query if result else THROTTLED.promql, 200)}: "
                        + ", ".join(f"{c} {v:.0%}" for c, v in throttled.items()))
    for alert in world.alerts:
        match = ALERT.search(alert.message or "")
        if match:
            throttled.setdefault(match.group("container"), float(match.group("pct")) / 100)
            evidence.append(f"alert {alert.name} firing: {short(alert.message or '', 200)}")
    if not throttled:
        return []
    container, ratio = max(throttled.items(), key=lambda item: item[1])
    pods = world.pods()
    spec = next((c for p in pods[:1] for c in (p.get("spec") or {}).get("containers") or []
                 if c.get("name") == container), {})
    cpu = world.signals.get("cpu_ratio")
    limit = quantity(((spec.get("resources") or {}).get("limits") or {}).get("cpu"))
    if spec:
        evidence.append(f"pod {name(pods[0])} container {container}: resources.limits.cpu "
                        f"{((spec.get('resources') or {}).get('limits') or {}).get('cpu', 'none')}")
    return [Verdict(
        family="cpu_throttling",
        cause=f"CPU throttling of container {container}: {ratio:.0%} of its CFS periods throttled under its "
              f"{_cpu(limit)} limit",
        title=f"Container {container} is throttled in {ratio:.0%} of CPU periods: it wants more than its "
              f"{_cpu(limit)} limit",
        evidence=evidence,
        severity="critical" if cpu is not None and cpu.health == "critical" else "warning",
        ruled_out=[r for r in (world.pods_fine(),) if r],
        plans=[Plan(f"Raise the CPU limit of {container} above {_cpu(limit)} (or remove the limit and keep the "
                    "request); a restart cannot help")],
        sources={"metrics", "kubernetes"} if result and result.series else {"control_plane", "kubernetes"},
        subjects={container},
    )]


RULE = Rule("cpu_throttling", 65, ("cAdvisor CFS metrics", "pods (limits)", "alerts"), detect,
            "CPU throttling: share of CFS periods throttled against the container's CPU limit; not user-impacting "
            "while latency is healthy", (THROTTLED,), impact=("latency_p99",), explains=(SLOW,))
