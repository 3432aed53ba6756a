"""The suite's shop, every backend at once: a real Prometheus (tests.fakes.prometheus), the Kubernetes fake,
the control-plane fake and the Loki fake, their clocks lined up so that checkout's bad rollout lands two
minutes before its errors start, plus the srebot config and environment that point at all of them.

    async with shop_backends(prometheus_server, tmp_path) as shop:
        run srebot with shop.env
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.loopback.control_plane import ControlPlaneFake
from devtools.loopback.kube import KubeFake
from devtools.loopback.loki import FakeLoki
from tests.fakes import control_plane, kube
from tests.fakes.prometheus import MetricsServer

CONFIG = """
[defaults]
namespace = "default"
window = "15m"

[services.checkout]
namespace = "shop"
aliases = ["checkout-api", "cart checkout"]
owners = ["S0123TEAM"]
dashboard = "https://grafana.example/d/abc/checkout"
runbook = "https://wiki.example/runbooks/checkout"

[services.catalog]
namespace = "shop"
"""

PANIC = "ERROR panic: nil pointer dereference in cart.Total order={order}"
CATALOG_NOISE = "ERROR failed to refresh the recommendations cache: upstream returned 503, serving stale"


@dataclass
class Shop:
    kube: KubeFake
    cp: ControlPlaneFake
    loki: FakeLoki
    metrics: MetricsServer
    objects: dict[str, Any]
    rollout: datetime  # when checkout v2.1.0 rolled out
    env: dict[str, str] = field(default_factory=dict)


def _lines(start: datetime, end: datetime, every: timedelta, text: str) -> list[tuple[datetime, str]]:
    lines, at, n = [], start, 0
    while at < end:
        lines.append((at, f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')} " + text.format(order=1000 + n)))
        at += every
        n += 1
    return lines


@asynccontextmanager
async def shop_backends(metrics: MetricsServer, root: Path) -> AsyncIterator[Shop]:
    now = datetime.now(UTC)
    # checkout's errors start at metrics.spike_start; its rollout was two minutes earlier
    rollout = metrics.spike_start - timedelta(minutes=2)
    async with KubeFake() as kube_fake, ControlPlaneFake() as cp:
        loki = FakeLoki()
        await loki.start()
        try:
            objects = kube.load_shop_scenario(kube_fake, now=rollout + timedelta(minutes=3))
            control_plane.load_shop_scenario(cp, now=rollout + timedelta(minutes=4, seconds=-30))
            loki.add(
                {"namespace": "shop", "app": "checkout", "level": "error"},
                _lines(metrics.spike_start + timedelta(seconds=5), now, timedelta(seconds=10), PANIC),
            )
            loki.add(
                {"namespace": "shop", "app": "catalog"},
                _lines(now - timedelta(minutes=9), now, timedelta(minutes=2), CATALOG_NOISE),
            )
            config = root / "srebot.toml"
            config.write_text(CONFIG)
            shop = Shop(kube_fake, cp, loki, metrics, objects, rollout)
            shop.env = {
                "DATABASE_URL": f"sqlite:///{root / 'srebot.db'}",
                "SREBOT_CONFIG": str(config),
                "PROMETHEUS_URL": metrics.url,
                "LOKI_URL": loki.url,
                "KUBECONFIG": kube_fake.kubeconfig_path,
                "SREBOT_KUBE_CONTEXT": kube_fake.context,
                "CONTROL_PLANE_URL": cp.url,
                "CONTROL_PLANE_TOKEN_URL": cp.token_url,
                "CONTROL_PLANE_CLIENT_ID": cp.client_id,
                "CONTROL_PLANE_CLIENT_SECRET": cp.client_secret,
                "SREBOT_COST": "off",
                "SREBOT_TOOL_TIMEOUT": "5",
            }
            yield shop
        finally:
            await loki.close()
