"""Builds every backend tool from settings and answers which are configured and reachable."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bot.config import ServiceConfig, Settings
from tools.alertmanager import Alertmanager
from tools.base import Backend, ServiceRef
from tools.control_plane import ControlPlane
from tools.cost import Cost
from tools.kubernetes import Kubernetes
from tools.logs import Logs
from tools.metrics import Metrics


@dataclass
class Toolbox:
    metrics: Metrics
    logs: Logs
    kubernetes: Kubernetes
    cost: Cost
    control_plane: ControlPlane
    alertmanager: Alertmanager
    _checked: tuple[float, dict[str, str]] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Toolbox":
        timeout = settings.tool_timeout
        return cls(
            metrics=Metrics(settings.prometheus_url, timeout=timeout),
            logs=Logs(settings.loki_url, timeout=timeout),
            kubernetes=Kubernetes(
                kubeconfig=settings.kubeconfig,
                context=settings.kube_context,
                in_cluster=settings.kube_in_cluster,
                enabled=settings.kubernetes_enabled,
                timeout=timeout,
            ),
            cost=Cost(
                region=settings.aws_region,
                endpoint_url=settings.aws_endpoint_url,
                enabled=settings.cost_enabled,
                tag_key=settings.cost_tag_key,
                timeout=max(timeout, 20.0),
            ),
            control_plane=ControlPlane(
                settings.control_plane_url,
                token_url=settings.control_plane_token_url,
                client_id=settings.control_plane_client_id,
                client_secret=(
                    settings.control_plane_client_secret.get_secret_value()
                    if settings.control_plane_client_secret
                    else None
                ),
                timeout=timeout,
            ),
            alertmanager=Alertmanager(settings.alertmanager_url, timeout=timeout),
        )

    def backends(self) -> list[Backend]:
        return [self.metrics, self.logs, self.kubernetes, self.cost, self.control_plane, self.alertmanager]

    async def check(self, *, timeout: float = 3.0, max_age: float = 30.0) -> dict[str, str]:
        """Each backend: "ok", "not configured" or "error: …", probed concurrently. Results are kept for
        `max_age` seconds so frequent readiness probes do not load (or bill) the backends."""
        now = time.monotonic()
        if self._checked is not None and now - self._checked[0] < max_age:
            return dict(self._checked[1])

        async def probe(backend: Backend) -> str:
            if not backend.configured:
                return "not configured"
            try:
                async with asyncio.timeout(timeout):
                    result = await backend.ping()
            except TimeoutError:
                return f"error: no answer within {timeout:g} s"
            return "ok" if result.ok else f"error: {result.error_text}"

        states = await asyncio.gather(*(probe(b) for b in self.backends()))
        results = {backend.name: state for backend, state in zip(self.backends(), states)}
        self._checked = (now, results)
        return dict(results)

    async def warm_up(self) -> None:
        await self.kubernetes.warm_up()

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self.backends()), return_exceptions=True)


def service_ref(settings: Settings, service: ServiceConfig) -> ServiceRef:
    """The tools' view of a catalog entry (defaults filled in)."""
    full = settings.complete(service)
    return ServiceRef(
        name=full.name,
        namespace=full.namespace or settings.defaults.namespace,
        deployment=full.deployment or full.name,
        log_selector=full.logs or "",
        metric_templates=tuple(sorted(full.metrics.items())),
        cost_tag=full.cost_tag or full.name,
    )
