"""A real Alertmanager (Debian's `prometheus-alertmanager`) and a real Prometheus evaluating alerting rules, on 127.0.0.1.

    with alertmanager(tmp_path, webhook_url=..., token=...) as am:      # routes every alert to the webhook
        with prometheus_alerting(tmp_path, am.url, target=exporter_url, rules=RULES) as prom:
            ...
        am.silences()                                                   # GET /api/v2/silences

Both run with short intervals (group_wait, group_interval, evaluation and scrape of about a second) so an alert fires,
is delivered and resolves within seconds. Clustering is off (no gossip port).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.prometheus import _serve, _stop
from tests.fakes.serve import free_port


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install prometheus-alertmanager prometheus); tests/run.sh does it")
    return path


@dataclass
class Alertmanager:
    url: str

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            return json.loads(response.read())

    def silences(self) -> list[dict[str, Any]]:
        return self.get("/api/v2/silences")

    def alerts(self) -> list[dict[str, Any]]:
        return self.get("/api/v2/alerts")


@contextmanager
def alertmanager(
    root: Path, *, webhook_url: str, token: str, group_by: tuple[str, ...] = ("alertname", "service"),
    group_wait: str = "1s", group_interval: str = "2s", repeat_interval: str = "1h", port: int | None = None,
) -> Iterator[Alertmanager]:
    """Alertmanager whose one route sends every group to `webhook_url` with `Authorization: Bearer <token>`,
    listening on `port` (default: a free one)."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "alertmanager.yml"
    config.write_text(
        f"""
route:
  receiver: srebot
  group_by: [{", ".join(group_by)}]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
receivers:
  - name: srebot
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""
    )
    port = port or free_port()
    process, url = _serve(
        [
            _binary("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        "/-/ready",
        port,
        root,
    )
    try:
        yield Alertmanager(url)
    finally:
        _stop(process)


@contextmanager
def prometheus_alerting(
    root: Path, alertmanager_url: str, *, target: str, rules: str, port: int | None = None
) -> Iterator[str]:
    """Prometheus scraping `target` (host:port, path /metrics) every second, evaluating `rules` every second and
    sending what fires to `alertmanager_url`, on `port` (default: a free one); yields its URL."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "rules.yml").write_text(rules)
    config = root / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{root / "rules.yml"}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{alertmanager_url.removeprefix("http://")}"]
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ["{target}"]
"""
    )
    check = subprocess.run([_binary("promtool"), "check", "config", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.fail(f"promtool rejected the test's Prometheus config:\n{check.stdout}{check.stderr}", pytrace=False)
    port = port or free_port()
    process, url = _serve(
        [
            _binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
        "/-/ready",
        port,
        root,
    )
    try:
        yield url
    finally:
        _stop(process)
